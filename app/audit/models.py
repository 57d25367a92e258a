import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import BigInteger, Index, LargeBinary, String
from sqlalchemy.orm import Mapped, mapped_column

from app.core.db import Base, IdMixin
from app.core.types import utcnow


class AuditEvent(Base):
    """One entry of the append-only, hash-chained audit log."""

    __tablename__ = "audit_events"
    # Each filter of the search has an index ending in (occurred_at, seq), the page's
    # order with its tiebreaker, so a filtered, time-ordered page is an index range
    # scan, not a sort of every match.
    __table_args__ = (
        Index(
            "ix_audit_events_resource",
            "resource_type",
            "resource_id",
            "occurred_at",
            "seq",
        ),
        Index("ix_audit_events_actor_time", "actor_id", "occurred_at", "seq"),
        Index("ix_audit_events_action_time", "action", "occurred_at", "seq"),
        Index("ix_audit_events_outcome_time", "outcome", "occurred_at", "seq"),
        Index("ix_audit_events_ip_time", "ip", "occurred_at", "seq"),
        Index("ix_audit_events_time", "occurred_at", "seq"),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    seq: Mapped[int] = mapped_column(BigInteger, unique=True)
    occurred_at: Mapped[datetime]
    actor_kind: Mapped[str] = mapped_column(String(16))
    actor_id: Mapped[str | None] = mapped_column(String(64))
    actor_name: Mapped[str | None] = mapped_column(String(200))
    # Byte order on PostgreSQL too, so an action prefix is an index range.
    action: Mapped[str] = mapped_column(
        String(100).with_variant(String(100, collation="C"), "postgresql")
    )
    resource_type: Mapped[str | None] = mapped_column(String(64))
    resource_id: Mapped[str | None] = mapped_column(String(64))
    outcome: Mapped[str] = mapped_column(String(16))
    # The client's address: the peer, or whom a trusted proxy forwarded for.
    ip: Mapped[str | None] = mapped_column(String(64))
    # The address the connection came from (the proxy, when there is one).
    peer_ip: Mapped[str | None] = mapped_column(String(64))
    user_agent: Mapped[str | None] = mapped_column(String(512))
    request_id: Mapped[str | None] = mapped_column(String(128))
    details: Mapped[dict[str, Any]]
    prev_hash: Mapped[str] = mapped_column(String(64))
    hash: Mapped[str] = mapped_column(String(64), unique=True)


class AuditChainHead(Base):
    """The single row every writer locks to append: the chain cannot fork."""

    __tablename__ = "audit_chain_head"

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    seq: Mapped[int] = mapped_column(BigInteger)
    last_hash: Mapped[str] = mapped_column(String(64))


class AuditSettings(Base):
    """The one row of audit settings (retention, audit-trail generation)."""

    __tablename__ = "audit_settings"

    id: Mapped[int] = mapped_column(primary_key=True, autoincrement=False)
    # None keeps every entry for ever.
    retention_days: Mapped[int | None]
    audit_trail_enabled: Mapped[bool] = mapped_column(default=True)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow)
    # When a process last claimed the daily retention run (one claimer a day, cluster-wide).
    retention_run_at: Mapped[datetime | None]


class AuditCheckpoint(IdMixin, Base):
    """Where a retention purge cut the chain: verification of the rest starts here.

    The same figures are in the purge's own audit entry, which is part of the chain,
    so a forged checkpoint does not match it.
    """

    __tablename__ = "audit_checkpoints"

    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    through_seq: Mapped[int] = mapped_column(BigInteger, unique=True)
    through_hash: Mapped[str] = mapped_column(String(64))
    purged_count: Mapped[int] = mapped_column(BigInteger)
    total_purged: Mapped[int] = mapped_column(BigInteger)
    cutoff: Mapped[datetime]


class SystemSeal(IdMixin, Base):
    """The server's seal certificate, which signs the reports it issues (audit trails).

    The private key is stored sealed by the envelope cipher, never in clear.
    """

    __tablename__ = "system_seals"

    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    subject: Mapped[str] = mapped_column(String(500))
    fingerprint_sha256: Mapped[str] = mapped_column(String(64), unique=True)
    not_after: Mapped[datetime]
    certificate_der: Mapped[bytes] = mapped_column(LargeBinary)
    root_certificate_der: Mapped[bytes] = mapped_column(LargeBinary)
    sealed_private_key: Mapped[bytes] = mapped_column(LargeBinary)
    is_active: Mapped[bool] = mapped_column(default=True, index=True)
