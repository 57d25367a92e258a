"""From outbox to sent: dispatch events into deliveries, claim due deliveries, record outcomes.

Every step is a short transaction of its own and all state is in the
database, so any number of workers (threads, processes, hosts) share the
work. PostgreSQL claims with `FOR UPDATE SKIP LOCKED`; SQLite serialises
writers (`BEGIN IMMEDIATE`), so there a claim is one conditional UPDATE at a
time. A claim is a lease: a delivery whose worker died before recording an
outcome is attempted again once `claimed_until` has passed.
"""

import json
import logging
import random
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import and_, or_, select, update
from sqlalchemy.orm import Session, sessionmaker

from app.audit import service as audit_service
from app.audit.service import SYSTEM, Outcome
from app.core.config import Settings
from app.core.crypto import EnvelopeCipher
from app.core.db import unit_of_work
from app.core.types import utcnow
from app.notifications import recipients as recipients_service
from app.notifications import templates
from app.notifications.delivery import SendFailed, send_email, send_webhook
from app.notifications.destinations import AllowList, DestinationRefused, resolve
from app.notifications.models import (
    Channel,
    Delivery,
    DeliveryStatus,
    NotificationRule,
    OutboxEvent,
)
from app.notifications.smtp import load_smtp

logger = logging.getLogger(__name__)

WEBHOOK_SECRET_PURPOSE = "webhook_secret"  # noqa: S105 (a purpose label)
# Events turned into deliveries per transaction.
DISPATCH_BATCH = 100
# `target` of the failed delivery that records a rule which found nobody to mail.
NO_RECIPIENT = "(no recipient)"


def dispatch_pending(
    factory: sessionmaker[Session], *, limit: int = DISPATCH_BATCH
) -> int:
    """Turn undispatched events into one delivery per matching rule and target; returns events done.

    Email rules get one delivery per resolved address, so a retry never mails
    someone who already has the message.
    """
    with unit_of_work(factory) as session:
        events = session.scalars(
            select(OutboxEvent)
            .where(OutboxEvent.dispatched_at.is_(None))
            .order_by(OutboxEvent.created_at)
            .limit(limit)
            .with_for_update(skip_locked=True)
        ).all()
        if not events:
            return 0
        rules = session.scalars(
            select(NotificationRule).where(
                NotificationRule.enabled.is_(True),
                NotificationRule.event.in_({event.event for event in events}),
            )
        ).all()
        now = utcnow()
        for event in events:
            for rule in rules:
                if _matches(rule, event):
                    session.add_all(_deliveries(session, rule, event))
            event.dispatched_at = now
        return len(events)


def _matches(rule: NotificationRule, event: OutboxEvent) -> bool:
    if rule.event != event.event:
        return False
    if rule.days_before is None:
        return True
    return event.payload.get("days_before") in rule.days_before


def _deliveries(
    session: Session, rule: NotificationRule, event: OutboxEvent
) -> list[Delivery]:
    def delivery(target: str, **fields: object) -> Delivery:
        return Delivery(
            event_id=event.id,
            rule_id=rule.id,
            event=event.event,
            channel=rule.channel,
            target=target,
            **fields,
        )

    if rule.channel == Channel.WEBHOOK:
        return [delivery(rule.url or "")]
    addresses = recipients_service.expand(session, rule.recipients or [], event.payload)
    if not addresses:
        return [
            delivery(
                NO_RECIPIENT,
                status=DeliveryStatus.FAILED,
                finished_at=utcnow(),
                last_error="no recipient: the rule's users or assignees have no email address",
            )
        ]
    return [delivery(address) for address in addresses]


@dataclass(frozen=True)
class Claimed:
    """A delivery this worker holds, with what sending it needs."""

    id: uuid.UUID
    attempts: int
    channel: Channel
    target: str
    event: str
    event_id: uuid.UUID
    occurred_at: datetime
    payload: dict[str, object]
    rule_id: uuid.UUID | None


