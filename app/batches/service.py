"""Signing batches: many documents, one certificate and one set of options, one transaction each.

State lives in the database only: a processor (the request itself for a small batch,
a background thread or `signvault worker` for a large one) claims a batch, signs its
pending items one transaction each, renewing the batch's heartbeat, and completes it.
A batch whose heartbeat is stale (its processor died) is claimed again and goes on
with the items still pending; an item is signed and marked in one transaction, so it
is never signed twice.
"""

import hashlib
import json
import logging
import os
import socket
import threading
import uuid
from collections.abc import Callable, Sequence
from contextlib import suppress
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import IO, Any

from asn1crypto import x509 as asn1_x509
from sqlalchemy import Select, and_, func, or_, select, update
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session, selectinload, sessionmaker

from app.access.entitlements import Entitlement
from app.access.principal import Principal
from app.audit import service as audit_service
from app.audit.service import Actor, ActorKind, Outcome
from app.auth import service as auth_service
from app.batches.errors import BatchNotFound
from app.batches.models import Batch, BatchItem, BatchStatus, ItemStatus
from app.batches.schemas import MAX_BATCH_DOCUMENTS, BatchOptions
from app.certificates.vault import Vault
from app.core.config import Settings
from app.core.db import unit_of_work
from app.core.errors import (
    AppError,
    Forbidden,
    InvalidInput,
    PayloadTooLarge,
    is_storage_full,
)
from app.core.pagination import PageParams, paginate
from app.core.storage import BlobStore, BlobStoreUnavailable, sha256_of
from app.core.types import utcnow
from app.documents import service as documents_service
from app.documents.errors import EmptyUpload, NotAPdf, PdfEncrypted, PdfUnreadable
from app.license import service as license_service
from app.license.service import Feature
from app.notifications.outbox import Event, emit
from app.signing import service as signing_service
from app.signing.errors import IdempotencyKeyReused
from app.signing.schemas import SignDocumentRequest

logger = logging.getLogger(__name__)

SORTABLE = {
    "created_at": Batch.created_at,
    "finished_at": Batch.finished_at,
    "status": Batch.status,
    "total": Batch.total,
}


@dataclass(frozen=True, slots=True)
class SigningTools:
    """What signing needs from the application, besides a database session."""

    vault: Vault
    blobs: BlobStore
    settings: Settings
    trust_roots: Sequence[asn1_x509.Certificate]


def worker_identity() -> str:
    """Who claims a batch: host, process and thread (for the record and the logs)."""
    return f"{socket.gethostname()}:{os.getpid()}:{threading.get_ident()}"


@dataclass(frozen=True, slots=True)
class UploadedFile:
    """A file posted with a batch, spooled by the request parser."""

    filename: str | None
    file: IO[bytes]
    size: int


def _fingerprint(body: BatchOptions, uploads: Sequence[UploadedFile]) -> str:
    content: dict[str, Any] = body.model_dump(mode="json")
    if uploads:
        content["uploads"] = [[u.filename, sha256_of(u.file)] for u in uploads]
    return hashlib.sha256(json.dumps(content, sort_keys=True).encode()).hexdigest()


def _options_of(session: Session, body: BatchOptions) -> dict[str, Any]:
    options = body.model_dump(mode="json", exclude={"document_ids"})
    # The level in force now (the profile's or the settings' default) for every
    # item, whenever each is signed; an unknown profile is refused now.
    request = signing_service.resolve_sign_request(session, body)
    options["level"] = request.options.level.value
    return options


