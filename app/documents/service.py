"""Storing, listing, reading and deleting documents and their versions."""

import os
import uuid
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import IO, Any

from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session, selectinload

from app.access.policy import visible_documents
from app.access.principal import Principal
from app.audit import service as audit_service
from app.core.db import on_commit, on_rollback
from app.core.errors import AppError
from app.core.pagination import PageParams, paginate
from app.core.storage import BlobNotFound, BlobStore, BlobStream, StoredBlob
from app.documents.errors import (
    ContentMissing,
    ContentPurged,
    DocumentNotFound,
    DocumentTooLarge,
    NotAPdf,
    PdfEncrypted,
    PdfUnreadable,
    VersionNotFound,
)
from app.documents.models import Document, DocumentStatus, DocumentVersion
from app.signing.engine import EngineError, PdfFacts, inspect_pdf

SORTABLE = {
    "created_at": Document.created_at,
    "updated_at": Document.updated_at,
    "title": Document.title,
    "size": Document.size,
    "status": Document.status,
}
_PDF_MAGIC_WINDOW = 1024


@dataclass(frozen=True, slots=True)
class AcceptedUpload:
    """An upload checked to be a signable PDF and stored under a new document's id."""

    document_id: uuid.UUID
    blob: StoredBlob
    facts: PdfFacts


def store_document(
    session: Session,
    principal: Principal,
    *,
    blobs: BlobStore,
    upload: IO[bytes],
    title: str | None,
    description: str,
    external_reference: str | None,
    filename: str | None = None,
    max_bytes: int | None = None,
) -> Document:
    """Check that the upload is a PDF that can be signed, store it, and record version 1.

    Raises:
        DocumentTooLarge: more than `max_bytes` (the `documents` settings' limit) (413).
        NotAPdf: the bytes do not start like a PDF (415).
        PdfUnreadable: a PDF that cannot be parsed (422).
        PdfEncrypted: a password-protected PDF (422).
    """
    accepted = accept_upload(session, blobs=blobs, upload=upload, max_bytes=max_bytes)
    document = record_document(
        session,
        principal,
        accepted,
        title=title,
        description=description,
        external_reference=external_reference,
        filename=filename,
    )
    session.flush()  # the caller answers with the row's defaults (created_at)
    return document


def accept_upload(
    session: Session,
    *,
    blobs: BlobStore,
    upload: IO[bytes],
    max_bytes: int | None = None,
) -> AcceptedUpload:
    """Check the upload and store its content, without a database write yet.

    The content is deleted again if the transaction rolls back.

    Raises:
        DocumentTooLarge, NotAPdf, PdfUnreadable, PdfEncrypted: as `store_document`.
    """
    size = upload.seek(0, os.SEEK_END)
    if max_bytes is not None and size > max_bytes:
        raise DocumentTooLarge(
            f"The PDF has {size} bytes; the documents settings allow at most {max_bytes}."
        )
    upload.seek(0)
    head = upload.read(_PDF_MAGIC_WINDOW)
    if b"%PDF-" not in head:
        raise NotAPdf("The upload is not a PDF (it does not start with %PDF-).")
    upload.seek(0)
    try:
        facts = inspect_pdf(upload)
    except EngineError as exc:
        raise (PdfEncrypted if exc.code == "pdf_encrypted" else PdfUnreadable)(
            str(exc)
        ) from None
    document_id = uuid.uuid4()
    # Registered first: a write that fails half-way (a full disk) leaves no folder either.
    on_rollback(session, lambda: blobs.delete_namespace(str(document_id)))
    stored = blobs.put_file(str(document_id), upload)
    return AcceptedUpload(document_id, stored, facts)


