from typing import Any, ClassVar

from app.core.errors import AppError, Forbidden, InvalidToken, NotAuthenticated


class InvalidCredentials(NotAuthenticated):
    code = "invalid_credentials"
    title = "Invalid credentials"


class AccountDisabled(Forbidden):
    code = "account_disabled"
    title = "Account disabled"


class AccountLocked(Forbidden):
    code = "account_locked"
    title = "Account locked"


class InvalidRefreshToken(NotAuthenticated):
    code = "invalid_refresh_token"
    title = "Invalid refresh token"


class ScopeNotAllowed(AppError):
    status = 400
    code = "invalid_scope"
    title = "Scope not allowed"


class EntitlementEscalation(Forbidden):
    code = "entitlement_escalation"
    title = "Cannot grant entitlements you do not hold"


class ClientOwnerInactive(InvalidToken):
    """The client's owner is deleted or disabled: nothing runs as the client until it is transferred."""

    code = "client_owner_inactive"
    title = "API client owner inactive"


class AdministratorRequired(Forbidden):
    code = "administrator_required"
    title = "Only an administrator may do this"


class ClientNotFound(AppError):
    status = 404
    code = "client_not_found"
    title = "API client not found"


class OAuth2Error(AppError):
    """RFC 6749 §5.2 error: `error` and `error_description` (plus the problem fields), as JSON."""

    media_type: ClassVar[str] = "application/json"
    error: ClassVar[str] = "invalid_request"

    def __init__(self, description: str, **kwargs: Any) -> None:
        headers = {
            "Cache-Control": "no-store",
            "Pragma": "no-cache",
            **kwargs.pop("headers", {}),
        }
        extra = {
            "error": self.error,
            "error_description": description,
            **kwargs.pop("extra", {}),
        }
        super().__init__(description, headers=headers, extra=extra, **kwargs)


class OAuth2InvalidRequest(OAuth2Error):
    error = code = "invalid_request"
    title = "Invalid token request"


class OAuth2InvalidClient(OAuth2Error):
    status = 401
    error = code = "invalid_client"
    title = "Client authentication failed"


class OAuth2InvalidGrant(OAuth2Error):
    error = code = "invalid_grant"
    title = "Invalid grant"


class OAuth2UnauthorizedClient(OAuth2Error):
    """RFC 6749 §5.2: the authenticated client may not use this grant now (`reason` says why)."""

    error = code = "unauthorized_client"
    title = "Client not authorized"


class OAuth2InvalidScope(OAuth2Error):
    error = code = "invalid_scope"
    title = "Invalid scope"


class OAuth2UnsupportedGrantType(OAuth2Error):
    error = code = "unsupported_grant_type"
    title = "Unsupported grant type"


class OAuth2UnsupportedTokenType(OAuth2Error):
    error = code = "unsupported_token_type"
    title = "Unsupported token type"


class TotpRequired(InvalidCredentials):
    code = "totp_required"
    title = "Two-factor code required"


class InvalidTotp(InvalidCredentials):
    code = "invalid_totp"
    title = "Invalid two-factor code"


class TotpAlreadyEnabled(AppError):
    status = 409
    code = "totp_already_enabled"
    title = "Two-factor authentication already enabled"


class TotpNotEnabled(AppError):
    status = 409
    code = "totp_not_enabled"
    title = "Two-factor authentication not enabled"


class TotpCodeRejected(AppError):
    status = 422
    code = "invalid_totp_code"
    title = "Two-factor code rejected"


class NotAUser(Forbidden):
    code = "not_a_user"
    title = "Only for users"