def claim_next(
    factory: sessionmaker[Session], *, worker_id: str, lease_seconds: float
) -> Claimed | None:
    """Take the next due delivery (pending and due, or its lease run out), counting the attempt."""
    now = utcnow()
    due = or_(
        and_(
            Delivery.status == DeliveryStatus.PENDING,
            Delivery.next_attempt_at <= now,
        ),
        and_(
            Delivery.status == DeliveryStatus.SENDING,
            Delivery.claimed_until < now,
        ),
    )
    with factory.begin() as session:
        # Looked for without a lock first: usually nothing is due, and on SQLite
        # a read FOR UPDATE would take the database's write lock to find that out.
        if session.scalar(select(Delivery.id).where(due).limit(1)) is None:
            return None
        delivery_id = session.scalar(
            select(Delivery.id)
            .where(due)
            .order_by(Delivery.next_attempt_at)
            .limit(1)
            .with_for_update(skip_locked=True)
        )
        if delivery_id is None:
            return None
        # Conditional: on SQLite this is the claim itself (one writer at a time).
        taken = session.execute(
            update(Delivery)
            .where(Delivery.id == delivery_id, due)
            .values(
                status=DeliveryStatus.SENDING,
                claimed_by=worker_id,
                claimed_until=now + timedelta(seconds=lease_seconds),
                attempts=Delivery.attempts + 1,
            )
            .execution_options(synchronize_session=False)
        ).rowcount  # type: ignore[attr-defined]
        if not taken:
            return None
        row = session.get_one(Delivery, delivery_id, populate_existing=True)
        event = session.get_one(OutboxEvent, row.event_id)
        return Claimed(
            id=row.id,
            attempts=row.attempts,
            channel=row.channel,
            target=row.target,
            event=row.event,
            event_id=row.event_id,
            occurred_at=event.created_at,
            payload=dict(event.payload),
            rule_id=row.rule_id,
        )


def attempt(
    factory: sessionmaker[Session],
    claimed: Claimed,
    *,
    cipher: EnvelopeCipher | None,
    settings: Settings,
) -> str | None:
    """Send a claimed delivery; None when it went out, else why it did not."""
    try:
        with factory() as session:
            rule = (
                session.get(NotificationRule, claimed.rule_id)
                if claimed.rule_id
                else None
            )
            if rule is None:
                return "the rule was deleted before the delivery went out"
            if claimed.channel == Channel.WEBHOOK:
                secret = _open_secret(session, cipher, rule)
                destination = resolve(
                    claimed.target, AllowList.parse(settings.webhook_allowed_hosts)
                )
                session.rollback()  # no transaction held open while sending
                send_webhook(
                    destination,
                    secret=secret,
                    event=claimed.event,
                    delivery_id=str(claimed.id),
                    body=webhook_body(claimed),
                    timeout=settings.webhook_timeout_seconds,
                )
                return None
            smtp, password = load_smtp(session, cipher)
            fields = templates.fields_of(
                claimed.event,
                str(claimed.event_id),
                claimed.occurred_at,
                claimed.payload,
            )
            subject, body = templates.subject_and_body(
                claimed.event,
                fields,
                subject_template=rule.subject_template,
                body_template=rule.body_template,
            )
            session.rollback()
        send_email(
            smtp,
            password,
            to=[claimed.target],
            subject=subject,
            body=body,
            allowed=AllowList.parse(settings.smtp_allowed_hosts),
        )
    except (SendFailed, DestinationRefused) as exc:
        return str(exc)
    except Exception as exc:
        # Never let one delivery stop the worker: record it like any failure.
        logger.exception("delivery %s failed unexpectedly", claimed.id)
        return f"internal error: {type(exc).__name__}"
    return None


def _open_secret(
    session: Session, cipher: EnvelopeCipher | None, rule: NotificationRule
) -> str:
    if rule.sealed_secret is None:
        raise SendFailed("the rule has no webhook secret")
    if cipher is None:
        raise SendFailed(
            "the master key is not loaded: the webhook secret cannot be opened"
        )
    return cipher.open(
        session, rule.sealed_secret, purpose=WEBHOOK_SECRET_PURPOSE
    ).decode()


