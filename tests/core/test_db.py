import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import Uuid, bindparam, column, select, table, text
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from sqlalchemy.orm import Session, sessionmaker

from app.core.db import (
    after_transaction,
    commit_now,
    make_engine,
    on_commit,
    on_rollback,
    unit_of_work,
)
from tests.conftest import POSTGRES_URL
from tests.factories import assert_problem


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


sqlite_only = pytest.mark.skipif(bool(POSTGRES_URL), reason="SQLite's one write lock")


@pytest.fixture
def scratch_table(engine: Engine) -> str:
    with engine.begin() as connection:
        connection.execute(text("CREATE TABLE scratch (n INTEGER)"))
    return "scratch"


def count(connection: Connection) -> int:
    return int(connection.execute(text("SELECT count(*) FROM scratch")).scalar_one())


def insert(connection: Connection) -> None:
    connection.execute(text("INSERT INTO scratch (n) VALUES (1)"))


@pytest.fixture
def two_engines(
    database_url: str, scratch_table: str
) -> Iterator[tuple[Engine, Engine]]:
    """Two engines on one file, as two processes would be; a short busy timeout."""
    first, second = (
        make_engine(database_url, sqlite_busy_timeout=0.2) for _ in range(2)
    )
    yield first, second
    first.dispose()
    second.dispose()


def refused_for_the_lock(engine: Engine) -> None:
    with (
        pytest.raises(OperationalError, match="locked"),
        engine.begin() as other,
    ):
        insert(other)


@sqlite_only
def test_a_transaction_holds_sqlites_write_lock_from_its_first_write(
    two_engines: tuple[Engine, Engine],
) -> None:
    first, second = two_engines
    with first.begin() as reader:
        assert count(reader) == 0
        # Reading took no lock: another writer commits meanwhile...
        with second.begin() as other:
            insert(other)
        # ...and the next read sees it, as READ COMMITTED would.
        assert count(reader) == 1
        # Writing after reading waits for the lock instead of failing.
        insert(reader)
        # From its first write on, the transaction holds the lock.
        refused_for_the_lock(second)
    with second.begin() as other:
        insert(other)
        assert count(other) == 3


@sqlite_only
def test_a_read_for_update_takes_sqlites_write_lock(
    two_engines: tuple[Engine, Engine],
) -> None:
    first, second = two_engines
    scratch = table("scratch", column("n"))
    with first.begin() as locking:
        locking.execute(select(scratch.c.n).with_for_update()).all()
        refused_for_the_lock(second)


def insert_and_note_outcome(session: Session, n: int, ran: list[str]) -> None:
    session.execute(text("INSERT INTO scratch (n) VALUES (:n)"), {"n": n})
    on_commit(session, lambda: ran.append("committed"))
    on_rollback(session, lambda: ran.append("rolled back"))


def test_commit_and_rollback_actions_run_after_their_outcome(
    session_factory: sessionmaker[Session], scratch_table: str
) -> None:
    ran: list[str] = []

    with unit_of_work(session_factory) as session:
        insert_and_note_outcome(session, 1, ran)
        assert ran == []
    assert ran == ["committed"]

    ran.clear()

    def failing_request() -> None:
        with unit_of_work(session_factory) as session:
            insert_and_note_outcome(session, 2, ran)
            after_transaction(
                session,
                lambda own: own.execute(text("INSERT INTO scratch (n) VALUES (3)")),
            )
            raise RuntimeError("the request failed")

    with pytest.raises(RuntimeError, match="request failed"):
        failing_request()
    assert ran == ["rolled back"]

    with session_factory() as check:
        kept = check.execute(text("SELECT n FROM scratch ORDER BY n")).scalars().all()
    # The failed transaction's row is gone; the work after it was stored on its own.
    assert kept == [1, 3]


def test_an_early_commit_still_runs_the_commit_actions(
    session_factory: sessionmaker[Session], scratch_table: str
) -> None:
    ran: list[str] = []
    with unit_of_work(session_factory) as session:
        insert_and_note_outcome(session, 1, ran)
        commit_now(session)
        assert ran == []  # not before the unit of work ends
    assert ran == ["committed"]


def test_an_exhausted_connection_pool_is_503_server_busy_not_500(
    client: TestClient, admin_headers: dict[str, str], engine: Engine
) -> None:
    pool: Any = engine.pool
    pool._timeout = 0.2  # the wait a request gets before giving up (30 s in production)
    held = []
    try:
        while True:
            try:
                held.append(pool.connect())
            except PoolTimeoutError:
                break
        response = client.get("/api/v1/users", headers=admin_headers)
        assert_problem(response, 503, "server_busy")
        assert response.headers["retry-after"] == "2"
    finally:
        for connection in held:
            connection.close()
    assert client.get("/api/v1/users", headers=admin_headers).status_code == 200
