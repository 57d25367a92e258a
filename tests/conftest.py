"""App, database and identity fixtures.

Every test gets a database of its own, copied from one migrated template
(a file copy on SQLite, `CREATE DATABASE … TEMPLATE` on PostgreSQL), so the
real commit path runs, failures recorded in their own transaction stay
recorded, and several connections can race as they do in production.
`SIGNVAULT_TEST_DATABASE_URL` selects PostgreSQL; SQLite otherwise.
`SIGNVAULT_TEST_BLOB_STORE=s3` keeps every app's documents in a real S3
server (SeaweedFS on loopback, one per test process, a bucket per module and
a prefix per test); the filesystem otherwise.
"""

import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, make_url, text
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from app.access import service as access_service
from app.core.config import Settings
from app.core.db import make_engine
from app.core.migrations import upgrade_to_head
from app.core.security import PasswordHasher
from app.main import create_app
from tests.factories import Credentials, bearer, login
from tests.s3server import SeaweedServer

POSTGRES_URL = os.environ.get("SIGNVAULT_TEST_DATABASE_URL")
ON_S3 = os.environ.get("SIGNVAULT_TEST_BLOB_STORE", "filesystem") == "s3"
ADMIN_PASSWORD = "Admin-Passw0rd!"


def pytest_report_header() -> str:
    database = (
        "PostgreSQL " + make_url(POSTGRES_URL).render_as_string(hide_password=True)
        if POSTGRES_URL
        else "SQLite"
    )
    return f"database: {database}; blob store: {'S3 (SeaweedFS)' if ON_S3 else 'filesystem'}"


class DatabaseFactory:
    """Hands out fresh, migrated databases cloned from a per-process template."""

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir
        self.template_name = f"sv_tpl_{os.getpid()}_{uuid.uuid4().hex[:6]}"
        self.created: list[str] = []
        if POSTGRES_URL:
            self._admin = create_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT")
            with self._admin.connect() as conn:
                conn.execute(text(f'CREATE DATABASE "{self.template_name}"'))
            engine = make_engine(self._url(self.template_name))
        else:
            self._template_file = workdir / "template.db"
            engine = make_engine(f"sqlite:///{self._template_file}")
        upgrade_to_head(engine)
        engine.dispose()

    def _url(self, name: str) -> str:
        assert POSTGRES_URL
        return (
            make_url(POSTGRES_URL)
            .set(database=name)
            .render_as_string(hide_password=False)
        )

    def new(self) -> str:
        name = f"sv_t_{uuid.uuid4().hex[:12]}"
        if not POSTGRES_URL:
            target = self.workdir / f"{name}.db"
            shutil.copyfile(self._template_file, target)
            return f"sqlite:///{target}"
        with self._admin.connect() as conn:
            conn.execute(
                text(f'CREATE DATABASE "{name}" TEMPLATE "{self.template_name}"')
            )
        self.created.append(name)
        return self._url(name)

    def drop(self, url: str) -> None:
        if POSTGRES_URL:
            name = make_url(url).database
            with self._admin.connect() as conn:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))

    def close(self) -> None:
        if POSTGRES_URL:
            with self._admin.connect() as conn:
                conn.execute(
                    text(f'DROP DATABASE IF EXISTS "{self.template_name}" WITH (FORCE)')
                )
            self._admin.dispose()


@pytest.fixture(scope="session")
def database_factory(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[DatabaseFactory]:
    factory = DatabaseFactory(tmp_path_factory.mktemp("databases"))
    yield factory
    factory.close()


@pytest.fixture
def database_url(database_factory: DatabaseFactory) -> Iterator[str]:
    url = database_factory.new()
    yield url
    database_factory.drop(url)


@pytest.fixture(scope="session")
def s3_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SeaweedServer]:
    """One SeaweedFS per test process; its identity is what the apps find in the AWS variables."""
    server = SeaweedServer(tmp_path_factory.mktemp("seaweedfs"))
    environment = pytest.MonkeyPatch()
    for name, value in server.aws_environment().items():
        environment.setenv(name, value)
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN"):
        environment.delenv(name, raising=False)
    yield server
    environment.undo()
    server.stop()


@pytest.fixture(scope="module")
def s3_bucket(s3_server: SeaweedServer) -> str:
    return s3_server.new_bucket()


@pytest.fixture
def s3_store(s3_server: SeaweedServer, s3_bucket: str) -> dict[str, Any]:
    """Settings for an S3 blob store of this test's own: the module's bucket, a fresh prefix."""
    return {
        "blob_store": f"s3://{s3_bucket}/t-{uuid.uuid4().hex[:12]}",
        "s3_endpoint_url": s3_server.endpoint_url,
    }


@pytest.fixture
def blob_store_settings(request: pytest.FixtureRequest) -> dict[str, Any]:
    """The blob store every test app uses: S3 with SIGNVAULT_TEST_BLOB_STORE=s3, else files."""
    if ON_S3:
        store: dict[str, Any] = request.getfixturevalue("s3_store")
        return store
    return {"blob_store": None}


@pytest.fixture
def settings(
    tmp_path: Path, database_url: str, blob_store_settings: dict[str, Any]
) -> Settings:
    return Settings(
        _env_file=None,
        data_dir=tmp_path / "data",
        database_url=database_url,
        argon2_time_cost=1,
        argon2_memory_kib=64,
        admin_password=None,
        # Tests make many requests a minute with one token; tests/access/test_throttle.py
        # turns the limits on through the `security` settings section.
        rate_limit_per_minute=0,
        login_rate_limit_per_minute=0,
        # Periodic anchors add entries at times of the loop's choosing;
        # tests/audit/test_anchors.py turns them on.
        audit_anchor_every_entries=0,
        audit_anchor_every_minutes=0,
        **blob_store_settings,
    )


@pytest.fixture
def app(settings: Settings) -> Iterator[FastAPI]:
    application = create_app(settings)
    yield application
    application.state.engine.dispose()


@pytest.fixture
def client(app: FastAPI) -> Iterator[TestClient]:
    with TestClient(app) as test_client:
        yield test_client


@pytest.fixture
def engine(app: FastAPI) -> Engine:
    engine: Engine = app.state.engine
    return engine


@pytest.fixture
def session_factory(app: FastAPI) -> sessionmaker[Session]:
    # The app's own factory: its sessions carry what the app binds to them (the licence issuer key).
    factory: sessionmaker[Session] = app.state.sessionmaker
    return factory


@pytest.fixture
def hasher(app: FastAPI) -> PasswordHasher:
    hasher: PasswordHasher = app.state.password_hasher
    return hasher


@pytest.fixture
def admin(
    session_factory: sessionmaker[Session], hasher: PasswordHasher
) -> Credentials:
    with session_factory.begin() as session:
        created = access_service.bootstrap_admin(
            session, hasher, username="admin", password=ADMIN_PASSWORD
        )
        assert created is not None
        return Credentials("admin", ADMIN_PASSWORD, created[0].id)


@pytest.fixture
def admin_headers(client: TestClient, admin: Credentials) -> dict[str, str]:
    return bearer(login(client, admin)["access_token"])