def create_batch(
    session: Session,
    principal: Principal,
    *,
    body: BatchOptions,
    uploads: Sequence[UploadedFile],
    blobs: BlobStore,
    max_file_bytes: int,
    idempotency_key: str | None,
    run_now: bool,
) -> tuple[Batch, bool]:
    """Record a batch and its items; with `run_now`, claimed by the caller, who processes it.

    The named documents come first, then each uploaded file, stored as a new
    document as `POST /documents` would; a file that cannot be stored (not a PDF,
    unreadable, encrypted, empty, over `max_file_bytes`) is an item failed at once.

    Returns the batch and whether it was created (False: a retry with the same
    `Idempotency-Key`, answered with the first batch).

    Raises:
        LicenseInvalid, LicenseFeatureMissing: the licence has no `batch` feature (403).
        Forbidden: files uploaded without `documents:write` (403).
        InvalidInput: no document and no file, or more than 1000 (422).
        AppearanceImageInvalid, AppearanceImageTooLarge: the appearance image (422).
        IdempotencyKeyReused: the key was used for a different batch (409).
        UnknownSigningProfile: the body names no existing profile (422).
    """
    license_service.require_feature(session, Feature.BATCH, actor=principal.actor)
    total = len(body.document_ids) + len(uploads)
    if not 1 <= total <= MAX_BATCH_DOCUMENTS:
        raise InvalidInput(
            f"A batch signs 1 to {MAX_BATCH_DOCUMENTS} documents: name document_ids, upload files, or both.",
            invalid_params=[
                {
                    "name": "document_ids",
                    "in": "body",
                    "reason": f"{total} documents and files",
                }
            ],
        )
    if uploads and not principal.has(Entitlement.DOCUMENTS_WRITE):
        raise Forbidden(
            "Uploading files with a batch stores them as documents: it needs 'documents:write' as well."
        )
    options = _options_of(
        session, body
    )  # refuses bad options before anything is stored
    fingerprint = _fingerprint(body, uploads)
    if idempotency_key is not None:
        earlier = session.scalars(
            select(Batch).where(
                Batch.owner_kind == principal.kind,
                Batch.owner_id == principal.id,
                Batch.idempotency_key == idempotency_key,
            )
        ).one_or_none()
        if earlier is not None:
            if earlier.request_sha256 != fingerprint:
                raise IdempotencyKeyReused(
                    "This Idempotency-Key was already used for a different batch."
                )
            return earlier, False
    now = utcnow()
    scope = principal.claims.scope
    batch = Batch(
        owner_kind=principal.kind,
        owner_id=principal.id,
        owner_name=principal.name,
        owner_scope=sorted(scope) if scope is not None else None,
        options=options,
        request_sha256=fingerprint,
        idempotency_key=idempotency_key,
        status=BatchStatus.RUNNING if run_now else BatchStatus.PENDING,
        total=total,
        claimed_by=worker_identity() if run_now else None,
        heartbeat_at=now if run_now else None,
        started_at=now if run_now else None,
        created_at=now,
    )
    session.add(batch)
    session.flush()
    session.add_all(
        BatchItem(batch_id=batch.id, position=position, document_id=document_id)
        for position, document_id in enumerate(body.document_ids, start=1)
    )
    audit_service.record(
        session,
        actor=principal.actor,
        action="batch.created",
        resource_type="batch",
        resource_id=batch.id,
        details={
            "total": batch.total,
            "uploads": len(uploads),
            "certificate_id": batch.options.get("certificate_id"),
            "level": batch.options.get("level"),
            "processing": "request" if run_now else "background",
        },
    )
    for position, upload in enumerate(uploads, start=len(body.document_ids) + 1):
        _add_uploaded_item(
            session,
            principal,
            batch,
            position,
            upload,
            blobs=blobs,
            max_file_bytes=max_file_bytes,
        )
    session.flush()
    return batch, True


def _add_uploaded_item(
    session: Session,
    principal: Principal,
    batch: Batch,
    position: int,
    upload: UploadedFile,
    *,
    blobs: BlobStore,
    max_file_bytes: int,
) -> None:
    """Store the file as a document and queue it, or record it failed: its refusal is its result."""
    filename = upload.filename[:255] if upload.filename else None
    try:
        if upload.size == 0:
            raise EmptyUpload("The uploaded file is empty.")
        if upload.size > max_file_bytes:
            raise PayloadTooLarge(
                f"The file is {upload.size} bytes; the limit per document is {max_file_bytes} bytes (setting SIGNVAULT_MAX_UPLOAD_BYTES)."
            )
        document = documents_service.store_document(
            session,
            principal,
            blobs=blobs,
            upload=upload.file,
            title=None,
            description="",
            external_reference=None,
            filename=upload.filename,
        )
    except (
        EmptyUpload,
        PayloadTooLarge,
        NotAPdf,
        PdfUnreadable,
        PdfEncrypted,
    ) as refused:
        session.add(
            BatchItem(
                batch_id=batch.id,
                position=position,
                document_id=None,
                filename=filename,
                status=ItemStatus.FAILED,
                error_code=refused.code,
                error_detail=refused.detail,
                finished_at=utcnow(),
            )
        )
        batch.failed += 1
        audit_service.record(
            session,
            actor=principal.actor,
            action="batch.item_failed",
            resource_type="batch",
            resource_id=batch.id,
            outcome=Outcome.FAILURE,
            details={
                "position": position,
                "filename": filename,
                "code": refused.code,
                "reason": refused.detail,
            },
        )
        return
    session.add(
        BatchItem(
            batch_id=batch.id,
            position=position,
            document_id=document.id,
            filename=filename,
        )
    )


def get_visible_batch(
    session: Session, principal: Principal, batch_id: uuid.UUID
) -> Batch:
    """The batch with its items, for its owner or an administrator.

    Raises:
        BatchNotFound: no such batch, or not this principal's (404).
    """
    batch = session.scalars(
        select(Batch)
        .where(Batch.id == batch_id)
        .options(selectinload(Batch.items))
        .execution_options(populate_existing=True)
    ).one_or_none()
    if batch is None or not (
        principal.is_administrator
        or (batch.owner_kind == principal.kind and batch.owner_id == principal.id)
    ):
        raise BatchNotFound(f"No batch with id {batch_id}.")
    return batch


