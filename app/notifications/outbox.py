"""`emit`: the one way a feature announces an event to the notification rules."""

import threading
from collections.abc import Mapping
from enum import StrEnum
from typing import Any

from pydantic_core import to_jsonable_python
from sqlalchemy import event as sa_event
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.notifications import sqlite_wake
from app.notifications.models import OutboxEvent


class Event(StrEnum):
    CERTIFICATE_EXPIRING = "certificate.expiring"
    CERTIFICATE_EXPIRED = "certificate.expired"
    DOCUMENT_SIGNED = "document.signed"
    SIGNING_FAILED = "signing.failed"
    BATCH_COMPLETED = "batch.completed"
    USER_LOCKED = "user.locked"
    LOGIN_ATTACK_SUSPECTED = "login.attack_suspected"
    LICENSE_EXPIRING = "license.expiring"
    LICENSE_LIMIT_REACHED = "license.limit_reached"
    AUDIT_ANCHOR = "audit.anchor"


# Events announced at thresholds before a date: their payload carries `days_before`,
# and a rule may narrow them to some thresholds.
THRESHOLD_EVENTS = frozenset({Event.CERTIFICATE_EXPIRING, Event.LICENSE_EXPIRING})

# Set after a commit that emitted: the background worker of this process wakes at once
# instead of at its next poll. On PostgreSQL the commit also notifies this channel,
# and the workers of other processes (`signvault worker`) listen on it; on SQLite
# they are sent a wake-up (`sqlite_wake`).
NOTIFY_CHANNEL = "signvault_outbox"
_wakers: set[threading.Event] = set()
_wakers_lock = threading.Lock()
_EMITTED = "notifications.emitted"


def subscribe(waker: threading.Event) -> None:
    with _wakers_lock:
        _wakers.add(waker)


def unsubscribe(waker: threading.Event) -> None:
    with _wakers_lock:
        _wakers.discard(waker)


def _wake_after_commit(session: Session) -> None:
    if session.info.pop(_EMITTED, False):
        with _wakers_lock:
            for waker in _wakers:
                waker.set()
        folder = sqlite_wake.wake_folder(session.get_bind().engine.url)
        if folder is not None:
            sqlite_wake.wake_listeners(folder)


def _notify_listeners(session: Session) -> None:
    # Sent by PostgreSQL at commit, once per transaction, and never after a rollback.
    if session.info.get(_EMITTED) and session.get_bind().dialect.name == "postgresql":
        session.execute(select(func.pg_notify(NOTIFY_CHANNEL, "")))


def emit(session: Session, event: Event, payload: Mapping[str, Any]) -> OutboxEvent:
    """Queue `event` in the caller's transaction: sent only if it commits, never lost if it does.

    The payload is what rule templates may read; keep it to plain, non-secret fields.
    """
    row = OutboxEvent(event=event.value, payload=to_jsonable_python(dict(payload)))
    session.add(row)
    if not session.info.get(_EMITTED):
        session.info[_EMITTED] = True
        # A session event, not `db.on_commit`: it fires for any way the session
        # commits (a request, `unit_of_work`, `factory.begin()`); after a rollback
        # the flag stays and the next commit wakes the worker once for nothing.
        if not sa_event.contains(session, "after_commit", _wake_after_commit):
            sa_event.listen(session, "after_commit", _wake_after_commit)
            sa_event.listen(session, "before_commit", _notify_listeners)
    return row
