import uuid
from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import ConfigDict, Field

from app.core.schemas import RequestSchema, Schema, omittable


class ExportFormat(StrEnum):
    CSV = "csv"
    JSONL = "jsonl"


class TrailFormat(StrEnum):
    JSON = "json"
    PDF = "pdf"


_EVENT_EXAMPLE: dict[str, Any] = {
    "id": "0b8f4a52-5d0e-4a57-9a43-8f1f7d2b8c11",
    "seq": 1042,
    "occurred_at": "2026-11-23T09:14:03.512300Z",
    "actor_kind": "user",
    "actor_id": "5f0c2a4e-4b7b-4c0e-9d7e-1b2f3c4d5e6f",
    "actor_name": "alice",
    "action": "client.created",
    "resource_type": "api_client",
    "resource_id": "7d7e1b2f-3c4d-4e6f-8a9b-0c1d2e3f4a5b",
    "outcome": "success",
    "ip": "203.0.113.9",
    "peer_ip": "10.0.0.7",
    "user_agent": "curl/8.5.0",
    "request_id": "4bf92f3577b34da6a3ce929d0e0e4736",
    "details": {"name": "erp", "entitlements": ["documents:sign"]},
    "prev_hash": "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08",
    "hash": "60303ae22b998861bce3b28f33eec1be758a213c86c93c076dbe9f558c11c752",
}


class AuditEventRead(Schema):
    model_config = ConfigDict(json_schema_extra={"examples": [_EVENT_EXAMPLE]})

    id: uuid.UUID
    seq: int
    occurred_at: datetime
    actor_kind: str
    actor_id: str | None
    actor_name: str | None
    action: str
    resource_type: str | None
    resource_id: str | None
    outcome: str
    ip: str | None = Field(
        description="The client: the connection's peer, or the address a trusted proxy forwarded for."
    )
    peer_ip: str | None = Field(
        description="The connection's peer (the proxy, behind one); null on entries written before it was kept."
    )
    user_agent: str | None
    request_id: str | None
    details: dict[str, Any]
    prev_hash: str
    hash: str


class ChainBreakRead(Schema):
    seq: int = Field(description="Position of the first entry that does not verify.")
    event_id: str | None = Field(description="Its id; null when the entry is missing.")
    reason: str


class CheckpointRead(Schema):
    through_seq: int = Field(
        description="Last purged entry; verification starts after it."
    )
    through_hash: str = Field(description="Hash of that entry.")
    purged_count: int
    total_purged: int
    cutoff: datetime
    created_at: datetime


_ANCHOR_EXAMPLE: dict[str, Any] = {
    "format": "signvault-audit-anchor/1",
    "seq": 1042,
    "hash": "60303ae22b998861bce3b28f33eec1be758a213c86c93c076dbe9f558c11c752",
    "anchored_at": "2026-11-23T09:14:03.512300Z",
    "seal_fingerprint_sha256": "3f1c9e0d6b2a4c8e7f5a1b3d9c0e2f4a6b8d0c1e3f5a7b9d1c3e5f7a9b1d3c5e",
    "signature_algorithm": "rsa-pkcs1v15-sha256",
    "signature": "MEUCIQ…",
    "seal_certificate": "MIIC…",
}


class AnchorRead(Schema):
    """A signed chain head; keep it outside the server and present it to `/verify?anchor=`."""

    model_config = ConfigDict(json_schema_extra={"examples": [_ANCHOR_EXAMPLE]})

    format: str = Field(description="`signvault-audit-anchor/1`.")
    seq: int = Field(description="The anchored entry: the chain head when signed.")
    hash: str = Field(description="That entry's hash.")
    anchored_at: str = Field(
        description="When it was signed (that entry's `occurred_at`), exactly as signed."
    )
    seal_fingerprint_sha256: str = Field(
        description="SHA-256 of the signing seal certificate's DER."
    )
    signature_algorithm: str = Field(
        description="`rsa-pkcs1v15-sha256` or `ecdsa-sha256`."
    )
    signature: str = Field(
        description="Base64 signature over the sorted, compact JSON of `format, seq, hash, anchored_at, seal_fingerprint_sha256`."
    )
    seal_certificate: str | None = Field(
        default=None, description="Base64 DER of the seal certificate."
    )


class AnchorCheckRead(Schema):
    seq: int
    hash: str
    anchored_at: str
    seal_fingerprint_sha256: str
    seal_active: bool = Field(
        description="Signed by the current seal (false: by a retired one)."
    )
    status: str = Field(
        description="`matched` (the anchored entry is there), `purged` (retention removed it; the chain reached it), `truncated` (entries up to it are gone), `mismatch` (another entry stands at its seq)."
    )
    intact: bool
    missing_from_seq: int | None = Field(
        description="First entry missing or replaced (null when intact)."
    )
    missing_to_seq: int | None = Field(
        description="Last entry missing or replaced: the anchor's seq."
    )
    reason: str | None


class ChainVerification(Schema):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "intact": False,
                    "checked": 41,
                    "first_seq": 1,
                    "last_seq": 41,
                    "head_seq": 1042,
                    "checkpoint": None,
                    "broken": {
                        "seq": 42,
                        "event_id": "0b8f4a52-5d0e-4a57-9a43-8f1f7d2b8c11",
                        "reason": "content does not match its hash",
                    },
                    "verified_at": "2026-11-23T09:20:00.000000Z",
                }
            ]
        }
    )

    intact: bool
    checked: int = Field(
        description="Entries verified before the first break (or all)."
    )
    first_seq: int | None
    last_seq: int | None
    head_seq: int = Field(description="The chain head: the last entry ever appended.")
    checkpoint: CheckpointRead | None = Field(
        description="The retention checkpoint verification started from, if any."
    )
    broken: ChainBreakRead | None
    verified_at: datetime
    anchor: AnchorCheckRead | None = Field(
        default=None,
        description="The presented anchor compared with the chain; `intact` covers it too.",
    )


class AuditSettingsRead(Schema):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "retention_days": 3650,
                    "audit_trail_enabled": True,
                    "updated_at": "2026-11-23T09:20:00Z",
                }
            ]
        }
    )

    retention_days: int | None = Field(
        description="Entries older than this are purged; null keeps them for ever."
    )
    audit_trail_enabled: bool = Field(
        description="Whether sealed PDF audit-trail reports are produced."
    )
    updated_at: datetime


class AuditSettingsUpdate(RequestSchema):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"retention_days": 2555}]},
    )

    retention_days: int | None = Field(
        default=None,
        ge=1,
        le=36_500,
        description="Days to keep entries; null keeps them for ever. Omit to leave unchanged.",
    )
    audit_trail_enabled: bool = omittable(description="Omit to leave unchanged.")


class AuditTrail(Schema):
    resource_type: str
    resource_id: str
    generated_at: datetime
    count: int
    events: list[AuditEventRead]


class SealRead(Schema):
    id: uuid.UUID
    subject: str
    fingerprint_sha256: str
    not_after: datetime
    created_at: datetime
    certificate_pem: str = Field(description="The seal certificate.")
    root_certificate_pem: str = Field(
        description="The root it chains to: trust this one to validate sealed reports."
    )
