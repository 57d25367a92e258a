"""`kill -9` of a serving worker mid-burst: every document is signed with its records or untouched,
and the sweep leaves no unreferenced blob and no stale spool file."""

import os
import signal
import threading
import time
import uuid
from collections import Counter
from contextlib import suppress
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from app.core.blobstores import FilesystemBlobStore
from app.core.db import make_engine, make_sessionmaker
from app.documents import sweeper
from app.documents.models import Document, DocumentStatus, DocumentVersion
from app.signing.models import Signature
from tests.conftest import POSTGRES_URL
from tests.factories import audit_events
from tests.pdfs import make_pdf
from tests.served import worker_pids
from tests.signing.test_sign_concurrency import SigningServer, signing_server

pytestmark = pytest.mark.skipif(
    bool(POSTGRES_URL),
    reason="a crash mid-sign leaves the same files whatever the database: run once, on SQLite",
)

SIGNS = 16  # signatures of uploaded documents
ONE_SHOTS = 4  # uploads signed in one request (POST /sign)
LONG_AGO = 2 * sweeper.SPOOL_MAX_AGE_SECONDS


def test_kill_9_mid_sign_burst_leaves_nothing_once_swept(
    tmp_path: Path, database_url: str
) -> None:
    with signing_server(tmp_path, database_url) as server:
        documents = _upload(server, SIGNS)
        seen = _burst_and_kill(
            server, documents, database_url, tmp_path / "data" / "blobs"
        )

    blobs = FilesystemBlobStore(tmp_path / "data" / "blobs")
    engine = make_engine(database_url)
    factory = make_sessionmaker(engine)
    try:
        left_blobs = _unreferenced(factory, blobs)
        left_spool = [path for path, _ in blobs.spool_files()]
        print(  # noqa: T201 (the figures of the closing note: pytest -s)
            f"\nclients saw {seen}; left before the sweep: {len(left_blobs)} "
            f"unreferenced blobs, {len(left_spool)} spool files"
        )
        # The victim was writing a spool file; whether a stored, uncommitted signed
        # PDF is left too depends on where each worker was at the kill.
        assert left_blobs or left_spool, "the kill left nothing to sweep"
        # What a crash leaves is an hour old when the hourly sweep comes.
        for path in [
            *left_spool,
            *(blobs.path(b.namespace, b.sha256) for b in left_blobs),
        ]:
            os.utime(path, (time.time() - LONG_AGO,) * 2)
        result = sweeper.sweep(
            factory, blobs=blobs, grace_seconds=sweeper.SPOOL_MAX_AGE_SECONDS
        )
        assert result.orphan_blobs == len(left_blobs)
        assert result.spool_files == len(left_spool)
        assert _unreferenced(factory, blobs) == []
        assert list(blobs.spool_files()) == []
        _assert_signed_with_records_or_untouched(factory, blobs, documents)
    finally:
        engine.dispose()
    # Each request was answered with success, or cut off by the kill: nothing else.
    assert set(seen) <= {"transport_error", "201", "200"}, seen
    assert seen.total() == SIGNS + ONE_SHOTS


def _upload(server: SigningServer, count: int) -> list[str]:
    with httpx.Client(base_url=server.base_url, timeout=120) as http:
        return [
            http.post(
                "/api/v1/documents",
                content=make_pdf(),
                headers={**server.headers, "Content-Type": "application/pdf"},
            ).json()["id"]
            for _ in range(count)
        ]


