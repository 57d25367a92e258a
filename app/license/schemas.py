from datetime import datetime
from typing import Literal

from pydantic import ConfigDict, Field

from app.core.schemas import Base64Text, RequestSchema, Schema
from app.license.service import LicenseState


class LimitsRead(Schema):
    """Limits; `null` is unlimited."""

    users: int | None
    certificates: int | None
    signatures_per_month: int | None
    signatures_total: int | None


class LicenseRead(Schema):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "state": "valid",
                    "detail": "Licensed to Acme Ltd until 2027-11-30 23:59Z.",
                    "license_id": "7d1c0c5e-4c1b-4f7e-9d2a-5b8f0f3e2a11",
                    "licensee": "Acme Ltd",
                    "issuer": "SignVault",
                    "issued_at": "2026-11-23T00:00:00Z",
                    "valid_from": "2026-11-23T00:00:00Z",
                    "valid_until": "2027-11-30T23:59:59Z",
                    "days_left": 372,
                    "limits": {
                        "users": 50,
                        "certificates": 20,
                        "signatures_per_month": 10000,
                        "signatures_total": None,
                    },
                    "features": ["batch", "ltv", "pkcs11"],
                    "installed_at": "2026-11-23T09:12:00Z",
                    "installed_by": "admin",
                }
            ]
        }
    )

    state: LicenseState
    detail: str
    license_id: str | None = None
    licensee: str | None = None
    issuer: str | None = None
    issued_at: datetime | None = None
    valid_from: datetime | None
    valid_until: datetime | None
    days_left: int | None
    limits: LimitsRead | None
    features: list[str]
    installed_at: datetime | None
    installed_by: str | None


class AllowanceRead(Schema):
    used: int
    limit: int | None = Field(description="null: unlimited")
    remaining: int | None


class MonthUsageRead(Schema):
    period: str = Field(examples=["2026-11"])
    signatures: int


class UsageRead(Schema):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "state": "valid",
                    "period": "2026-11",
                    "users": {"used": 12, "limit": 50, "remaining": 38},
                    "certificates": {"used": 4, "limit": 20, "remaining": 16},
                    "signatures_this_month": {
                        "used": 1530,
                        "limit": 10000,
                        "remaining": 8470,
                    },
                    "signatures_total": {
                        "used": 8211,
                        "limit": None,
                        "remaining": None,
                    },
                    "months": [{"period": "2026-11", "signatures": 1530}],
                }
            ]
        }
    )

    state: LicenseState
    period: str = Field(description="This calendar month (UTC), `YYYY-MM`.")
    users: AllowanceRead
    certificates: AllowanceRead
    signatures_this_month: AllowanceRead
    signatures_total: AllowanceRead
    months: list[MonthUsageRead] = Field(
        description="Signatures per month, newest first (at most 12)."
    )


class LicenseBase64(RequestSchema):
    """A licence file in base64, for clients that cannot send files."""

    model_config = ConfigDict(
        json_schema_extra={"examples": [{"license_base64": "ewogICJmb3JtYXQiOiAi…"}]}
    )

    license_base64: Base64Text = Field(min_length=1, max_length=128 * 1024)


class LicenseFileBase64(Schema):
    license_base64: str
    format: Literal["signvault-license/1"] = "signvault-license/1"
