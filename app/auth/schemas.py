import uuid
from datetime import datetime
from typing import Literal

from pydantic import AwareDatetime, ConfigDict, Field, SecretStr

from app.access.entitlements import Entitlement
from app.access.schemas import RoleRef
from app.auth.models import ClientStatus
from app.core.schemas import Problem, RequestSchema, Schema


class OAuth2ErrorResponse(Problem):
    """RFC 6749 §5.2 error body of /token and /revoke (as JSON, the problem fields besides)."""

    error: str = Field(description="RFC 6749 error code, e.g. `invalid_grant`.")
    error_description: str


class LoginRequest(RequestSchema):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {"username": "admin", "password": "correct horse battery staple"}
            ]
        }
    )

    username: str = Field(min_length=1, max_length=150)
    password: SecretStr = Field(min_length=1, max_length=1024)
    totp: SecretStr | None = Field(
        default=None,
        min_length=6,
        max_length=8,
        description="The current TOTP code, for accounts with two-factor authentication.",
    )


class RefreshRequest(RequestSchema):
    model_config = ConfigDict(
        json_schema_extra={"examples": [{"refresh_token": "kq3N…"}]}
    )

    refresh_token: SecretStr = Field(min_length=1, max_length=512)


class TokenResponse(Schema):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "access_token": "eyJhbGciOiJFUzI1NiIs…",
                    "token_type": "bearer",
                    "expires_in": 900,
                    "refresh_token": "kq3N…",
                    "scope": "documents:read documents:sign",
                }
            ]
        }
    )

    access_token: str
    token_type: Literal["bearer"] = "bearer"  # noqa: S105 (a type name, not a secret)
    expires_in: int
    refresh_token: str | None = None
    scope: str


class MeResponse(Schema):
    id: uuid.UUID
    kind: Literal["user", "client"]
    username: str | None
    name: str
    email: str | None = None
    department_id: uuid.UUID | None = None
    roles: list[RoleRef]
    entitlements: list[str]
    token_expires_at: datetime
    must_change_password: bool = False
    two_factor_enabled: bool = False


class PasswordChange(RequestSchema):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {"old_password": "Old-Passw0rd!", "new_password": "N3w-and-longer!"}
            ]
        }
    )

    old_password: SecretStr = Field(min_length=1, max_length=1024)
    new_password: SecretStr = Field(min_length=1, max_length=1024)


class TotpEnrolment(Schema):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "secret": "JBSWY3DPEHPK3PXP",
                    "otpauth_uri": "otpauth://totp/SignVault:alice?secret=JBSWY3DPEHPK3PXP&issuer=SignVault",
                }
            ]
        }
    )

    secret: str = Field(description="Base32 seed, shown during enrolment only.")
    otpauth_uri: str


class TotpCode(RequestSchema):
    model_config = ConfigDict(json_schema_extra={"examples": [{"code": "492039"}]})

    code: str = Field(pattern=r"^[0-9]{6,8}$")


class TotpDisable(TotpCode):
    pass


class ClientCreate(RequestSchema):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "name": "erp-invoicing",
                    "description": "Signs invoices from the ERP",
                    "entitlements": ["documents:write", "documents:sign"],
                }
            ]
        }
    )

    name: str = Field(min_length=1, max_length=200)
    description: str = Field(default="", max_length=2000)
    entitlements: list[Entitlement] = Field(min_length=1, max_length=256)
    expires_at: AwareDatetime | None = None
    department_id: uuid.UUID | None = Field(
        default=None,
        description="The department whose documents and certificates the client shares; absent: the creator's own, null: none. A non-administrator may name only its own.",
    )


class ClientUpdate(RequestSchema):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"description": "Signs invoices and credit notes"}]
        }
    )

    name: str | None = Field(default=None, min_length=1, max_length=200)
    description: str | None = Field(default=None, max_length=2000)
    entitlements: list[Entitlement] | None = Field(
        default=None, min_length=1, max_length=256
    )
    expires_at: AwareDatetime | None = None
    department_id: uuid.UUID | None = Field(
        default=None,
        description="Move the client to this department (null: none); a non-administrator may name only its own.",
    )


class ClientTransfer(RequestSchema):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [{"owner_id": "6f1c2d3e-4b5a-4c6d-8e9f-0a1b2c3d4e5f"}]
        }
    )

    owner_id: uuid.UUID = Field(
        description="The active user who will own the client; its grant is capped by theirs."
    )


class ClientRead(Schema):
    id: uuid.UUID
    client_id: str
    name: str
    description: str
    entitlements: list[str]
    status: ClientStatus
    expires_at: datetime | None
    last_used_at: datetime | None
    secret_rotated_at: datetime | None
    created_by_id: uuid.UUID | None = Field(
        description="The owner: the user who created the client (or its creating client's owner), or whom an administrator transferred it to. Null once that user is deleted."
    )
    department_id: uuid.UUID | None
    created_at: datetime
    updated_at: datetime


class ClientCreated(ClientRead):
    client_secret: str = Field(description="Shown once: only a hash is stored.")


class ClientSecret(Schema):
    client_id: str
    client_secret: str = Field(description="Shown once: only a hash is stored.")


class JsonWebKey(Schema):
    """An RFC 7517 public key that verifies access tokens (EC P-256, ES256)."""

    kty: Literal["EC"]
    crv: Literal["P-256"]
    x: str = Field(description="base64url of the point's x coordinate")
    y: str = Field(description="base64url of the point's y coordinate")
    kid: str = Field(description="The `kid` in the header of the tokens it verifies")
    use: Literal["sig"]
    alg: Literal["ES256"]


class JsonWebKeySet(Schema):
    """RFC 7517 §5: the keys that verify access tokens now, the signing key first."""

    keys: list[JsonWebKey]