def _burst_and_kill(
    server: SigningServer, documents: list[str], database_url: str, blob_root: Path
) -> Counter[str]:
    """Every request at once; a worker killed with SIGKILL while it writes a spool file."""
    seen: Counter[str] = Counter()
    lock = threading.Lock()
    start = threading.Barrier(SIGNS + ONE_SHOTS + 1)

    def send(request: httpx.Request) -> None:
        with httpx.Client(timeout=120) as own:
            start.wait()
            try:
                outcome = str(own.send(request).status_code)
            except httpx.TransportError:
                outcome = "transport_error"
        with lock:
            seen[outcome] += 1

    requests = [
        httpx.Request(
            "POST",
            f"{server.base_url}/api/v1/documents/{document}/sign",
            json={"certificate_id": server.certificate_id},
            headers=server.headers,
        )
        for document in documents
    ] + [
        httpx.Request(
            "POST",
            f"{server.base_url}/api/v1/sign",
            files={"file": ("in.pdf", make_pdf(), "application/pdf")},
            data={"options": f'{{"certificate_id": "{server.certificate_id}"}}'},
            headers=server.headers,
        )
        for _ in range(ONE_SHOTS)
    ]
    threads = [threading.Thread(target=send, args=(r,)) for r in requests]
    for thread in threads:
        thread.start()
    start.wait()
    victim = _mid_sign(server.pid, database_url, blob_root)
    os.kill(victim, signal.SIGKILL)
    for thread in threads:
        thread.join()
    return seen


def _mid_sign(supervisor: int, database_url: str, blob_root: Path) -> int:
    """A worker writing a spool file while some signed PDF is stored and not yet committed."""
    blobs = FilesystemBlobStore(blob_root)
    engine = make_engine(database_url)
    deadline = time.monotonic() + 30
    try:
        while time.monotonic() < deadline:
            writing = _writing_a_spool_file(supervisor, blob_root / ".incoming")
            if writing is None:
                continue
            with engine.connect() as connection:
                committed = connection.scalar(
                    select(func.count()).select_from(DocumentVersion)
                )
            if sum(1 for _ in blobs.blob_files()) > (committed or 0):
                return writing
    finally:
        engine.dispose()
    raise AssertionError("no worker was seen signing with a signature uncommitted")


def _writing_a_spool_file(supervisor: int, incoming: Path) -> int | None:
    for pid in worker_pids(supervisor):
        with suppress(OSError):  # gone meanwhile
            for fd in Path(f"/proc/{pid}/fd").iterdir():
                with suppress(OSError):  # closed meanwhile
                    if Path(os.readlink(fd)).parent == incoming:
                        return pid
    return None


def _unreferenced(
    factory: sessionmaker[Session], blobs: FilesystemBlobStore
) -> list[sweeper.BlobFile]:
    with factory() as session:
        referenced = {
            (str(row.document_id), row.sha256)
            for row in session.execute(
                select(DocumentVersion.document_id, DocumentVersion.sha256)
            )
        }
    return [b for b in blobs.blob_files() if (b.namespace, b.sha256) not in referenced]


def _assert_signed_with_records_or_untouched(
    factory: sessionmaker[Session], blobs: FilesystemBlobStore, uploaded: list[str]
) -> None:
    with factory() as session:
        documents = session.scalars(select(Document)).all()
        versions = session.scalars(select(DocumentVersion)).all()
        signatures = session.scalars(select(Signature)).all()
    by_document: dict[uuid.UUID, list[DocumentVersion]] = {}
    for version in versions:
        by_document.setdefault(version.document_id, []).append(version)
    signed = {s.document_id: s for s in signatures}
    for document in documents:
        own = sorted(by_document[document.id], key=lambda v: v.number)
        assert [v.number for v in own] == list(range(1, document.version_count + 1))
        assert document.latest_sha256 == own[-1].sha256
        for version in own:
            assert blobs.exists(str(document.id), version.sha256)
        if str(document.id) in uploaded and document.version_count == 1:
            assert document.status == DocumentStatus.UPLOADED  # untouched
            assert document.id not in signed
        else:  # signed, with its signature record
            assert document.status == DocumentStatus.SIGNED
            assert signed[document.id].sha256_after == document.latest_sha256
    audited = {event.resource_id for event in audit_events(factory, "document.signed")}
    assert audited == {str(document_id) for document_id in signed}
