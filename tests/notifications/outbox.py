"""Reading the notification outbox in tests."""

from collections.abc import Collection
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from app.notifications.models import OutboxEvent
from app.notifications.outbox import Event


def outbox_payloads(
    session_factory: sessionmaker[Session], event: Event
) -> list[dict[str, Any]]:
    """The stored payloads of one event, oldest first."""
    with session_factory() as session:
        return list(
            session.scalars(
                select(OutboxEvent.payload)
                .where(OutboxEvent.event == event.value)
                .order_by(OutboxEvent.created_at, OutboxEvent.id)
            )
        )


def outbox_counts(
    session_factory: sessionmaker[Session], *, ignoring: Collection[Event] = ()
) -> dict[str, int]:
    """How many events of each kind are stored, but those `ignoring`."""
    skipped = {e.value for e in ignoring}
    with session_factory() as session:
        counts: dict[str, int] = {}
        for name in session.scalars(select(OutboxEvent.event)):
            if name not in skipped:
                counts[name] = counts.get(name, 0) + 1
        return counts
