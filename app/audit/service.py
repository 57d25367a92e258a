"""Recording audit events inside the caller's transaction, chained at commit."""

import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from sqlalchemy import event, select
from sqlalchemy.orm import Session

from app.audit.chain import GENESIS_HASH, ChainBreak, event_hash, find_break
from app.audit.models import AuditChainHead, AuditEvent
from app.core.context import current_request
from app.core.db import after_transaction
from app.core.types import utcnow

_PENDING = "audit_pending"
_REDACTED_KEYS = frozenset(
    {
        "password",
        "new_password",
        "old_password",
        "secret",
        "client_secret",
        "access_token",
        "refresh_token",
        "token",
        "totp",
        "private_key",
        "pkcs12_base64",
    }
)


class ActorKind(StrEnum):
    USER = "user"
    CLIENT = "client"
    SYSTEM = "system"
    ANONYMOUS = "anonymous"


class Outcome(StrEnum):
    SUCCESS = "success"
    FAILURE = "failure"
    DENIED = "denied"


@dataclass(frozen=True, slots=True)
class Actor:
    kind: ActorKind
    id: str | None = None
    name: str | None = None


SYSTEM = Actor(ActorKind.SYSTEM, None, "signvault")
ANONYMOUS = Actor(ActorKind.ANONYMOUS)


def _scrub(details: Mapping[str, Any]) -> dict[str, Any]:
    # Defence in depth: callers never pass secrets, and if one slips in it is not kept.
    return {
        key: "[redacted]"
        if key.lower() in _REDACTED_KEYS
        else (_scrub(value) if isinstance(value, Mapping) else value)
        for key, value in details.items()
    }


def _build_entry(
    *,
    actor: Actor,
    action: str,
    resource_type: str | None = None,
    resource_id: uuid.UUID | str | None = None,
    outcome: Outcome = Outcome.SUCCESS,
    details: Mapping[str, Any] | None = None,
) -> AuditEvent:
    context = current_request()
    return AuditEvent(
        id=uuid.uuid4(),
        occurred_at=utcnow(),
        actor_kind=actor.kind.value,
        actor_id=actor.id,
        actor_name=actor.name,
        action=action,
        resource_type=resource_type,
        resource_id=str(resource_id) if resource_id is not None else None,
        outcome=outcome.value,
        ip=context.ip if context else None,
        user_agent=context.user_agent if context else None,
        request_id=context.request_id if context else None,
        details=_scrub(details or {}),
    )


def record(
    session: Session,
    *,
    actor: Actor,
    action: str,
    resource_type: str | None = None,
    resource_id: uuid.UUID | str | None = None,
    outcome: Outcome = Outcome.SUCCESS,
    details: Mapping[str, Any] | None = None,
) -> AuditEvent:
    """Add an audit entry to the session's transaction; it is chained and stored at commit."""
    entry = _build_entry(
        actor=actor,
        action=action,
        resource_type=resource_type,
        resource_id=resource_id,
        outcome=outcome,
        details=details,
    )
    session.info.setdefault(_PENDING, []).append(entry)
    return entry


def record_isolated(
    session: Session,
    *,
    actor: Actor,
    action: str,
    resource_type: str | None = None,
    resource_id: uuid.UUID | str | None = None,
    outcome: Outcome = Outcome.FAILURE,
    details: Mapping[str, Any] | None = None,
) -> None:
    """Record a failure or denial in a short transaction of its own, after the request's ends.

    The request's transaction rolls back on the error being reported and would
    take an ordinary entry with it.
    """
    # Built now, while this request's context (IP, request id) is current.
    captured = _build_entry(
        actor=actor,
        action=action,
        resource_type=resource_type,
        resource_id=resource_id,
        outcome=outcome,
        details=details,
    )

    after_transaction(
        session, lambda own: own.info.setdefault(_PENDING, []).append(captured)
    )


@event.listens_for(Session, "before_commit")
def _chain_pending(session: Session) -> None:
    pending: list[AuditEvent] = session.info.pop(_PENDING, [])
    if not pending:
        return
    # The row lock serialises appenders on PostgreSQL (SQLite's writer lock already does).
    head = session.execute(
        select(AuditChainHead).where(AuditChainHead.id == 1).with_for_update()
    ).scalar_one()
    for entry in pending:
        entry.seq = head.seq + 1
        entry.prev_hash = head.last_hash
        entry.hash = event_hash(entry)
        head.seq, head.last_hash = entry.seq, entry.hash
        session.add(entry)
    session.flush()


@event.listens_for(Session, "after_rollback")
def _drop_pending(session: Session) -> None:
    session.info.pop(_PENDING, None)


def verify_chain(session: Session, *, batch_size: int = 1000) -> ChainBreak | None:
    """Recompute the whole chain in `seq` order; the first broken entry, or None if intact."""
    prev_hash, prev_seq = GENESIS_HASH, 0
    while True:
        batch = session.scalars(
            select(AuditEvent)
            .where(AuditEvent.seq > prev_seq)
            .order_by(AuditEvent.seq)
            .limit(batch_size)
        ).all()
        if not batch:
            return None
        broken = find_break(batch, prev_hash=prev_hash, prev_seq=prev_seq)
        if broken:
            return broken
        prev_hash, prev_seq = batch[-1].hash, batch[-1].seq
