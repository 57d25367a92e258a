"""Notification rules, the outbox of events, deliveries, and the marks that make scans idempotent."""

import uuid
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import ForeignKey, Index, LargeBinary, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from app.core.db import Base, IdMixin, TimestampMixin
from app.core.types import enum_column_type, utcnow


class Channel(StrEnum):
    EMAIL = "email"
    WEBHOOK = "webhook"


class DeliveryStatus(StrEnum):
    PENDING = "pending"
    SENDING = "sending"
    DELIVERED = "delivered"
    FAILED = "failed"


class OutboxEvent(IdMixin, Base):
    """An event written in the transaction of the change it announces.

    A rolled-back change takes its event with it; a committed one is turned into
    deliveries by the worker (`dispatched_at` set once every matching rule has
    its delivery row).
    """

    __tablename__ = "notification_outbox"
    __table_args__ = (
        Index("ix_notification_outbox_queue", "dispatched_at", "created_at"),
    )

    event: Mapped[str] = mapped_column(String(64), index=True)
    payload: Mapped[dict[str, Any]]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    dispatched_at: Mapped[datetime | None]


class NotificationRule(IdMixin, TimestampMixin, Base):
    """Who hears about an event, and how.

    `recipients` (email) holds addresses, `assignees` (the certificate's
    assignees) and `role:<name>` (users with that role). `days_before` narrows
    expiry events to those thresholds. The webhook secret is sealed by the
    envelope cipher and never returned.
    """

    __tablename__ = "notification_rules"

    name: Mapped[str] = mapped_column(String(200), unique=True)
    event: Mapped[str] = mapped_column(String(64), index=True)
    channel: Mapped[Channel] = mapped_column(enum_column_type(Channel))
    recipients: Mapped[list[str] | None]
    url: Mapped[str | None] = mapped_column(String(2000))
    sealed_secret: Mapped[bytes | None] = mapped_column(LargeBinary)
    days_before: Mapped[list[int] | None]
    subject_template: Mapped[str | None] = mapped_column(Text)
    body_template: Mapped[str | None] = mapped_column(Text)
    enabled: Mapped[bool] = mapped_column(default=True)
    created_by: Mapped[str | None] = mapped_column(String(200))

    @property
    def secret_set(self) -> bool:
        return self.sealed_secret is not None


class Delivery(IdMixin, Base):
    """One event sent on one rule's channel: claimed, attempted, retried with backoff."""

    __tablename__ = "notification_deliveries"
    __table_args__ = (
        Index("ix_notification_deliveries_queue", "status", "next_attempt_at"),
    )

    event_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("notification_outbox.id", ondelete="CASCADE"), index=True
    )
    rule_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("notification_rules.id", ondelete="SET NULL"), index=True
    )
    event: Mapped[str] = mapped_column(String(64))
    channel: Mapped[Channel] = mapped_column(enum_column_type(Channel))
    target: Mapped[str] = mapped_column(Text)
    status: Mapped[DeliveryStatus] = mapped_column(
        enum_column_type(DeliveryStatus), default=DeliveryStatus.PENDING
    )
    attempts: Mapped[int] = mapped_column(default=0)
    next_attempt_at: Mapped[datetime] = mapped_column(default=utcnow)
    claimed_by: Mapped[str | None] = mapped_column(String(200))
    claimed_until: Mapped[datetime | None]
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime] = mapped_column(default=utcnow, index=True)
    finished_at: Mapped[datetime | None]


class NotificationMark(Base):
    """A scan's "already announced" marker: the primary key makes it once per key, cluster-wide.

    Keys look like `certificate.expiring:<certificate id>:<days>`.
    """

    __tablename__ = "notification_marks"

    key: Mapped[str] = mapped_column(String(200), primary_key=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class ScheduledJob(Base):
    """When a cluster-wide periodic job (e.g. the daily expiry scan) last ran; claimed by conditional UPDATE."""

    __tablename__ = "scheduled_jobs"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    last_run_at: Mapped[datetime | None]
    claimed_by: Mapped[str | None] = mapped_column(String(200))
