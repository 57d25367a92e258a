"""Content retention: the PDF bytes of old documents are deleted, their records stay.

The background worker calls `purge_expired_content` daily. Metadata, versions
(with their SHA-256), signature records and audit entries are kept, so what was
signed, by whom and when can still be shown; the content answers 410.
"""

from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from app.audit import service as audit_service
from app.core.db import on_commit, unit_of_work
from app.core.storage import BlobStore
from app.core.types import utcnow
from app.documents.models import Document, DocumentStatus
from app.settings import service as settings_service

PURGE_ACTION = "documents.content_purged"


def purge_expired_content(
    factory: sessionmaker[Session],
    blobs: BlobStore,
    *,
    now: datetime | None = None,
    batch_size: int = 1000,
) -> int:
    """Delete the content of documents unchanged for `content_retention_days`; returns how many.

    Each batch is one transaction: the documents become `purged` and one
    `documents.content_purged` entry lists them (one entry per run unless it
    purges more than `batch_size`); their files go once it commits. A document
    being signed meanwhile is locked and skipped (PostgreSQL), then kept: its
    new version makes it recent.
    """
    with factory() as session:
        days = settings_service.documents(session).content_retention_days
    if days is None:
        return 0
    cutoff = (now or utcnow()) - timedelta(days=days)
    purged = 0
    while True:
        with unit_of_work(factory) as session:
            count = _purge_batch(
                session, blobs, cutoff=cutoff, days=days, limit=batch_size
            )
        purged += count
        if count < batch_size:
            return purged


def _purge_batch(
    session: Session, blobs: BlobStore, *, cutoff: datetime, days: int, limit: int
) -> int:
    documents = session.scalars(
        select(Document)
        .where(Document.status != DocumentStatus.PURGED, Document.updated_at < cutoff)
        .order_by(Document.updated_at, Document.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
    ).all()
    if not documents:
        return 0
    namespaces = [str(document.id) for document in documents]
    for document in documents:
        document.status = DocumentStatus.PURGED
    on_commit(session, lambda: _delete_contents(blobs, namespaces))
    audit_service.record(
        session,
        actor=audit_service.SYSTEM,
        action=PURGE_ACTION,
        resource_type="document",
        details={
            "count": len(documents),
            "retention_days": days,
            "cutoff": cutoff.isoformat(),
            "document_ids": namespaces,
        },
    )
    return len(documents)


def _delete_contents(blobs: BlobStore, namespaces: list[str]) -> None:
    for namespace in namespaces:
        blobs.delete_namespace(namespace)
