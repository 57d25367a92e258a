from pydantic import ConfigDict, Field

from app.core.schemas import RequestSchema


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
        description="Failed logins in a row that lock the account; 0: never lock.",
    )
    lockout_minutes: int = Field(default=15, ge=1, le=10_080)


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