def list_batches(
    session: Session,
    principal: Principal,
    *,
    params: PageParams,
    status: Sequence[BatchStatus],
) -> tuple[Sequence[Batch], int]:
    """The caller's own batches."""
    statement: Select[Any] = select(Batch).where(
        Batch.owner_kind == principal.kind, Batch.owner_id == principal.id
    )
    if status:
        statement = statement.where(Batch.status.in_(status))
    return paginate(session, statement, params, sortable=SORTABLE, tiebreaker=Batch.id)


def process_next_batch(
    factory: sessionmaker[Session],
    *,
    vault: Vault,
    blobs: BlobStore,
    settings: Settings,
    trust_roots: Sequence[asn1_x509.Certificate],
    should_stop: Callable[[], bool] = lambda: False,
    now: datetime | None = None,
) -> uuid.UUID | None:
    """Claim one batch (pending, or running with a stale heartbeat) and process it.

    Returns the batch's id, or None when there was nothing to claim. Safe to run
    from several threads, processes and hosts: PostgreSQL hands each batch to one
    claimer (`FOR UPDATE SKIP LOCKED`), SQLite's write lock serialises claims.
    With `should_stop` true between two items, the batch is released unfinished
    for the next processor.
    """
    now = now or utcnow()
    stale = now - timedelta(seconds=settings.batch_claim_timeout_seconds)
    claimer = worker_identity()
    with unit_of_work(factory) as session:
        batch = session.scalars(
            select(Batch)
            .where(
                or_(
                    Batch.status == BatchStatus.PENDING,
                    and_(
                        Batch.status == BatchStatus.RUNNING,
                        or_(Batch.heartbeat_at.is_(None), Batch.heartbeat_at < stale),
                    ),
                )
            )
            .order_by(Batch.created_at, Batch.id)
            .limit(1)
            .with_for_update(skip_locked=True)
        ).first()
        if batch is None:
            return None
        if batch.status == BatchStatus.RUNNING:
            logger.warning(
                "batch %s: taking over from %s (no heartbeat since %s)",
                batch.id,
                batch.claimed_by,
                batch.heartbeat_at,
            )
        batch.status = BatchStatus.RUNNING
        batch.started_at = batch.started_at or now
        batch.heartbeat_at = now
        batch.claimed_by = claimer
        batch_id = batch.id
    run_batch(
        factory,
        batch_id,
        tools=SigningTools(vault, blobs, settings, trust_roots),
        should_stop=should_stop,
    )
    return batch_id


def run_batch(
    factory: sessionmaker[Session],
    batch_id: uuid.UUID,
    *,
    tools: SigningTools,
    should_stop: Callable[[], bool] = lambda: False,
) -> bool:
    """Sign a claimed batch's pending items, one transaction each, then complete it.

    Returns whether the batch is complete (False: stopped and released first).

    Raises:
        OSError, OperationalError: the disk is full (`is_storage_full`); the batch
            is released, its unsigned items pending.
        BlobStoreUnavailable: the object store cannot be reached; the same.
    """
    with unit_of_work(factory) as session:
        pending = session.scalars(
            select(BatchItem.id)
            .where(
                BatchItem.batch_id == batch_id, BatchItem.status == ItemStatus.PENDING
            )
            .order_by(BatchItem.position)
        ).all()
    for item_id in pending:
        if should_stop():
            _release(factory, batch_id)
            return False
        try:
            _process_item(factory, batch_id, item_id, tools)
        except Exception:
            # A full disk (or the database gone): the item stays pending, the batch
            # goes back to the queue.
            with suppress(
                SQLAlchemyError
            ):  # a full SQLite: taken over after the claim timeout
                _release(factory, batch_id)
            raise
    return _complete(factory, batch_id)


