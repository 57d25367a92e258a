"""The hash chain: each entry's SHA-256 covers its canonical content and the previous entry's hash."""

import hashlib
import json
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC

from app.audit.models import AuditEvent

GENESIS_HASH = "0" * 64


def canonical_content(event: AuditEvent) -> bytes:
    content = {
        "id": str(event.id),
        "seq": event.seq,
        "occurred_at": event.occurred_at.astimezone(UTC).strftime(
            "%Y-%m-%dT%H:%M:%S.%fZ"
        ),
        "actor_kind": event.actor_kind,
        "actor_id": event.actor_id,
        "actor_name": event.actor_name,
        "action": event.action,
        "resource_type": event.resource_type,
        "resource_id": event.resource_id,
        "outcome": event.outcome,
        "ip": event.ip,
        "user_agent": event.user_agent,
        "request_id": event.request_id,
        "details": event.details,
        "prev_hash": event.prev_hash,
    }
    return json.dumps(
        content, sort_keys=True, separators=(",", ":"), ensure_ascii=False
    ).encode()


def event_hash(event: AuditEvent) -> str:
    return hashlib.sha256(canonical_content(event)).hexdigest()


@dataclass(frozen=True, slots=True)
class ChainBreak:
    seq: int
    event_id: str
    reason: str


def find_break(
    events: Iterable[AuditEvent], *, prev_hash: str = GENESIS_HASH, prev_seq: int = 0
) -> ChainBreak | None:
    """Walk entries in `seq` order; the first whose content, link or position does not match, or None."""
    for event in events:
        if event.seq != prev_seq + 1:
            return ChainBreak(
                event.seq, str(event.id), f"sequence gap: expected {prev_seq + 1}"
            )
        if event.prev_hash != prev_hash:
            return ChainBreak(
                event.seq, str(event.id), "link to the previous entry does not match"
            )
        if event_hash(event) != event.hash:
            return ChainBreak(
                event.seq, str(event.id), "content does not match its hash"
            )
        prev_hash, prev_seq = event.hash, event.seq
    return None
