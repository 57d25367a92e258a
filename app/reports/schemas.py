from datetime import datetime

from pydantic import ConfigDict, Field

from app.core.schemas import Schema
from app.reports.service import GroupBy


class CountsByStatus(Schema):
    total: int
    by_status: dict[str, int]


class CertificateFigures(Schema):
    active: int
    expiring_within_30_days: int


class SignatureFigures(Schema):
    this_month: int
    total: int


class DocumentCounts(CountsByStatus):
    total_bytes: int


class SignatureBucketRead(Schema):
    key: str = Field(
        description="`2026-11-23` (day), `2026-11` (month), `kind:id` (user), a department id or `none`, a certificate fingerprint."
    )
    count: int
    label: str | None = Field(
        default=None, description="Signer name, department name or certificate subject."
    )


class SignatureReport(Schema):
    signed_from: datetime = Field(serialization_alias="from")
    signed_to: datetime = Field(serialization_alias="to")
    group_by: str
    total: int
    buckets: list[SignatureBucketRead]


class AllowanceFigures(Schema):
    used: int
    limit: int | None
    remaining: int | None


class LicenseFigures(Schema):
    state: str
    users: AllowanceFigures
    certificates: AllowanceFigures
    signatures_this_month: AllowanceFigures
    signatures_total: AllowanceFigures


class AuditSummary(Schema):
    events_today: int = Field(description="Entries since 00:00 UTC.")
    events_this_month: int = Field(description="Entries since the 1st, 00:00 UTC.")
    failures_last_24h: int = Field(
        description="Entries with outcome failure or denied."
    )
    failed_logins_last_24h: int
    denials_last_24h: int = Field(
        description="Requests refused for a missing entitlement."
    )
    events_stored: int = Field(description="Entries kept (after retention purges).")
    chain_head_seq: int = Field(description="Entries ever appended.")


class Summary(Schema):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "generated_at": "2026-11-23T09:20:00Z",
                    "users": {"total": 12, "by_status": {"active": 11, "locked": 1}},
                    "api_clients": {"total": 2, "by_status": {"active": 2}},
                    "departments": 3,
                    "audit": {
                        "events_today": 314,
                        "events_this_month": 9120,
                        "failures_last_24h": 4,
                        "failed_logins_last_24h": 3,
                        "denials_last_24h": 1,
                        "events_stored": 48211,
                        "chain_head_seq": 48211,
                    },
                }
            ]
        }
    )

    generated_at: datetime
    users: CountsByStatus
    api_clients: CountsByStatus
    departments: int
    certificates: CertificateFigures
    signatures: SignatureFigures
    documents: int
    license: LicenseFigures
    audit: AuditSummary


class BucketRead(Schema):
    key: str = Field(
        description="`2026-11-23` (day), `2026-11` (month), the action, the outcome, or `kind:id` (actor)."
    )
    label: str | None = Field(default=None, description="The actor's name.")
    count: int
    failures: int = Field(description="Of which with outcome failure or denied.")


class ActivityReport(Schema):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "from": "2026-11-21T00:00:00Z",
                    "to": "2026-11-23T00:00:00Z",
                    "group_by": "day",
                    "total": 42,
                    "buckets": [
                        {"key": "2026-11-21", "label": None, "count": 0, "failures": 0},
                        {
                            "key": "2026-11-22",
                            "label": None,
                            "count": 42,
                            "failures": 3,
                        },
                    ],
                }
            ]
        },
        populate_by_name=True,
    )

    occurred_from: datetime = Field(serialization_alias="from")
    occurred_to: datetime = Field(serialization_alias="to")
    group_by: GroupBy
    total: int
    buckets: list[BucketRead]
