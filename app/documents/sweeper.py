"""The blob sweeper: removes what a crashed process left in the blob store.

A request writes a PDF's blob (through a local spool file in `blobs/.incoming`)
before its transaction commits the version that refers to it, and deletes it
again if the transaction rolls back. A process killed in between (`kill -9`,
the OOM killer, a power cut) leaves the blob, or the spool file, behind. The
background worker runs `sweep` at start and hourly; it removes

- spool files not written for an hour (a live request writes its spool and
  links it into place within seconds);
- blobs that no document version refers to, once older than
  `SIGNVAULT_ORPHAN_BLOB_GRACE_SECONDS`: a transaction that has written its
  blob and not yet committed is younger than that.

A transaction that commits during the sweep keeps its blob: candidates are
found without locks, then checked again in chunks under a lock that waits for
every transaction which has written a version row and holds off new ones until
the chunk's files are gone (a SHARE lock on `document_versions` on PostgreSQL,
SQLite's one write lock), and only blobs still unreferenced are removed.
"""

import logging
import time
import uuid
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from itertools import islice
from typing import TYPE_CHECKING

from sqlalchemy import select, text
from sqlalchemy.orm import Session, sessionmaker

from app.core.db import unit_of_work
from app.core.storage import BlobFile, BlobStore
from app.documents.models import DocumentVersion

if TYPE_CHECKING:
    from app.core.metrics import Metrics

logger = logging.getLogger(__name__)

# How often the background worker sweeps (it also sweeps once at start).
SWEEP_EVERY_SECONDS = 3600
# A spool file not written for this long belongs to no live request.
SPOOL_MAX_AGE_SECONDS = 3600
# Namespaces (documents) looked up per query, and blobs re-checked per locked transaction.
CHUNK = 500
# The most a re-check waits for the lock on PostgreSQL (signing waits behind it meanwhile).
LOCK_TIMEOUT = "10s"


@dataclass
class SweepResult:
    spool_files: int = 0
    orphan_blobs: int = 0
    orphan_bytes: int = 0
    kept: int = 0  # candidates a transaction referred to by the time of the re-check


def sweep(
    factory: sessionmaker[Session],
    *,
    blobs: BlobStore,
    grace_seconds: float,
    metrics: "Metrics | None" = None,
    now: float | None = None,
) -> SweepResult:
    """One sweep; counted in `metrics` and reported in one log line.

    Works on either blob store: the times are the files' modification times,
    or the objects' LastModified (whole seconds) in a bucket listed page by page.
    """
    now = time.time() if now is None else now
    result = SweepResult(
        spool_files=remove_stale_spool_files(
            blobs, written_before=now - SPOOL_MAX_AGE_SECONDS
        )
    )
    candidates = find_orphans(factory, blobs, written_before=now - grace_seconds)
    remove_orphans(factory, blobs, candidates, result)
    if metrics is not None:
        metrics.swept.labels("spool_file").inc(result.spool_files)
        metrics.swept.labels("orphan_blob").inc(result.orphan_blobs)
    # A warning when a crash left something: unconfigured Python logging shows only those.
    logger.log(
        logging.WARNING if result.spool_files or result.orphan_blobs else logging.INFO,
        "blob sweep: removed %d spool files not written for %d s and %d blobs (%d bytes) "
        "that no document version refers to, older than %d s; kept %d referred to meanwhile",
        result.spool_files,
        SPOOL_MAX_AGE_SECONDS,
        result.orphan_blobs,
        result.orphan_bytes,
        grace_seconds,
        result.kept,
    )
    return result


def remove_stale_spool_files(blobs: BlobStore, *, written_before: float) -> int:
    removed = 0
    for path, modified in blobs.spool_files():
        if modified < written_before:
            try:
                path.unlink()
            except FileNotFoundError:
                continue  # finished, or removed by another sweeper
            removed += 1
    return removed


def find_orphans(
    factory: sessionmaker[Session], blobs: BlobStore, *, written_before: float
) -> list[BlobFile]:
    """Blobs written before `written_before` that no committed version refers to (no lock)."""
    old = (blob for blob in blobs.blob_files() if blob.modified < written_before)
    orphans: list[BlobFile] = []
    for chunk in _chunks(_of_documents(old)):
        with factory() as session:
            referenced = _referenced(session, chunk)
        orphans += [blob for blob in chunk if _key(blob) not in referenced]
    return orphans


def remove_orphans(
    factory: sessionmaker[Session],
    blobs: BlobStore,
    candidates: Sequence[BlobFile],
    result: SweepResult,
) -> None:
    """Remove the candidates still unreferenced once every writer of a version has committed."""
    for chunk in _chunks(candidates):
        with unit_of_work(factory) as session:
            _hold_off_new_versions(session)
            referenced = _referenced(session, chunk, lock=True)
            for blob in chunk:
                if _key(blob) in referenced:
                    result.kept += 1
                elif blobs.delete(blob.namespace, blob.sha256):
                    result.orphan_blobs += 1
                    result.orphan_bytes += blob.size
        for namespace in {blob.namespace for blob in chunk}:
            blobs.remove_if_empty(namespace)


def _of_documents(found: Iterable[BlobFile]) -> Iterator[BlobFile]:
    """Blobs whose namespace is a document id."""
    for blob in found:
        try:
            uuid.UUID(blob.namespace)
        except ValueError:
            continue  # not written by this application: not the sweeper's to judge
        yield blob


def _chunks(items: Iterable[BlobFile]) -> Iterator[list[BlobFile]]:
    """Lists of CHUNK items (itertools.batched from Python 3.12)."""
    iterator = iter(items)
    while chunk := list(islice(iterator, CHUNK)):
        yield chunk


def _key(blob: BlobFile) -> tuple[uuid.UUID, str]:
    return uuid.UUID(blob.namespace), blob.sha256


def _referenced(
    session: Session, chunk: Sequence[BlobFile], *, lock: bool = False
) -> set[tuple[uuid.UUID, str]]:
    documents = {uuid.UUID(blob.namespace) for blob in chunk}
    statement = select(DocumentVersion.document_id, DocumentVersion.sha256).where(
        DocumentVersion.document_id.in_(documents)
    )
    if lock:
        # On SQLite a read FOR UPDATE begins IMMEDIATE: it takes the write lock (app.core.db).
        statement = statement.with_for_update()
    return {(row.document_id, row.sha256) for row in session.execute(statement)}


def _hold_off_new_versions(session: Session) -> None:
    """PostgreSQL: wait for transactions that wrote a version row; keep new ones out until commit."""
    if session.get_bind().dialect.name != "postgresql":
        return
    session.execute(text(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'"))
    session.execute(text(f"LOCK TABLE {DocumentVersion.__tablename__} IN SHARE MODE"))
