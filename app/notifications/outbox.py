"""`emit`: the one way a feature announces an event to the notification rules."""

from collections.abc import Mapping
from enum import StrEnum
from typing import Any

from pydantic_core import to_jsonable_python
from sqlalchemy.orm import Session

from app.notifications.models import OutboxEvent


class Event(StrEnum):
    CERTIFICATE_EXPIRING = "certificate.expiring"
    CERTIFICATE_EXPIRED = "certificate.expired"
    DOCUMENT_SIGNED = "document.signed"
    SIGNING_FAILED = "signing.failed"
    BATCH_COMPLETED = "batch.completed"
    USER_LOCKED = "user.locked"
    LICENSE_EXPIRING = "license.expiring"
    LICENSE_LIMIT_REACHED = "license.limit_reached"


def emit(session: Session, event: Event, payload: Mapping[str, Any]) -> OutboxEvent:
    """Queue `event` in the caller's transaction: sent only if it commits, never lost if it does.

    The payload is what rule templates may read; keep it to plain, non-secret fields.
    """
    row = OutboxEvent(event=event.value, payload=to_jsonable_python(dict(payload)))
    session.add(row)
    return row
