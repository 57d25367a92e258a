"""The hash chain: each entry's SHA-256 covers its canonical content and the previous entry's hash."""

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Row

from app.audit.models import AuditEvent

GENESIS_HASH = "0" * 64

# The fields an entry's hash covers, in the form exports carry them.
CONTENT_FIELDS = (
    "id",
    "seq",
    "occurred_at",
    "actor_kind",
    "actor_id",
    "actor_name",
    "action",
    "resource_type",
    "resource_id",
    "outcome",
    "ip",
    "user_agent",
    "request_id",
    "details",
    "prev_hash",
)
# Hashed when set: entries written before the column existed (null) keep their hash.
OPTIONAL_CONTENT_FIELDS = ("peer_ip",)


def format_time(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def content_of(event: "AuditEvent | Row[Any]") -> dict[str, Any]:
    """The hashed fields of an entry as JSON values (what an export line holds, minus `hash`)."""
    return {
        "id": str(event.id),
        "seq": event.seq,
        "occurred_at": format_time(event.occurred_at),
        "actor_kind": event.actor_kind,
        "actor_id": event.actor_id,
        "actor_name": event.actor_name,
        "action": event.action,
        "resource_type": event.resource_type,
        "resource_id": event.resource_id,
        "outcome": event.outcome,
        "ip": event.ip,
        "peer_ip": event.peer_ip,
        "user_agent": event.user_agent,
        "request_id": event.request_id,
        "details": event.details,
        "prev_hash": event.prev_hash,
    }


def canonical_bytes(content: Mapping[str, Any]) -> bytes:
    """Sorted-key, compact UTF-8 JSON of exactly the hashed fields."""
    hashed = {name: content[name] for name in CONTENT_FIELDS}
    for name in OPTIONAL_CONTENT_FIELDS:
        if content.get(name) is not None:
            hashed[name] = content[name]
    return json.dumps(
        hashed,
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
    ).encode()


def content_hash(content: Mapping[str, Any]) -> str:
    return hashlib.sha256(canonical_bytes(content)).hexdigest()


def canonical_content(event: AuditEvent) -> bytes:
    return canonical_bytes(content_of(event))


def event_hash(event: "AuditEvent | Row[Any]") -> str:
    return content_hash(content_of(event))


@dataclass(frozen=True, slots=True)
class ChainBreak:
    seq: int
    event_id: str | None  # None when the entry is missing
    reason: str


@dataclass(frozen=True, slots=True)
class Link:
    """What `find_break` needs of an entry: its position, links and whether its content matches."""

    seq: int
    event_id: str
    prev_hash: str
    hash: str
    content_matches: bool


def link_of(event: "AuditEvent | Row[Any]") -> Link:
    return Link(
        event.seq,
        str(event.id),
        event.prev_hash,
        event.hash,
        event_hash(event) == event.hash,
    )


def find_break(
    events: "Iterable[AuditEvent | Row[Any] | Link]",
    *,
    prev_hash: str = GENESIS_HASH,
    prev_seq: int = 0,
) -> ChainBreak | None:
    """Walk entries in `seq` order; the first whose content, link or position does not match, or None."""
    for item in events:
        link = item if isinstance(item, Link) else link_of(item)
        if link.seq != prev_seq + 1:
            return ChainBreak(
                link.seq, link.event_id, f"sequence gap: expected {prev_seq + 1}"
            )
        if link.prev_hash != prev_hash:
            return ChainBreak(
                link.seq, link.event_id, "link to the previous entry does not match"
            )
        if not link.content_matches:
            return ChainBreak(
                link.seq, link.event_id, "content does not match its hash"
            )
        prev_hash, prev_seq = link.hash, link.seq
    return None
