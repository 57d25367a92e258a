from enum import StrEnum
from typing import Annotated, Literal

from pydantic import ConfigDict, Field, HttpUrl, field_validator

from app.core.schemas import RequestSchema

# The engine's PadesLevel values, spelled out: importing the engine here would
# load pyHanko into every command of the CLI (tests check both agree).
SignatureLevel = Literal["B-B", "B-T", "B-LT", "B-LTA"]


# A page is at most 14,400 units a side (ISO 32000-1 annex C): a coordinate
# beyond cannot be on any page, and 1e308 must not reach the PDF writer.
MAX_COORDINATE = 14_400
Coordinate = Annotated[
    float, Field(ge=-MAX_COORDINATE, le=MAX_COORDINATE, allow_inf_nan=False)
]
Box = tuple[Coordinate, Coordinate, Coordinate, Coordinate]


class PasswordPolicy(RequestSchema):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "min_length": 12,
                    "require_uppercase": True,
                    "require_lowercase": True,
                    "require_digit": True,
                    "require_symbol": True,
                    "history": 5,
                    "max_age_days": 90,
                    "lockout_threshold": 5,
                    "lockout_minutes": 15,
                }
            ]
        }
    )

    min_length: int = Field(default=10, ge=8, le=128)
    require_uppercase: bool = True
    require_lowercase: bool = True
    require_digit: bool = True
    require_symbol: bool = False
    history: int = Field(
        default=5, ge=0, le=24, description="The last N passwords cannot be reused."
    )
    max_age_days: int = Field(
        default=0,
        ge=0,
        le=3650,
        description="Days before a password must be changed; 0: never.",
    )
    lockout_threshold: int = Field(
        default=5,
        ge=0,
        le=100,
        description=(
            "Failed logins in a row from one address that lock that address (not the "
            "account: other addresses, the owner's among them, still log in) out of the "
            "account for lockout_minutes. Once an account's recent failures from all "
            "addresses reach it, every address that failed waits a Retry-After that "
            "doubles with each further failure. 0: no lockout and no slowdown."
        ),
    )
    lockout_minutes: int = Field(
        default=15,
        ge=1,
        le=10_080,
        description=(
            "How long an address stays locked out of an account; also how long an "
            "account's failures keep counting towards the slowdown after the last one, "
            "and the longest wait it imposes."
        ),
    )


class SecuritySettings(RequestSchema):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "access_token_ttl_seconds": 600,
                    "refresh_token_ttl_seconds": None,
                    "require_2fa_for_administrators": True,
                    "rate_limit_per_minute": 300,
                    "login_attempts_per_minute_per_ip": 20,
                }
            ]
        }
    )

    access_token_ttl_seconds: int | None = Field(
        default=None,
        ge=30,
        le=86_400,
        description="Overrides SIGNVAULT_ACCESS_TOKEN_TTL_SECONDS; null: the server setting.",
    )
    refresh_token_ttl_seconds: int | None = Field(
        default=None,
        ge=60,
        le=31_536_000,
        description="Overrides SIGNVAULT_REFRESH_TOKEN_TTL_SECONDS; null: the server setting.",
    )
    require_2fa_for_administrators: bool = Field(
        default=False,
        description="Holders of the administrator role must enrol in TOTP before doing anything else.",
    )
    rate_limit_per_minute: int | None = Field(
        default=None,
        ge=0,
        le=1_000_000,
        description="Requests per minute per user or API client; 0: off; null: SIGNVAULT_RATE_LIMIT_PER_MINUTE.",
    )
    login_attempts_per_minute_per_ip: int | None = Field(
        default=None,
        ge=0,
        le=1_000_000,
        description="Login attempts per minute per client IP; 0: off; null: SIGNVAULT_LOGIN_RATE_LIMIT_PER_MINUTE.",
    )


class HashAlgorithm(StrEnum):
    SHA256 = "sha256"
    SHA384 = "sha384"
    SHA512 = "sha512"


