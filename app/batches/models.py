import uuid
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import ForeignKey, Index, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.core.db import Base, IdMixin
from app.core.types import enum_column_type, utcnow


class BatchStatus(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    COMPLETED = "completed"


class ItemStatus(StrEnum):
    PENDING = "pending"
    SIGNED = "signed"
    FAILED = "failed"


class Batch(IdMixin, Base):
    """Documents to sign with one certificate and one set of options, one transaction each.

    A processor claims the batch (`running`, `claimed_by`) and renews `heartbeat_at`
    after every item; a batch whose heartbeat is stale is claimed again and goes on
    with its pending items.
    """

    __tablename__ = "signing_batches"
    __table_args__ = (
        Index("ix_signing_batches_owner", "owner_kind", "owner_id"),
        Index("ix_signing_batches_queue", "status", "heartbeat_at"),
        UniqueConstraint(
            "owner_kind",
            "owner_id",
            "idempotency_key",
            name="uq_signing_batches_idempotency_key",
        ),
    )

    owner_kind: Mapped[str] = mapped_column(String(16))
    owner_id: Mapped[uuid.UUID]
    owner_name: Mapped[str] = mapped_column(String(200))
    owner_scope: Mapped[list[str] | None]
    options: Mapped[dict[str, Any]]
    request_sha256: Mapped[str] = mapped_column(String(64))
    idempotency_key: Mapped[str | None] = mapped_column(String(200))
    status: Mapped[BatchStatus] = mapped_column(
        enum_column_type(BatchStatus), default=BatchStatus.PENDING
    )
    total: Mapped[int]
    succeeded: Mapped[int] = mapped_column(default=0)
    failed: Mapped[int] = mapped_column(default=0)
    claimed_by: Mapped[str | None] = mapped_column(String(200))
    heartbeat_at: Mapped[datetime | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]

    items: Mapped[list["BatchItem"]] = relationship(
        lazy="raise", order_by="BatchItem.position", passive_deletes=True
    )


class BatchItem(IdMixin, Base):
    """One document of a batch and what became of it.

    An uploaded file that could not be stored as a document (not a PDF, too large)
    is an item without a document, failed from the start.
    """

    __tablename__ = "signing_batch_items"
    __table_args__ = (
        UniqueConstraint(
            "batch_id", "position", name="uq_signing_batch_items_position"
        ),
    )

    batch_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("signing_batches.id", ondelete="CASCADE"), index=True
    )
    position: Mapped[int]
    # No foreign key: a batch may name a document that does not exist (its item fails).
    document_id: Mapped[uuid.UUID | None]
    filename: Mapped[str | None] = mapped_column(String(255))
    status: Mapped[ItemStatus] = mapped_column(
        enum_column_type(ItemStatus), default=ItemStatus.PENDING
    )
    signature_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("signatures.id", ondelete="SET NULL")
    )
    error_code: Mapped[str | None] = mapped_column(String(100))
    error_detail: Mapped[str | None] = mapped_column(Text)
    finished_at: Mapped[datetime | None]
