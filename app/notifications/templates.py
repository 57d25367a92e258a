"""Subject and body templates: `$name` / `${name}` placeholders filled from the event's fields only.

`string.Template` has no attribute, index or call syntax, so a template can
read nothing but the fields handed to it: the event's payload plus `event`,
`event_id` and `occurred_at`.
"""

import json
import string
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from app.notifications.outbox import Event

# Fields every event offers besides its payload.
COMMON_FIELDS = frozenset({"event", "event_id", "occurred_at"})

_CERTIFICATE_FIELDS = frozenset(
    {"certificate_id", "certificate_name", "subject", "fingerprint", "not_after"}
)

# The payload fields of events whose producers are agreed; templates for the
# others are checked when they are sent (an unknown placeholder stays visible).
KNOWN_FIELDS: dict[Event, frozenset[str]] = {
    Event.CERTIFICATE_EXPIRING: _CERTIFICATE_FIELDS | {"days_before", "days_left"},
    Event.CERTIFICATE_EXPIRED: _CERTIFICATE_FIELDS | {"days_left"},
    Event.AUDIT_ANCHOR: frozenset(
        {
            "format",
            "seq",
            "hash",
            "anchored_at",
            "seal_fingerprint_sha256",
            "signature_algorithm",
            "signature",
            "seal_certificate",
        }
    ),
}

DEFAULT_SUBJECTS: dict[Event, str] = {
    Event.CERTIFICATE_EXPIRING: "[SignVault] Certificate ${certificate_name} expires in ${days_left} days",
    Event.CERTIFICATE_EXPIRED: "[SignVault] Certificate ${certificate_name} has expired",
    Event.DOCUMENT_SIGNED: "[SignVault] A document was signed",
    Event.SIGNING_FAILED: "[SignVault] Signing failed",
    Event.BATCH_COMPLETED: "[SignVault] A signing batch completed",
    Event.USER_LOCKED: "[SignVault] Address ${ip} locked out of account ${username}",
    Event.LOGIN_ATTACK_SUSPECTED: "[SignVault] Failed logins for ${username} from ${addresses} addresses",
    Event.LICENSE_EXPIRING: "[SignVault] The licence expires in ${days_left} days",
    Event.LICENSE_LIMIT_REACHED: "[SignVault] A licence limit was reached",
    Event.AUDIT_ANCHOR: "[SignVault] Audit log anchored at entry ${seq}",
}

DEFAULT_BODIES: dict[Event, str] = {
    Event.CERTIFICATE_EXPIRING: (
        "The signing certificate ${certificate_name} (${subject}) expires on ${not_after}, "
        "in ${days_left} days.\n\nSHA-256 fingerprint: ${fingerprint}\n"
        "Renew it and import the new one before then.\n"
    ),
    Event.CERTIFICATE_EXPIRED: (
        "The signing certificate ${certificate_name} (${subject}) expired on ${not_after}; "
        "it can no longer sign.\n\nSHA-256 fingerprint: ${fingerprint}\n"
    ),
}


def fields_of(
    event: str, event_id: str, occurred_at: datetime, payload: Mapping[str, Any]
) -> dict[str, str]:
    """What a template may read: the payload's values as text, plus the common fields."""
    values = {key: _text(value) for key, value in payload.items()}
    values.update(event=event, event_id=event_id, occurred_at=occurred_at.isoformat())
    return values


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if value is None:
        return ""
    return json.dumps(value, default=str)


def placeholders(template: str) -> list[str] | None:
    """The names a template reads, or None when its `$` syntax is broken."""
    parsed = string.Template(template)
    if not parsed.is_valid():
        return None
    return parsed.get_identifiers()


def unknown_placeholders(event: Event, template: str) -> list[str]:
    """Names a template reads that `event` never offers (only for events with known fields)."""
    known = KNOWN_FIELDS.get(event)
    if known is None:
        return []
    return [
        name
        for name in placeholders(template) or []
        if name not in known | COMMON_FIELDS
    ]


def render(template: str, fields: Mapping[str, str]) -> str:
    """Fill the placeholders; a missing field or stray `$` is left as written, never an error."""
    return string.Template(template).safe_substitute(fields)


def default_body(event: str, fields: Mapping[str, str]) -> str:
    """A plain listing of the event's fields, for events without a written default."""
    lines = [f"SignVault event {event}.", ""]
    lines += [f"{key}: {value}" for key, value in sorted(fields.items())]
    return "\n".join(lines) + "\n"


def subject_and_body(
    event: str,
    fields: Mapping[str, str],
    *,
    subject_template: str | None,
    body_template: str | None,
) -> tuple[str, str]:
    """The rendered subject (one line) and body of an email about `event`."""
    try:
        known = Event(event)
    except ValueError:
        known = None
    subject_source = subject_template or (
        DEFAULT_SUBJECTS.get(known, "") if known else ""
    )
    subject = render(subject_source or f"[SignVault] {event}", fields)
    body_source = body_template or (DEFAULT_BODIES.get(known) if known else None)
    body = render(body_source, fields) if body_source else default_body(event, fields)
    # A header is one line: a field with a line break must not add headers.
    return " ".join(subject.split()), body
