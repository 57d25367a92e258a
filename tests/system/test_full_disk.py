"""A full disk: 507 with Retry-After, /ready 503 `storage: low`, free bytes in /metrics,
nothing half-written left referenced, recovery without a restart, no dead worker.

The disk is a real one: a tmpfs of a few MiB mounted for the test (root only),
filled with a file until the kernel answers ENOSPC.
"""

import errno
import os
import re
import shutil
import sqlite3
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from app.core.blobstores import FilesystemBlobStore
from app.core.config import Settings
from app.documents.models import Document, DocumentVersion
from app.signing.models import Signature
from tests.conftest import ADMIN_PASSWORD, POSTGRES_URL
from tests.factories import assert_problem, bearer
from tests.pdfs import make_pdf
from tests.served import serve, signvault_env
from tests.signing.test_sign_api import Signer
from tests.system.conftest import assert_insufficient_storage, sign, upload

MIB = 1024 * 1024
# What the tests ask /ready to keep free: a filled tmpfs has less, an emptied one more.
MIN_FREE = 1 * MIB
MOUNT = shutil.which("mount") or "/bin/mount"
UMOUNT = shutil.which("umount") or "/bin/umount"


@contextmanager
def small_filesystem(where: Path, size: str) -> Iterator[Path]:
    """A tmpfs of `size` mounted at `where` for the block; skips when it cannot be mounted."""
    if os.geteuid() != 0:
        pytest.skip("mounting a small filesystem needs root (CI runs as root)")
    where.mkdir(parents=True, exist_ok=True)
    mounted = subprocess.run(  # noqa: S603 (fixed arguments)
        [MOUNT, "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(where)],
        capture_output=True,
        text=True,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs: {mounted.stderr.strip()}")
    try:
        yield where
    finally:
        # Lazy: a process of the test may still hold a file open for a moment.
        subprocess.run([UMOUNT, "-l", str(where)], check=False)  # noqa: S603


def fill(folder: Path) -> Path:
    """Write a file into `folder` until its filesystem is full; returns it (delete it to free)."""
    filler = folder / "filler"
    with filler.open("wb", buffering=0) as handle:
        for chunk in (MIB, 4096, 1):
            block = b"\0" * chunk
            with pytest.raises(OSError, match="No space left") as full:  # noqa: PT012
                while True:
                    handle.write(block)
            assert full.value.errno == errno.ENOSPC
    return filler


def free_bytes(folder: Path) -> int:
    status = os.statvfs(folder)
    return status.f_bavail * status.f_frsize


def metric_free_bytes(client: TestClient | httpx.Client, store: str) -> float:
    exposition = client.get("/metrics").text
    found = re.search(
        rf'^signvault_storage_free_bytes{{store="{store}"}} (\S+)$',
        exposition,
        re.MULTILINE,
    )
    assert found, exposition
    return float(found.group(1))


@pytest.fixture
def disk(tmp_path: Path) -> Iterator[Path]:
    with small_filesystem(tmp_path / "disk", "8m") as mounted:
        yield mounted


@pytest.fixture
def settings(settings: Settings, disk: Path, database_url: str) -> Settings:
    """The data dir on the small disk; a SQLite database too (PostgreSQL keeps its own disk).

    The filesystem blob store, whatever SIGNVAULT_TEST_BLOB_STORE says: these
    tests fill the disk that blobs are written to and read the store's files.
    """
    update: dict[str, Any] = {
        "data_dir": disk / "data",
        "min_free_bytes": MIN_FREE,
        "blob_store": None,
    }
    if not POSTGRES_URL:
        database = disk / "signvault.db"
        shutil.copyfile(database_url.removeprefix("sqlite:///"), database)
        update["database_url"] = f"sqlite:///{database}"
    return settings.model_copy(update=update)


def stored_files(blobs: FilesystemBlobStore) -> set[str]:
    """Every file under the store (`.incoming` spool files included), relative to it."""
    return {
        str(path.relative_to(blobs.root))
        for path in blobs.root.rglob("*")
        if path.is_file()
    }


def referenced_files(session: Session) -> set[str]:
    """The blob of every version, where the store keeps it."""
    return {
        f"{str(document_id)[:2]}/{document_id}/{sha256}"
        for document_id, sha256 in session.execute(
            select(DocumentVersion.document_id, DocumentVersion.sha256)
        )
    }


def test_a_full_disk_answers_507_and_recovers_without_a_restart(
    client: TestClient,
    alice: Signer,
    admin_headers: dict[str, str],
    session_factory: sessionmaker[Session],
    settings: Settings,
    disk: Path,
) -> None:
    blobs: FilesystemBlobStore = client.app.state.blobs  # type: ignore[attr-defined]
    before = upload(client, alice.headers)
    assert before.status_code == 201, before.text
    document_id = before.json()["id"]
    assert client.get("/ready").status_code == 200
    if not POSTGRES_URL:
        # An empty WAL: the next database write needs new space (not pages the WAL already has).
        database = sqlite3.connect(
            settings.effective_database_url.removeprefix("sqlite:///")
        )
        try:
            assert (
                database.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0] == 0
            )
        finally:
            database.close()
    filler = fill(disk)

    ready = client.get("/ready")
    body = assert_problem(ready, 503, "storage_low")
    assert body["checks"] == {"storage": "low"}
    assert body["storage_free_bytes"]["blobs"] < MIN_FREE
    assert int(ready.headers["retry-after"]) > 0
    assert metric_free_bytes(client, "blobs") == free_bytes(blobs.root) < MIN_FREE
    if not POSTGRES_URL:
        assert metric_free_bytes(client, "database") < MIN_FREE

    assert_insufficient_storage(upload(client, alice.headers))
    assert_insufficient_storage(sign(client, alice, document_id))
    if not POSTGRES_URL:
        # A write to the database alone: SQLite's "database or disk is full".
        assert_insufficient_storage(
            client.post(
                "/api/v1/departments", json={"name": "Full"}, headers=admin_headers
            )
        )

    # Nothing half-written: no spool file, no blob without its version, no version without its blob.
    with session_factory() as session:
        assert session.scalar(select(func.count()).select_from(Document)) == 1
        assert session.scalar(select(func.count()).select_from(Signature)) == 0
        assert stored_files(blobs) == referenced_files(session)

    filler.unlink()
    assert client.get("/ready").status_code == 200
    assert metric_free_bytes(client, "blobs") > MIN_FREE
    after = upload(client, alice.headers)
    assert after.status_code == 201, after.text
    signed = sign(client, alice, document_id)
    assert signed.status_code == 201, signed.text
    with session_factory() as session:
        assert stored_files(blobs) == referenced_files(session)
        assert len(referenced_files(session)) == 3


def worker_pids(parent: int) -> set[int]:
    """The live uvicorn workers (spawned processes) of `serve --workers N` whose pid is `parent`."""
    workers = set()
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            spawned = b"spawn_main" in (entry / "cmdline").read_bytes()
        except OSError:
            continue  # ended meanwhile
        if int(fields[1]) == parent and fields[0] != "Z" and spawned:
            workers.add(int(entry.name))
    return workers


def admin_token_and_routes(http: httpx.Client) -> tuple[str, list[str]]:
    """The bootstrap admin's token, and the GET routes without parameters (401 without a token).

    Each route answered is a new label set in the workers' metric files.
    """
    token = http.post(
        "/api/v1/auth/login", json={"username": "admin", "password": ADMIN_PASSWORD}
    ).json()["access_token"]
    paths = http.get("/openapi.json").json()["paths"]
    routes = [
        path
        for path, operations in paths.items()
        if "{" not in path and "get" in operations
    ]
    return token, routes


@pytest.mark.skipif(
    bool(POSTGRES_URL),
    reason="SQLite only: the workers' survival does not depend on the database, and PostgreSQL's data is on its server's disk",
)
def test_workers_survive_requests_on_a_full_disk(tmp_path: Path) -> None:
    with small_filesystem(tmp_path / "disk", "16m") as disk:
        data_dir = disk / "data"
        env = signvault_env(
            data_dir,
            f"sqlite:///{data_dir / 'signvault.db'}",
            SIGNVAULT_ADMIN_PASSWORD=ADMIN_PASSWORD,
            SIGNVAULT_MIN_FREE_BYTES=str(MIN_FREE),
        )
        with (
            serve(env, tmp_path, "--workers", "2") as served,
            httpx.Client(base_url=served.base_url, timeout=30) as http,
        ):
            workers = worker_pids(served.pid)
            assert len(workers) == 2
            token, routes = admin_token_and_routes(http)
            fill(disk)

            # Every label set the workers have not seen yet grows their metric files.
            answers = [http.get(path).status_code for path in routes * 2]
            uploads = [
                http.post(
                    "/api/v1/documents",
                    content=make_pdf(pages=1),
                    headers={"content-type": "application/pdf", **bearer(token)},
                )
                for _ in range(10)
            ]

            assert 500 not in answers
            for response in uploads:
                assert_insufficient_storage(response)
            assert worker_pids(served.pid) == workers, served.log
            assert http.get("/ready").status_code == 503
            assert "died" not in served.log
