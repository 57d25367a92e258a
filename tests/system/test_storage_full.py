"""A full disk injected at the storage layer: 507 with Retry-After, on either database.

tests/system/test_full_disk.py fills a real filesystem (root only); these raise
what a full disk raises (ENOSPC, EDQUOT, SQLite's SQLITE_FULL, PostgreSQL's
disk_full) where the writes happen, so the mapping holds wherever the suite runs.
"""

import errno
import os
import sqlite3
import time
from typing import Any

import psycopg
import psycopg.errors
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker

from app.access.models import Department
from app.batches import worker as batch_worker
from app.core.errors import is_storage_full
from app.documents.models import Document
from app.signing.models import Signature
from tests.conftest import POSTGRES_URL
from tests.signing.test_sign_api import Signer
from tests.system.conftest import assert_insufficient_storage, sign, upload


def disk_full_os_error(code: int = errno.ENOSPC) -> OSError:
    return OSError(code, os.strerror(code))


def sqlite_full() -> sqlite3.OperationalError:
    error = sqlite3.OperationalError("database or disk is full")
    error.sqlite_errorcode = sqlite3.SQLITE_FULL  # type: ignore[attr-defined]
    return error


def database_disk_full() -> OperationalError:
    """What the test database raises on a full disk, as SQLAlchemy hands it over."""
    orig: Exception = (
        psycopg.errors.DiskFull('could not extend file "base/1/2": No space left')
        if POSTGRES_URL
        else sqlite_full()
    )
    return OperationalError("INSERT INTO ...", {}, orig)


def chained(cause: BaseException) -> RuntimeError:
    try:
        raise RuntimeError("while writing") from cause
    except RuntimeError as wrapper:
        return wrapper


@pytest.mark.parametrize(
    ("error", "full"),
    [
        (disk_full_os_error(errno.ENOSPC), True),
        (disk_full_os_error(errno.EDQUOT), True),
        (OperationalError("INSERT", {}, sqlite_full()), True),
        (
            OperationalError("INSERT", {}, psycopg.errors.DiskFull("could not extend")),
            True,
        ),
        (chained(disk_full_os_error()), True),
        (disk_full_os_error(errno.EACCES), False),
        (
            OperationalError(
                "INSERT", {}, sqlite3.OperationalError("database is locked")
            ),
            False,
        ),
        (
            OperationalError(
                "SELECT 1", {}, psycopg.OperationalError("connection refused")
            ),
            False,
        ),
        (RuntimeError("something else"), False),
    ],
    ids=[
        "ENOSPC",
        "EDQUOT",
        "sqlite-full",
        "postgresql-disk-full",
        "chained",
        "EACCES",
        "sqlite-locked",
        "postgresql-unreachable",
        "other",
    ],
)
def test_a_full_disk_is_recognised_through_its_wrappings(
    error: BaseException, full: bool
) -> None:
    assert is_storage_full(error) is full


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EDQUOT], ids=["ENOSPC", "EDQUOT"])
def test_a_full_blob_store_answers_507_on_upload_and_sign(
    app: FastAPI,
    client: TestClient,
    alice: Signer,
    session_factory: sessionmaker[Session],
    monkeypatch: pytest.MonkeyPatch,
    code: int,
) -> None:
    document_id = upload(client, alice.headers).json()["id"]

    def full(*_args: Any, **_kwargs: Any) -> None:
        raise disk_full_os_error(code)

    monkeypatch.setattr(app.state.blobs, "put_file", full)

    assert_insufficient_storage(upload(client, alice.headers))
    assert_insufficient_storage(sign(client, alice, document_id))
    with session_factory() as session:
        assert session.scalar(select(func.count()).select_from(Document)) == 1
        assert session.scalar(select(func.count()).select_from(Signature)) == 0

    monkeypatch.undo()
    assert sign(client, alice, document_id).status_code == 201


def test_a_full_database_disk_answers_507_and_stores_nothing(
    client: TestClient,
    admin_headers: dict[str, str],
    session_factory: sessionmaker[Session],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    flush = Session.flush

    def flush_on_a_full_disk(self: Session, *args: Any, **kwargs: Any) -> None:
        if any(isinstance(row, Department) for row in self.new):
            raise database_disk_full()
        flush(self, *args, **kwargs)

    monkeypatch.setattr(Session, "flush", flush_on_a_full_disk)
    body = assert_insufficient_storage(
        client.post("/api/v1/departments", json={"name": "Full"}, headers=admin_headers)
    )
    assert "nothing was stored" in body["detail"]
    with session_factory() as session:
        assert (
            session.scalar(select(Department).where(Department.name == "Full")) is None
        )

    monkeypatch.undo()
    created = client.post(
        "/api/v1/departments", json={"name": "Full"}, headers=admin_headers
    )
    assert created.status_code == 201, created.text


def test_a_batch_on_a_full_disk_waits_and_is_signed_once_space_is_freed(
    app: FastAPI,
    client: TestClient,
    alice: Signer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    document_id = upload(client, alice.headers).json()["id"]
    monkeypatch.setattr(batch_worker, "STORAGE_RETRY_AFTER_SECONDS", 0.2)
    put_file = app.state.blobs.put_file

    def full(*_args: Any, **_kwargs: Any) -> None:
        raise disk_full_os_error()

    monkeypatch.setattr(app.state.blobs, "put_file", full)

    response = client.post(
        "/api/v1/batches",
        json={"document_ids": [document_id], "certificate_id": alice.certificate_id},
        headers=alice.headers,
    )

    # Stored, not signed: not failed either (the document is not at fault).
    assert response.status_code == 202, response.text
    item = response.json()["items"][0]
    assert item["status"] == "pending", item
    monkeypatch.setattr(app.state.blobs, "put_file", put_file)
    deadline = time.monotonic() + 30
    while True:
        batch = client.get(response.headers["location"], headers=alice.headers).json()
        if batch["status"] == "completed" or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert (batch["status"], batch["succeeded"], batch["failed"]) == ("completed", 1, 0)
