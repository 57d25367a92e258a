import uuid
from datetime import datetime
from enum import StrEnum

from sqlalchemy import BigInteger, ForeignKey, Index, String, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.core.db import Base, IdMixin, TimestampMixin
from app.core.types import enum_column_type, utcnow


class DocumentStatus(StrEnum):
    UPLOADED = "uploaded"
    SIGNED = "signed"
    PURGED = "purged"  # content deleted by the retention; metadata and records kept


class Document(IdMixin, TimestampMixin, Base):
    """A PDF and its metadata; its bytes live in the blob store, one blob per version."""

    __tablename__ = "documents"
    # A list's default order (newest first, id breaking ties), alone and under the
    # status filter, read from an index rather than sorted.
    __table_args__ = (
        Index("ix_documents_owner", "owner_kind", "owner_id"),
        Index("ix_documents_created", "created_at", "id"),
        Index("ix_documents_status_created", "status", "created_at", "id"),
    )

    title: Mapped[str] = mapped_column(String(300))
    description: Mapped[str] = mapped_column(Text, default="")
    external_reference: Mapped[str | None] = mapped_column(String(200), index=True)
    status: Mapped[DocumentStatus] = mapped_column(
        enum_column_type(DocumentStatus), default=DocumentStatus.UPLOADED
    )
    owner_kind: Mapped[str] = mapped_column(String(16))
    owner_id: Mapped[uuid.UUID]
    owner_name: Mapped[str] = mapped_column(String(200))
    department_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("departments.id", ondelete="SET NULL"), index=True
    )
    original_sha256: Mapped[str] = mapped_column(String(64))
    latest_sha256: Mapped[str] = mapped_column(String(64), index=True)
    size: Mapped[int] = mapped_column(BigInteger)
    page_count: Mapped[int]
    version_count: Mapped[int] = mapped_column(default=1)

    versions: Mapped[list["DocumentVersion"]] = relationship(
        lazy="raise",
        order_by="DocumentVersion.number",
        cascade="all, delete-orphan",
        passive_deletes=True,
    )


class DocumentVersion(IdMixin, Base):
    """The original upload (number 1) and one version per signature after it."""

    __tablename__ = "document_versions"

    document_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("documents.id", ondelete="CASCADE"), index=True
    )
    number: Mapped[int]
    sha256: Mapped[str] = mapped_column(String(64), index=True)
    size: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