def record_document(
    session: Session,
    principal: Principal,
    accepted: AcceptedUpload,
    *,
    title: str | None,
    description: str,
    external_reference: str | None,
    filename: str | None = None,
) -> Document:
    """Record an accepted upload as a new document with its version 1, audited.

    Not flushed: a one-shot signature changes the document before its first write.
    """
    stored, facts = accepted.blob, accepted.facts
    document = Document(
        id=accepted.document_id,
        title=title_of(title, filename),
        description=description,
        external_reference=external_reference,
        status=DocumentStatus.SIGNED if facts.signed else DocumentStatus.UPLOADED,
        owner_kind=principal.kind,
        owner_id=principal.id,
        owner_name=principal.name,
        department_id=principal.department_id,
        original_sha256=stored.sha256,
        latest_sha256=stored.sha256,
        size=stored.size,
        page_count=facts.page_count,
        version_count=1,
    )
    session.add(document)
    session.add(
        DocumentVersion(
            document_id=document.id, number=1, sha256=stored.sha256, size=stored.size
        )
    )
    _audit(
        session,
        principal,
        "document.uploaded",
        document,
        {
            "sha256": stored.sha256,
            "size": stored.size,
            "page_count": facts.page_count,
            "title": document.title,
        },
    )
    return document


def title_of(title: str | None, filename: str | None) -> str:
    """The title given, else the file's name without `.pdf`, else a placeholder."""
    return title or _title_from(filename) or "Untitled document"


def _title_from(filename: str | None) -> str | None:
    if not filename:
        return None
    name = filename.rsplit("/", 1)[-1].rsplit("\\", 1)[-1]
    return name[:-4] if name.lower().endswith(".pdf") else name


def list_documents(
    session: Session,
    principal: Principal,
    *,
    params: PageParams,
    status: Sequence[DocumentStatus],
    created_from: datetime | None,
    created_to: datetime | None,
    title_like: str | None,
    owner_id: uuid.UUID | None,
    external_reference: str | None,
) -> tuple[Sequence[Document], int]:
    statement: Select[Any] = visible_documents(select(Document), principal)
    if status:
        statement = statement.where(Document.status.in_(status))
    if created_from is not None:
        statement = statement.where(Document.created_at >= created_from)
    if created_to is not None:
        statement = statement.where(Document.created_at < created_to)
    if title_like:
        statement = statement.where(
            func.lower(Document.title).like(f"%{title_like.lower()}%")
        )
    if owner_id is not None:
        statement = statement.where(Document.owner_id == owner_id)
    if external_reference is not None:
        statement = statement.where(Document.external_reference == external_reference)
    return paginate(
        session, statement, params, sortable=SORTABLE, tiebreaker=Document.id
    )


def get_visible_document(
    session: Session,
    principal: Principal,
    document_id: uuid.UUID,
    *,
    lock: bool = False,
) -> Document:
    """A document the principal may see, else 404 (whether it exists or not).

    Raises:
        DocumentNotFound: no such document, or not visible to this principal.
    """
    statement = visible_documents(
        select(Document).where(Document.id == document_id), principal
    )
    if lock:
        statement = statement.with_for_update()
    document = session.scalars(statement).one_or_none()
    if document is None:
        raise DocumentNotFound(f"No document with id {document_id}.")
    return document


def update_document(
    session: Session,
    principal: Principal,
    *,
    document: Document,
    changes: dict[str, Any],
) -> Document:
    before = {field: getattr(document, field) for field in changes}
    for field, value in changes.items():
        if value is None and field == "title":
            continue
        setattr(document, field, value)
    _audit(
        session,
        principal,
        "document.updated",
        document,
        {"before": before, "after": changes},
    )
    return document


def find_version(session: Session, document: Document, which: str) -> DocumentVersion:
    """`original`, `latest`, or a version number.

    Raises:
        VersionNotFound: no such version.
    """
    statement = select(DocumentVersion).where(
        DocumentVersion.document_id == document.id
    )
    if which == "original":
        statement = statement.where(DocumentVersion.number == 1)
    elif which == "latest":
        statement = statement.where(DocumentVersion.number == document.version_count)
    elif which.isdigit():
        statement = statement.where(DocumentVersion.number == int(which))
    else:
        raise VersionNotFound(
            f"Unknown version '{which}': use original, latest or a version number."
        )
    version = session.scalars(statement).one_or_none()
    if version is None:
        raise VersionNotFound(f"The document has no version {which}.")
    return version


PURGED_DETAIL = "The content of this document was deleted by the retention policy; its metadata, signatures and audit trail remain."


def require_content(document: Document) -> None:
    """Raises ContentPurged (410) when the retention has deleted the document's PDF content."""
    if document.status == DocumentStatus.PURGED:
        raise ContentPurged(PURGED_DETAIL)


