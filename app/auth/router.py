from typing import Annotated, Any
from urllib.parse import unquote

from fastapi import APIRouter, Depends, Form, Request, Response, status

from app.access import service as access_service
from app.access.models import User
from app.access.policy import SelfServiceDep
from app.access.schemas import RoleRef
from app.auth import service as auth_service
from app.auth import totp as totp_service
from app.auth.errors import (
    AccountDisabled,
    AccountLocked,
    ClientOwnerInactive,
    InvalidCredentials,
    InvalidRefreshToken,
    NotAUser,
    OAuth2InvalidClient,
    OAuth2InvalidGrant,
    OAuth2InvalidRequest,
    OAuth2InvalidScope,
    OAuth2UnauthorizedClient,
    OAuth2UnsupportedGrantType,
    ScopeNotAllowed,
)
from app.auth.models import ApiClient
from app.auth.schemas import (
    JsonWebKey,
    JsonWebKeySet,
    LoginRequest,
    MeResponse,
    OAuth2ErrorResponse,
    PasswordChange,
    RefreshRequest,
    TokenResponse,
    TotpCode,
    TotpDisable,
    TotpEnrolment,
)
from app.auth.service import IssuedTokens
from app.auth.tokens import TokenKeys
from app.core.crypto import EnvelopeCipher
from app.core.deps import PasswordHasherDep, SessionDep, SettingsDep
from app.core.errors import problem_responses
from app.core.routing import AppRoute
from app.core.schemas import decode_base64
from app.settings import service as settings_service

router = APIRouter(prefix="/api/v1/auth", tags=["auth"], route_class=AppRoute)
well_known_router = APIRouter(tags=["auth"], route_class=AppRoute)
# Short: a verifier that cached the set meets a rotated key's tokens for at most this long.
JWKS_MAX_AGE_SECONDS = 60

# The routes that take no token: throttled per client address before their bodies are read.
UNAUTHENTICATED_PATHS = frozenset(
    f"{router.prefix}{path}" for path in ("/login", "/token", "/refresh", "/revoke")
)
NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}
OAUTH2_ERROR: dict[str, Any] = {
    "description": "RFC 6749 §5.2 error (`error`, `error_description`)",
    "model": OAuth2ErrorResponse,
}
FORM_FIELD = Annotated[str | None, Form()]


def _token_response(response: Response, issued: IssuedTokens) -> TokenResponse:
    response.headers.update(NO_STORE)
    return TokenResponse(
        access_token=issued.access_token,
        expires_in=issued.expires_in,
        refresh_token=issued.refresh_token,
        scope=" ".join(sorted(issued.scope)),
    )


def _keys(request: Request) -> TokenKeys:
    keys: TokenKeys = request.app.state.token_keys
    return keys


def _cipher(request: Request) -> EnvelopeCipher | None:
    cipher: EnvelopeCipher | None = request.app.state.cipher
    return cipher


def _client_ip(request: Request) -> str | None:
    # The peer, or the client a trusted proxy forwarded for (core.middleware.ForwardedMiddleware).
    return request.client.host if request.client else None


@router.post(
    "/login",
    responses=problem_responses(401, 403, 415, 422, 429, 503),
)
def login(
    body: LoginRequest,
    request: Request,
    response: Response,
    session: SessionDep,
    settings: SettingsDep,
    hasher: PasswordHasherDep,
) -> TokenResponse:
    """Log in with username, password and (when enrolled) a TOTP code; returns an access and a refresh token."""
    user = auth_service.authenticate_user(
        session,
        hasher,
        username=body.username,
        password=body.password.get_secret_value(),
        grant="login",
        source=_client_ip(request),
        totp=body.totp.get_secret_value() if body.totp else None,
        cipher=_cipher(request),
    )
    access_ttl, refresh_ttl = settings_service.token_lifetimes(session, settings)
    issued = auth_service.start_user_session(
        session,
        keys=_keys(request),
        refresh_ttl=refresh_ttl,
        access_ttl=access_ttl,
        user=user,
        scope=None,
        grant="login",
    )
    return _token_response(response, issued)


def _client_credentials(
    request: Request, client_id: str | None, client_secret: str | None
) -> tuple[str, str, bool] | None:
    """Client id and secret from HTTP Basic (RFC 6749 §2.3.1) or the form; None if absent."""
    header = request.headers.get("authorization", "")
    basic = None
    if header[:6].lower() == "basic ":
        try:
            decoded = decode_base64(header[6:].strip()).decode()
            raw_id, _, raw_secret = decoded.partition(":")
        except ValueError:  # not base64, non-ASCII, or not UTF-8 once decoded
            raise OAuth2InvalidClient(
                "Malformed HTTP Basic client credentials.",
                headers={"WWW-Authenticate": 'Basic realm="signvault"'},
            ) from None
        # Swagger UI sends an empty Basic client ("Og==") with the password grant: no client.
        if raw_id or raw_secret:
            basic = (unquote(raw_id), unquote(raw_secret))
    if basic and (client_id or client_secret):
        raise OAuth2InvalidRequest(
            "Send client credentials either with HTTP Basic or in the body, not both."
        )
    if basic:
        return basic[0], basic[1], True
    if client_id:
        return client_id, client_secret or "", False
    return None