def _process_item(
    factory: sessionmaker[Session],
    batch_id: uuid.UUID,
    item_id: uuid.UUID,
    tools: SigningTools,
) -> None:
    try:
        with unit_of_work(factory) as session:
            item = session.get(BatchItem, item_id, with_for_update=True)
            if item is None or item.status != ItemStatus.PENDING:
                return  # another processor got there first
            batch = session.get_one(Batch, batch_id)
            principal = _owner(session, batch)
            if item.document_id is None:
                raise TypeError("a pending batch item always names a document")
            document = documents_service.get_visible_document(
                session, principal, item.document_id, lock=True
            )
            signature = signing_service.sign_document(
                session,
                principal,
                vault=tools.vault,
                blobs=tools.blobs,
                settings=tools.settings,
                trust_roots=tools.trust_roots,
                document=document,
                request=signing_service.resolve_sign_request(
                    session, SignDocumentRequest.model_validate(batch.options)
                ),
            )
            now = utcnow()
            item.status = ItemStatus.SIGNED
            item.signature_id = signature.id
            item.finished_at = now
            session.execute(
                update(Batch)
                .where(Batch.id == batch_id)
                .values(succeeded=Batch.succeeded + 1, heartbeat_at=now)
            )
    except BlobStoreUnavailable:
        raise  # not the document's fault: signed once the store answers again
    except AppError as refusal:
        _record_failure(factory, batch_id, item_id, refusal.code, refusal.detail)
    except Exception as exc:
        if is_storage_full(exc):
            raise  # not the document's fault: signed again once space is freed
        logger.exception("batch %s: item %s failed unexpectedly", batch_id, item_id)
        _record_failure(
            factory,
            batch_id,
            item_id,
            "internal_error",
            "An unexpected error stopped the signing of this document.",
        )


def _owner(session: Session, batch: Batch) -> Principal:
    """The batch owner as a principal now. Raises: AccountDisabled, Forbidden."""
    principal = auth_service.background_principal(
        session,
        kind=batch.owner_kind,
        principal_id=batch.owner_id,
        scope=frozenset(batch.owner_scope) if batch.owner_scope is not None else None,
        job=f"batch:{batch.id}",
    )
    if not principal.has(Entitlement.DOCUMENTS_SIGN):
        raise Forbidden(
            f"The batch owner no longer holds '{Entitlement.DOCUMENTS_SIGN.value}'."
        )
    return principal


def _owner_actor(batch: Batch) -> Actor:
    return Actor(ActorKind(batch.owner_kind), str(batch.owner_id), batch.owner_name)


def _record_failure(
    factory: sessionmaker[Session],
    batch_id: uuid.UUID,
    item_id: uuid.UUID,
    code: str,
    detail: str,
) -> None:
    with unit_of_work(factory) as session:
        now = utcnow()
        marked = session.execute(
            update(BatchItem)
            .where(BatchItem.id == item_id, BatchItem.status == ItemStatus.PENDING)
            .values(
                status=ItemStatus.FAILED,
                error_code=code,
                error_detail=detail,
                finished_at=now,
            )
        )
        if not marked.rowcount:  # type: ignore[attr-defined]
            return
        session.execute(
            update(Batch)
            .where(Batch.id == batch_id)
            .values(failed=Batch.failed + 1, heartbeat_at=now)
        )
        batch = session.get_one(Batch, batch_id)
        item = session.get_one(BatchItem, item_id)
        audit_service.record(
            session,
            actor=_owner_actor(batch),
            action="batch.item_failed",
            resource_type="batch",
            resource_id=batch_id,
            outcome=Outcome.FAILURE,
            details={
                "position": item.position,
                "document_id": str(item.document_id) if item.document_id else None,
                "code": code,
                "reason": detail,
            },
        )


def _release(factory: sessionmaker[Session], batch_id: uuid.UUID) -> None:
    with unit_of_work(factory) as session:
        session.execute(
            update(Batch)
            .where(Batch.id == batch_id, Batch.status == BatchStatus.RUNNING)
            .values(status=BatchStatus.PENDING, claimed_by=None, heartbeat_at=None)
        )


def _complete(factory: sessionmaker[Session], batch_id: uuid.UUID) -> bool:
    with unit_of_work(factory) as session:
        batch = session.get_one(Batch, batch_id, with_for_update=True)
        if batch.status == BatchStatus.COMPLETED:
            return True
        counts = dict(
            session.execute(
                select(BatchItem.status, func.count())
                .where(BatchItem.batch_id == batch_id)
                .group_by(BatchItem.status)
            ).all()
        )
        if counts.get(ItemStatus.PENDING, 0):
            return False  # an item still being signed by another processor
        batch.status = BatchStatus.COMPLETED
        batch.succeeded = counts.get(ItemStatus.SIGNED, 0)
        batch.failed = counts.get(ItemStatus.FAILED, 0)
        batch.finished_at = utcnow()
        batch.claimed_by = None
        emit(
            session,
            Event.BATCH_COMPLETED,
            {
                "batch_id": batch_id,
                "total": batch.total,
                "succeeded": batch.succeeded,
                "failed": batch.failed,
                "owner": batch.owner_name,
            },
        )
        audit_service.record(
            session,
            actor=_owner_actor(batch),
            action="batch.completed",
            resource_type="batch",
            resource_id=batch_id,
            details={
                "total": batch.total,
                "succeeded": batch.succeeded,
                "failed": batch.failed,
            },
        )
    return True
