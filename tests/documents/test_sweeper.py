"""The blob sweeper: stale spool files and unreferenced blobs go, referenced and recent ones stay."""

import logging
import os
import threading
import time
import uuid
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from app.core.config import Settings
from app.core.storage import BlobStore
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


def orphan(blobs: BlobStore, namespace: str, content: bytes, *, age_s: float) -> Path:
    stored = blobs.put_bytes(namespace, content)
    return age(blobs.path(namespace, stored.sha256), age_s)


def spool_file(blobs: BlobStore, *, age_s: float) -> Path:
    path = blobs.root / ".incoming" / f"spool-{uuid.uuid4().hex[:8]}"
    path.write_bytes(b"%PDF-1.7 cut short")
    return age(path, age_s)


def add_version(
    session: Session, document_id: str, path: Path, number: int = 2
) -> None:
    session.add(
        DocumentVersion(
            document_id=uuid.UUID(document_id),
            number=number,
            sha256=path.name,
            size=path.stat().st_size,
        )
    )


def test_sweep_removes_old_spool_files_and_unreferenced_blobs_and_nothing_else(
    app: FastAPI,
    client: TestClient,
    admin_headers: dict[str, str],
    session_factory: sessionmaker[Session],
    caplog: pytest.LogCaptureFixture,
) -> None:
    blobs: BlobStore = app.state.blobs
    document = upload(client, admin_headers, make_pdf()).json()
    referenced = age(blobs.path(document["id"], document["sha256"]), 2 * HOUR)
    # A signed output whose transaction never committed, and a whole upload that never did.
    signed_never_committed = orphan(blobs, document["id"], b"signed", age_s=2 * HOUR)
    upload_never_committed = orphan(blobs, str(uuid.uuid4()), b"upload", age_s=2 * HOUR)
    in_flight = orphan(blobs, str(uuid.uuid4()), b"committing now", age_s=60)
    stale_spool = spool_file(blobs, age_s=2 * HOUR)
    live_spool = spool_file(blobs, age_s=60)

    with caplog.at_level(logging.INFO, logger=sweeper.logger.name):
        result = sweeper.sweep(
            session_factory,
            blobs=blobs,
            grace_seconds=HOUR,
            metrics=app.state.metrics,
        )

    assert (result.spool_files, result.orphan_blobs, result.kept) == (1, 2, 0)
    assert result.orphan_bytes == len(b"signed") + len(b"upload")
    assert not signed_never_committed.exists()
    assert not upload_never_committed.exists()
    assert not upload_never_committed.parent.exists()  # its emptied namespace too
    assert not stale_spool.exists()
    assert referenced.exists()
    assert in_flight.exists()
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
    signed = orphan(blobs, document["id"], b"signed, committing", age_s=0)
    # No grace period: only the re-check before removal protects the blob.
    candidates = sweeper.find_orphans(
        session_factory, blobs, written_before=time.time() + 1
    )
    assert signed.name in {c.sha256 for c in candidates}

    with session_factory.begin() as session:
        add_version(session, document["id"], signed)
    result = sweeper.SweepResult()
    sweeper.remove_orphans(session_factory, blobs, candidates, result)

    assert (result.kept, result.orphan_blobs) == (1, 0)
    assert signed.exists()


def test_removal_waits_for_a_transaction_that_has_written_its_version(
    app: FastAPI,
    client: TestClient,
    admin_headers: dict[str, str],
    session_factory: sessionmaker[Session],
) -> None:
    blobs: BlobStore = app.state.blobs
    document = upload(client, admin_headers, make_pdf()).json()
    signed = orphan(blobs, document["id"], b"signed, committing", age_s=0)
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
    assert signed.exists()


def test_the_background_worker_sweeps_at_start(settings: Settings) -> None:
    app = create_app(settings.model_copy(update={"background_in_process": True}))
    try:
        left = orphan(app.state.blobs, str(uuid.uuid4()), b"left", age_s=2 * HOUR)
        with TestClient(app) as client:
            deadline = time.monotonic() + 20
            while left.exists() and time.monotonic() < deadline:
                time.sleep(0.05)
            assert not left.exists()
            metrics = client.get("/metrics").text
        assert 'signvault_blob_sweep_removed_total{kind="orphan_blob"} 1.0' in metrics
    finally:
        app.state.engine.dispose()