def _authenticate_client(
    session: SessionDep, credentials: tuple[str, str, bool]
) -> ApiClient:
    client_id, client_secret, via_basic = credentials
    try:
        return auth_service.authenticate_client(
            session, client_id=client_id, client_secret=client_secret
        )
    except InvalidCredentials:
        headers = {"WWW-Authenticate": 'Basic realm="signvault"'} if via_basic else {}
        raise OAuth2InvalidClient(
            "Client authentication failed.", headers=headers
        ) from None


@router.post(
    "/token",
    responses={400: OAUTH2_ERROR, 401: OAUTH2_ERROR},
)
def issue_token(
    request: Request,
    response: Response,
    session: SessionDep,
    settings: SettingsDep,
    hasher: PasswordHasherDep,
    grant_type: FORM_FIELD = None,
    username: FORM_FIELD = None,
    password: FORM_FIELD = None,
    scope: FORM_FIELD = None,
    refresh_token: FORM_FIELD = None,
    client_id: FORM_FIELD = None,
    client_secret: FORM_FIELD = None,
) -> TokenResponse:
    """OAuth 2.0 token endpoint (RFC 6749): `client_credentials`, `password` and `refresh_token` grants, form-encoded."""
    content_type = request.headers.get("content-type", "")
    if not content_type.startswith(
        ("application/x-www-form-urlencoded", "multipart/form-data")
    ):
        raise OAuth2InvalidRequest(
            "The token request must be application/x-www-form-urlencoded."
        )
    if not grant_type:
        raise OAuth2InvalidRequest("Missing grant_type.")
    keys = _keys(request)
    credentials = _client_credentials(request, client_id, client_secret)
    access_ttl, refresh_ttl = settings_service.token_lifetimes(session, settings)
    try:
        if grant_type == "client_credentials":
            if credentials is None:
                raise OAuth2InvalidClient(
                    "The client_credentials grant needs client authentication.",
                    headers={"WWW-Authenticate": 'Basic realm="signvault"'},
                )
            client = _authenticate_client(session, credentials)
            try:
                allowed = auth_service.client_grant_entitlements(session, client)
            except ClientOwnerInactive as exc:
                raise OAuth2UnauthorizedClient(
                    exc.detail, extra={"reason": exc.code}
                ) from None
            requested = auth_service.parse_scope(scope, allowed=allowed)
            issued = auth_service.issue_client_token(
                session,
                keys=keys,
                client=client,
                scope=requested,
                access_ttl=access_ttl,
            )
        elif grant_type == "password":
            if not username or not password:
                raise OAuth2InvalidRequest(
                    "The password grant needs username and password."
                )
            password_client = (
                _authenticate_client(session, credentials)
                if credentials is not None
                else None
            )
            user = auth_service.authenticate_user(
                session,
                hasher,
                username=username,
                password=password,
                grant="password",
                source=_client_ip(request),
            )
            requested = auth_service.parse_scope(scope, allowed=user.entitlements)
            issued = auth_service.start_user_session(
                session,
                keys=keys,
                refresh_ttl=refresh_ttl,
                access_ttl=access_ttl,
                user=user,
                scope=requested,
                grant="password",
                client=password_client,
            )
        elif grant_type == "refresh_token":
            if not refresh_token:
                raise OAuth2InvalidRequest(
                    "The refresh_token grant needs refresh_token."
                )
            issued = auth_service.refresh_user_session(
                session,
                keys=keys,
                refresh_ttl=refresh_ttl,
                access_ttl=access_ttl,
                refresh_token=refresh_token,
            )
        else:
            raise OAuth2UnsupportedGrantType(
                f"Unsupported grant_type '{grant_type[:50]}'; use client_credentials, password or refresh_token."
            )
    except (
        InvalidCredentials,
        AccountDisabled,
        AccountLocked,
        InvalidRefreshToken,
    ) as exc:
        raise OAuth2InvalidGrant(exc.detail) from None
    except ScopeNotAllowed as exc:
        raise OAuth2InvalidScope(exc.detail) from None
    return _token_response(response, issued)


@router.post("/refresh", responses=problem_responses(401, 415, 422))
def refresh(
    body: RefreshRequest,
    request: Request,
    response: Response,
    session: SessionDep,
    settings: SettingsDep,
) -> TokenResponse:
    """Exchange a refresh token for a new pair; the old one is spent, and reusing it revokes the session."""
    access_ttl, refresh_ttl = settings_service.token_lifetimes(session, settings)
    issued = auth_service.refresh_user_session(
        session,
        keys=_keys(request),
        refresh_ttl=refresh_ttl,
        access_ttl=access_ttl,
        refresh_token=body.refresh_token.get_secret_value(),
    )
    return _token_response(response, issued)


