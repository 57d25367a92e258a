import uuid

import pytest
from sqlalchemy import Uuid, bindparam, text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

from tests.conftest import POSTGRES_URL


@pytest.mark.skipif(bool(POSTGRES_URL), reason="SQLite pragmas")
def test_sqlite_runs_in_wal_mode_with_foreign_keys(engine: Engine) -> None:
    with engine.connect() as connection:
        assert connection.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        assert connection.execute(text("PRAGMA foreign_keys")).scalar() == 1


def test_foreign_keys_are_enforced(engine: Engine) -> None:
    orphan = text(
        "INSERT INTO user_roles (user_id, role_id) VALUES (:user_id, :role_id)"
    ).bindparams(bindparam("user_id", type_=Uuid()), bindparam("role_id", type_=Uuid()))
    with pytest.raises(IntegrityError), engine.begin() as connection:
        connection.execute(orphan, {"user_id": uuid.uuid4(), "role_id": uuid.uuid4()})