def open_content(
    session: Session,
    principal: Principal,
    *,
    blobs: BlobStore,
    document_id: uuid.UUID,
    sha256: str,
    version: int | None = None,
    start: int = 0,
    end: int | None = None,
) -> BlobStream:
    """The stored bytes of one version (from `start` through `end`), opened now.

    A file opened stays readable when the retention purge deletes it meanwhile,
    so a response under way is never cut short.

    Raises:
        ContentPurged: the retention purge deleted it, even after this request read the document (410).
        ContentMissing: gone from the blob store while a version names it; audited (410).
        BlobStoreUnavailable: the object store cannot be reached (503).
    """
    try:
        return blobs.open(str(document_id), sha256, start=start, end=end)
    except BlobNotFound:
        raise content_gone(
            session, principal, document_id=document_id, sha256=sha256, version=version
        ) from None


@contextmanager
def seekable_content(
    session: Session,
    principal: Principal,
    *,
    blobs: BlobStore,
    document_id: uuid.UUID,
    sha256: str,
) -> Iterator[IO[bytes]]:
    """One version's bytes as a seekable file (for a PDF parser). Raises: as `open_content`."""
    with ExitStack() as files:
        try:
            content = files.enter_context(blobs.open_seekable(str(document_id), sha256))
        except BlobNotFound:
            raise content_gone(
                session, principal, document_id=document_id, sha256=sha256
            ) from None
        yield content


def content_gone(
    session: Session,
    principal: Principal,
    *,
    document_id: uuid.UUID,
    sha256: str,
    version: int | None = None,
) -> AppError:
    """The error for content a version names that the blob store does not have.

    ContentPurged when the retention purge deleted it (committed after this
    request read the document: asked again outside its transaction); else
    ContentMissing, with a `document.content_missing` audit entry that outlives
    the failing request.
    """
    with Session(session.get_bind()) as fresh:
        status = fresh.scalar(select(Document.status).where(Document.id == document_id))
    if status == DocumentStatus.PURGED:
        return ContentPurged(PURGED_DETAIL)
    which = f"version {version}" if version is not None else "a version"
    audit_service.record_isolated(
        session,
        actor=principal.actor,
        action="document.content_missing",
        resource_type="document",
        resource_id=document_id,
        details={"version": version, "sha256": sha256},
    )
    return ContentMissing(
        f"The content of document {document_id} ({which}, SHA-256 {sha256}) is missing "
        "from the blob store; an administrator has to restore it from a backup."
    )


def record_download(
    session: Session,
    principal: Principal,
    *,
    document: Document,
    version: DocumentVersion,
) -> None:
    _audit(
        session,
        principal,
        "document.downloaded",
        document,
        {"version": version.number, "sha256": version.sha256},
    )


def list_versions(session: Session, document: Document) -> Sequence[DocumentVersion]:
    return session.scalars(
        select(DocumentVersion)
        .where(DocumentVersion.document_id == document.id)
        .order_by(DocumentVersion.number)
    ).all()


def delete_document(
    session: Session, principal: Principal, *, blobs: BlobStore, document: Document
) -> None:
    """Delete metadata and every version's content for good; the audit entries stay.

    The files go only once the deletion has committed, so a failed request
    never loses content that the database still points to.
    """
    loaded = session.scalars(
        select(Document)
        .where(Document.id == document.id)
        .options(selectinload(Document.versions))
    ).one()
    _audit(
        session,
        principal,
        "document.deleted",
        loaded,
        {"title": loaded.title, "versions": [v.sha256 for v in loaded.versions]},
    )
    session.delete(loaded)
    session.flush()
    namespace = str(document.id)
    on_commit(session, lambda: blobs.delete_namespace(namespace))


def _audit(
    session: Session,
    principal: Principal,
    action: str,
    document: Document,
    details: dict[str, Any],
) -> None:
    audit_service.record(
        session,
        actor=principal.actor,
        action=action,
        resource_type="document",
        resource_id=document.id,
        details={
            k: (v.value if hasattr(v, "value") else v) for k, v in details.items()
        },
    )