@router.post(
    "/logout", status_code=status.HTTP_204_NO_CONTENT, responses=problem_responses(401)
)
def logout(principal: SelfServiceDep, session: SessionDep) -> None:
    """Revoke the presented access token and its refresh-token family."""
    auth_service.logout(session, principal)


@router.post(
    "/revoke",
    response_class=Response,
    responses={
        200: {"description": "Revoked, or nothing to revoke (RFC 7009 §2.2)"},
        400: OAUTH2_ERROR,
        401: OAUTH2_ERROR,
    },
)
def revoke(
    request: Request,
    session: SessionDep,
    token: FORM_FIELD = None,
    token_type_hint: FORM_FIELD = None,
    client_id: FORM_FIELD = None,
    client_secret: FORM_FIELD = None,
) -> Response:
    """RFC 7009 token revocation of an access or refresh token."""
    if not token:
        raise OAuth2InvalidRequest("Missing token.")
    credentials = _client_credentials(request, client_id, client_secret)
    client = _authenticate_client(session, credentials) if credentials else None
    auth_service.revoke_token(
        session, keys=_keys(request), token=token, hint=token_type_hint, client=client
    )
    return Response(status_code=200, headers=NO_STORE)


@router.get("/me", responses=problem_responses(401))
def read_me(principal: SelfServiceDep) -> MeResponse:
    """Who the token speaks for, with the entitlements in force now."""
    user = principal.user
    return MeResponse(
        id=principal.id,
        kind=principal.kind,
        username=user.username if user else None,
        name=(user.full_name or user.username) if user else principal.name,
        email=user.email if user else None,
        department_id=principal.department_id,
        roles=[RoleRef.model_validate(role) for role in user.roles] if user else [],
        entitlements=sorted(principal.entitlements),
        token_expires_at=principal.claims.expires_at,
        must_change_password=user.must_change_password if user else False,
        two_factor_enabled=user.totp_seed is not None if user else False,
    )


def _own_user(principal: SelfServiceDep) -> User:
    if principal.user is None:
        raise NotAUser("Only users have a password and a second factor.")
    return principal.user


OwnUserDep = Annotated[User, Depends(_own_user)]


@router.post(
    "/password",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=problem_responses(401, 403, 415, 422),
)
def change_password(
    body: PasswordChange,
    principal: SelfServiceDep,
    user: OwnUserDep,
    session: SessionDep,
    hasher: PasswordHasherDep,
) -> None:
    """Change your own password (the current one, and a new one the password policy accepts)."""
    access_service.change_own_password(
        session,
        hasher,
        principal,
        user=user,
        old_password=body.old_password.get_secret_value(),
        new_password=body.new_password.get_secret_value(),
    )


@router.post("/2fa/setup", responses=problem_responses(401, 403, 409, 503))
def setup_two_factor(
    request: Request, principal: SelfServiceDep, user: OwnUserDep, session: SessionDep
) -> TotpEnrolment:
    """Start TOTP enrolment: a new secret and its otpauth URI (for a QR code); confirm with /2fa/enable."""
    secret, uri = totp_service.start_enrolment(
        session, totp_service.require_cipher(_cipher(request)), principal, user=user
    )
    return TotpEnrolment(secret=secret, otpauth_uri=uri)


@router.post(
    "/2fa/enable",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=problem_responses(401, 403, 409, 415, 422, 503),
)
def enable_two_factor(
    body: TotpCode,
    request: Request,
    principal: SelfServiceDep,
    user: OwnUserDep,
    session: SessionDep,
) -> None:
    """Confirm enrolment with a current code; from then on login needs a code."""
    totp_service.confirm_enrolment(
        session,
        totp_service.require_cipher(_cipher(request)),
        principal,
        user=user,
        code=body.code,
    )


@router.post(
    "/2fa/disable",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=problem_responses(401, 403, 409, 415, 422, 503),
)
def disable_two_factor(
    body: TotpDisable,
    request: Request,
    principal: SelfServiceDep,
    user: OwnUserDep,
    session: SessionDep,
) -> None:
    """Turn off your two-factor authentication, proven with a current code."""
    totp_service.disable(
        session, _cipher(request), principal.actor, user=user, code=body.code
    )


@well_known_router.get("/.well-known/jwks.json")
def read_jwks(request: Request, response: Response) -> JsonWebKeySet:
    """The public keys that verify access tokens (RFC 7517 JWK set); public, cacheable for a minute."""
    response.headers["Cache-Control"] = f"public, max-age={JWKS_MAX_AGE_SECONDS}"
    return JsonWebKeySet(
        keys=[JsonWebKey.model_validate(jwk) for jwk in _keys(request).public_jwks()]
    )
