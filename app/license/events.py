"""Licence warnings (`license.expiring`, `license.limit_reached`) leave this feature here."""

from collections.abc import Mapping
from enum import StrEnum
from typing import Any

from sqlalchemy.orm import Session

from app.audit import service as audit_service
from app.audit.service import SYSTEM
from app.notifications.outbox import Event, emit


class LicenseEvent(StrEnum):
    EXPIRING = "license.expiring"
    LIMIT_REACHED = "license.limit_reached"


def announce(session: Session, event: LicenseEvent, details: Mapping[str, Any]) -> None:
    """Announce a licence event inside the caller's transaction (gone if it rolls back).

    The audit entry and the notification event (`emit`) are both written here,
    with the same fields.
    """
    audit_service.record(
        session,
        actor=SYSTEM,
        action=event.value,
        resource_type="license",
        details=details,
    )
    emit(session, Event(event.value), details)