def webhook_body(claimed: Claimed) -> bytes:
    """`{id, event, created_at, data}`: `id` is the event's, the same for every rule it reaches."""
    return json.dumps(
        {
            "id": str(claimed.event_id),
            "event": claimed.event,
            "created_at": claimed.occurred_at.isoformat(),
            "data": claimed.payload,
        },
        separators=(",", ":"),
        sort_keys=True,
    ).encode()


def retry_delay(attempts: int, settings: Settings) -> float:
    """Seconds before the next attempt: base * 2^(attempts-1), capped, plus up to 25 % jitter."""
    delay: float = min(
        settings.notification_retry_base_seconds * 2 ** (attempts - 1),
        settings.notification_retry_max_seconds,
    )
    return delay * (1 + random.uniform(0, 0.25))  # noqa: S311 (spreading retries, not a secret)


def record_outcome(
    factory: sessionmaker[Session],
    claimed: Claimed,
    error: str | None,
    *,
    worker_id: str,
    settings: Settings,
) -> DeliveryStatus | None:
    """Store the attempt's outcome; the final one (delivered, failed) is audited.

    Returns the new status, or None when this worker no longer held the claim
    (its lease ran out and another worker took the delivery).
    """
    with unit_of_work(factory) as session:
        row = session.get(Delivery, claimed.id, with_for_update=True)
        if (
            row is None
            or row.status != DeliveryStatus.SENDING
            or row.claimed_by != worker_id
        ):
            return None
        now = utcnow()
        row.claimed_until = None  # `claimed_by` stays: who made the last attempt
        if error is None:
            row.status = DeliveryStatus.DELIVERED
            row.last_error = None
            row.finished_at = now
        elif row.attempts >= settings.notification_max_attempts:
            row.status = DeliveryStatus.FAILED
            row.last_error = error
            row.finished_at = now
        else:
            row.status = DeliveryStatus.PENDING
            row.last_error = error
            row.next_attempt_at = now + timedelta(
                seconds=retry_delay(row.attempts, settings)
            )
            return row.status
        audit_service.record(
            session,
            actor=SYSTEM,
            action=f"notification.{row.status.value}",
            resource_type="notification_delivery",
            resource_id=row.id,
            outcome=Outcome.SUCCESS if error is None else Outcome.FAILURE,
            details={
                "event": row.event,
                "event_id": str(row.event_id),
                "rule_id": str(row.rule_id) if row.rule_id else None,
                "channel": row.channel.value,
                "target": row.target,
                "attempts": row.attempts,
                "error": error,
            },
        )
        return row.status


def deliver_due(
    factory: sessionmaker[Session],
    *,
    worker_id: str,
    cipher: EnvelopeCipher | None,
    settings: Settings,
    limit: int,
) -> int:
    """Claim and attempt up to `limit` due deliveries, one at a time; returns how many."""
    done = 0
    while done < limit:
        claimed = claim_next(
            factory,
            worker_id=worker_id,
            lease_seconds=settings.notification_lease_seconds,
        )
        if claimed is None:
            break
        error = attempt(factory, claimed, cipher=cipher, settings=settings)
        if error is not None:
            logger.warning(
                "delivery %s (%s to %s) attempt %d failed: %s",
                claimed.id,
                claimed.event,
                claimed.target,
                claimed.attempts,
                error,
            )
        record_outcome(factory, claimed, error, worker_id=worker_id, settings=settings)
        done += 1
    return done


def next_due_at(session: Session) -> datetime | None:
    """When the earliest pending delivery falls due (to sleep until then, not a whole poll)."""
    return session.scalar(
        select(Delivery.next_attempt_at)
        .where(Delivery.status == DeliveryStatus.PENDING)
        .order_by(Delivery.next_attempt_at)
        .limit(1)
    )