# What a stamp text may refer to (pyHanko fills ts, the engine the others).
_STAMP_PARAMETERS = {
    "signer": "Alice",
    "user": "alice",
    "ts": "2025-01-01 12:00:00",
    "reason": "ok",
}


def checked_stamp_text(text: str | None) -> str | None:
    """A stamp text whose placeholders the engine can fill (else signing would fail late)."""
    if text is not None:
        try:
            text % _STAMP_PARAMETERS
        except (KeyError, ValueError, TypeError):
            raise ValueError(
                "the only placeholders are %(signer)s, %(user)s, %(ts)s and %(reason)s (write %% for a percent sign)"
            ) from None
    return text


class DefaultAppearance(RequestSchema):
    visible: bool = Field(
        default=False,
        description="Sign visibly when a request gives neither `appearance` nor `field_name`.",
    )
    page: int = Field(default=1, ge=1, description="1-based page of the default stamp.")
    box: Box = Field(
        default=(36.0, 36.0, 236.0, 96.0),
        description="[x1, y1, x2, y2] in PDF points from the bottom-left corner.",
    )
    text: str | None = Field(
        default=None,
        max_length=500,
        description="Stamp text when a request's appearance gives none; placeholders %(signer)s (the certificate's common name), %(user)s (the signing account), %(ts)s, %(reason)s.",
    )

    @field_validator("box")
    @classmethod
    def check_box(
        cls, box: tuple[float, float, float, float]
    ) -> tuple[float, float, float, float]:
        x1, y1, x2, y2 = box
        if x2 <= x1 or y2 <= y1 or min(box) < 0:
            raise ValueError("the box must be [x1, y1, x2, y2] with x2 > x1, y2 > y1")
        return box

    @field_validator("text")
    @classmethod
    def check_template(cls, text: str | None) -> str | None:
        return checked_stamp_text(text)


class SigningSettings(RequestSchema):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "default_level": "B-T",
                    "tsa_url": "http://tsa.example.com/rfc3161",
                    "hash_algorithm": "sha256",
                    "default_appearance": {
                        "visible": True,
                        "page": 1,
                        "box": [36, 36, 236, 96],
                        "text": "Signed by %(signer)s\n%(ts)s",
                    },
                    "trust_roots": [
                        "-----BEGIN CERTIFICATE-----\nMIIB...\n-----END CERTIFICATE-----"
                    ],
                    "include_vault_chains": False,
                }
            ]
        }
    )

    default_level: SignatureLevel = Field(
        default="B-B", description="Level of a sign request that names none."
    )
    tsa_url: HttpUrl | None = Field(
        default=None,
        description="RFC 3161 timestamp authority; null: SIGNVAULT_TSA_URL.",
    )
    hash_algorithm: HashAlgorithm = Field(
        default=HashAlgorithm.SHA256,
        description="Digest of new signatures (message digest and signature algorithm).",
    )
    default_appearance: DefaultAppearance = Field(default_factory=DefaultAppearance)
    trust_roots: list[str] = Field(
        default_factory=list,
        max_length=100,
        description="PEM certificates trusted by validation (`/verify`), besides SIGNVAULT_TRUST_ROOTS_FILE; one certificate per entry.",
    )
    include_vault_chains: bool = Field(
        default=False,
        description="Validation also trusts the root certificates of the vault's certificate chains, and its self-signed certificates (not revoked or deleted).",
    )


class DocumentSettings(RequestSchema):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {"max_upload_bytes": 10_485_760, "content_retention_days": 365}
            ]
        }
    )

    max_upload_bytes: int | None = Field(
        default=None,
        ge=1024,
        description="Largest stored PDF (413 beyond); at most SIGNVAULT_MAX_UPLOAD_BYTES, which stays the cap on every request body; null: that setting.",
    )
    content_retention_days: int | None = Field(
        default=None,
        ge=1,
        le=36_500,
        description="Days after its last change a document's PDF content is deleted (metadata, signature records and audit stay); null: keep for ever.",
    )
