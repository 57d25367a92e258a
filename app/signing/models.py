import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import ForeignKey, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.core.db import Base, IdMixin
from app.core.types import utcnow
from app.documents.models import Document


class Signature(IdMixin, Base):
    """One signature this server applied: which version it produced, with which key, by whom."""

    __tablename__ = "signatures"

    document_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("documents.id", ondelete="CASCADE"), index=True
    )
    version_number: Mapped[int]
    certificate_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("signing_certificates.id", ondelete="SET NULL"), index=True
    )
    certificate_fingerprint: Mapped[str] = mapped_column(String(64))
    certificate_subject: Mapped[str] = mapped_column(String(500))
    signer_kind: Mapped[str] = mapped_column(String(16))
    signer_id: Mapped[uuid.UUID] = mapped_column(index=True)
    signer_name: Mapped[str] = mapped_column(String(200))
    level: Mapped[str] = mapped_column(String(8))
    field_name: Mapped[str] = mapped_column(String(200))
    reason: Mapped[str | None] = mapped_column(String(500))
    location: Mapped[str | None] = mapped_column(String(200))
    certified: Mapped[str] = mapped_column(String(16))
    signing_time: Mapped[datetime]
    timestamp_time: Mapped[datetime | None]
    sha256_before: Mapped[str] = mapped_column(String(64))
    sha256_after: Mapped[str] = mapped_column(String(64), index=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)

    # Not for loading: it tells a flush to insert a new document before its signature.
    document: Mapped[Document] = relationship(lazy="raise")


class IdempotencyRecord(IdMixin, Base):
    """A sign request's `Idempotency-Key`: a retry returns the first result instead of signing again."""

    __tablename__ = "idempotency_records"
    __table_args__ = (
        UniqueConstraint(
            "principal_kind", "principal_id", "key", name="uq_idempotency_records_key"
        ),
    )

    principal_kind: Mapped[str] = mapped_column(String(16))
    principal_id: Mapped[uuid.UUID]
    key: Mapped[str] = mapped_column(String(200))
    request_sha256: Mapped[str] = mapped_column(String(64))
    signature_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("signatures.id", ondelete="CASCADE")
    )
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    response: Mapped[dict[str, Any] | None]
