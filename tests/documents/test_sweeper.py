"""The blob sweeper: stale spool files and unreferenced blobs go, referenced and recent ones stay.

Through the blob store's interface, so on either backend (SIGNVAULT_TEST_BLOB_STORE);
tests/documents/test_s3_store.py sweeps a bucket in every run. An object's
LastModified cannot be set back, so "old" here is "written before a cutoff
the test waits past", not a changed time.
"""

import logging
import math
import os
import threading
import time
import uuid
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from app.core.blobstores import FilesystemBlobStore
from app.core.config import Settings
from app.core.storage import BlobStore, StoredBlob
from app.documents import sweeper
from app.documents.models import DocumentVersion
from app.main import create_app
from tests.documents.test_documents import upload
from tests.pdfs import make_pdf

HOUR = 3600


@pytest.fixture
def settings(settings: Settings) -> Settings:
    # The tests run the sweep themselves; the one at the worker's start is tested apart.
    return settings.model_copy(update={"background_in_process": False})


def age(path: Path, seconds: float) -> Path:
    """Make `path` look last written `seconds` ago."""
    then = time.time() - seconds
    os.utime(path, (then, then))
    return path


def a_whole_second_later() -> float:
    """Wait past the next whole second and return it: what was written before is older.

    Object stores keep LastModified in whole seconds; the margin covers the
    filesystem's coarse clock.
    """
    boundary = math.floor(time.time()) + 1
    while time.time() < boundary + 0.05:
        time.sleep(0.02)
    return float(boundary)


def spool_file(settings: Settings, *, age_s: float) -> Path:
    path = settings.data_dir / "blobs" / ".incoming" / f"spool-{uuid.uuid4().hex[:8]}"
    path.write_bytes(b"%PDF-1.7 cut short")
    return age(path, age_s)


def add_version(
    session: Session, document_id: str, blob: StoredBlob, number: int = 2
) -> None:
    session.add(
        DocumentVersion(
            document_id=uuid.UUID(document_id),
            number=number,
            sha256=blob.sha256,
            size=blob.size,
        )
    )


def test_sweep_removes_old_spool_files_and_unreferenced_blobs_and_nothing_else(
    app: FastAPI,
    settings: Settings,
    client: TestClient,
    admin_headers: dict[str, str],
    session_factory: sessionmaker[Session],
    caplog: pytest.LogCaptureFixture,
) -> None:
    blobs: BlobStore = app.state.blobs
    document = upload(client, admin_headers, make_pdf()).json()
    # A signed output whose transaction never committed, and a whole upload that never did.
    signed_never_committed = blobs.put_bytes(document["id"], b"signed")
    never_committed_id = str(uuid.uuid4())
    upload_never_committed = blobs.put_bytes(never_committed_id, b"upload")
    cutoff = a_whole_second_later()
    in_flight_id = str(uuid.uuid4())
    in_flight = blobs.put_bytes(in_flight_id, b"committing now")
    stale_spool = spool_file(settings, age_s=2 * HOUR)
    live_spool = spool_file(settings, age_s=0)  # after the cutoff, as in_flight

    with caplog.at_level(logging.INFO, logger=sweeper.logger.name):
        result = sweeper.sweep(
            session_factory,
            blobs=blobs,
            grace_seconds=HOUR,
            metrics=app.state.metrics,
            now=cutoff + HOUR,
        )

    assert (result.spool_files, result.orphan_blobs, result.kept) == (1, 2, 0)
    assert result.orphan_bytes == len(b"signed") + len(b"upload")
    assert not blobs.exists(document["id"], signed_never_committed.sha256)
    assert not blobs.exists(never_committed_id, upload_never_committed.sha256)
    if isinstance(blobs, FilesystemBlobStore):  # its emptied namespace folder too
        assert not (blobs.root / never_committed_id[:2] / never_committed_id).exists()
    assert not stale_spool.exists()
    assert blobs.exists(document["id"], document["sha256"])
    assert blobs.exists(in_flight_id, in_flight.sha256)
    assert live_spool.exists()
    download = client.get(
        f"/api/v1/documents/{document['id']}/content", headers=admin_headers
    )
    assert download.status_code == 200
    [line] = [r for r in caplog.records if r.name == sweeper.logger.name]
    assert line.levelno == logging.WARNING
    assert line.getMessage().startswith(
        "blob sweep: removed 1 spool files not written for 3600 s and 2 blobs (12 bytes)"
    )
    metrics = client.get("/metrics").text
    assert 'signvault_blob_sweep_removed_total{kind="spool_file"} 1.0' in metrics
    assert 'signvault_blob_sweep_removed_total{kind="orphan_blob"} 2.0' in metrics


def test_a_version_committed_between_listing_and_removal_keeps_its_blob(
    app: FastAPI,
    client: TestClient,
    admin_headers: dict[str, str],
    session_factory: sessionmaker[Session],
) -> None:
    blobs: BlobStore = app.state.blobs
    document = upload(client, admin_headers, make_pdf()).json()
    signed = blobs.put_bytes(document["id"], b"signed, committing")
    # No grace period: only the re-check before removal protects the blob.
    candidates = sweeper.find_orphans(
        session_factory, blobs, written_before=time.time() + 1
    )
    assert signed.sha256 in {c.sha256 for c in candidates}

    with session_factory.begin() as session:
        add_version(session, document["id"], signed)
    result = sweeper.SweepResult()
    sweeper.remove_orphans(session_factory, blobs, candidates, result)

    assert (result.kept, result.orphan_blobs) == (1, 0)
    assert blobs.exists(document["id"], signed.sha256)


def test_removal_waits_for_a_transaction_that_has_written_its_version(
    app: FastAPI,
    client: TestClient,
    admin_headers: dict[str, str],
    session_factory: sessionmaker[Session],
) -> None:
    blobs: BlobStore = app.state.blobs
    document = upload(client, admin_headers, make_pdf()).json()
    signed = blobs.put_bytes(document["id"], b"signed, committing")
    candidates = sweeper.find_orphans(
        session_factory, blobs, written_before=time.time() + 1
    )
    result = sweeper.SweepResult()
    removal = threading.Thread(
        target=sweeper.remove_orphans,
        args=(session_factory, blobs, candidates, result),
    )
    with session_factory.begin() as session:
        add_version(session, document["id"], signed)
        session.flush()  # written, not committed
        removal.start()
        removal.join(timeout=1.0)
        assert removal.is_alive(), "the removal did not wait for the writer"
    removal.join(timeout=30)

    assert (result.kept, result.orphan_blobs) == (1, 0)
    assert blobs.exists(document["id"], signed.sha256)


def test_the_background_worker_sweeps_at_start(settings: Settings) -> None:
    app = create_app(
        settings.model_copy(
            update={"background_in_process": True, "orphan_blob_grace_seconds": 0}
        )
    )
    try:
        blobs: BlobStore = app.state.blobs
        namespace = str(uuid.uuid4())
        left = blobs.put_bytes(namespace, b"left")
        a_whole_second_later()
        with TestClient(app) as client:
            deadline = time.monotonic() + 20
            while blobs.exists(namespace, left.sha256) and time.monotonic() < deadline:
                time.sleep(0.05)
            assert not blobs.exists(namespace, left.sha256)
            metrics = client.get("/metrics").text
        assert 'signvault_blob_sweep_removed_total{kind="orphan_blob"} 1.0' in metrics
    finally:
        app.state.engine.dispose()
