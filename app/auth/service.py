"""Logins, sessions, token issue/refresh/revoke, and resolving a bearer token into a principal."""

import uuid
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import ColumnElement, Exists, false, select, true, update
from sqlalchemy.orm import Session, joinedload, selectinload

from app.access import lockout
from app.access import service as access_service
from app.access.entitlements import ALL as ALL_ENTITLEMENTS
from app.access.errors import LoginDelayed, LoginLockedOut
from app.access.models import User, UserStatus
from app.access.principal import Principal
from app.audit import service as audit_service
from app.audit.service import ANONYMOUS, Actor, ActorKind, Outcome
from app.auth import clients
from app.auth import totp as totp_service
from app.auth.errors import (
    AccountDisabled,
    AccountLocked,
    ClientOwnerInactive,
    InvalidCredentials,
    InvalidRefreshToken,
    InvalidTotp,
    ScopeNotAllowed,
    TotpRequired,
)
from app.auth.models import (
    ApiClient,
    AuthSession,
    ClientStatus,
    RefreshToken,
    RevokedAccessToken,
)
from app.auth.tokens import AccessClaims, TokenKeys
from app.core.crypto import EnvelopeCipher
from app.core.db import after_transaction
from app.core.errors import InvalidToken
from app.core.security import PasswordHasher, new_secret, secret_digest, secret_matches
from app.core.types import name_key, utcnow
from app.settings import service as settings_service


@dataclass(frozen=True, slots=True)
class IssuedTokens:
    access_token: str
    expires_in: int
    refresh_token: str | None
    scope: frozenset[str]


def user_actor(user: User) -> Actor:
    return Actor(ActorKind.USER, str(user.id), user.username)


def client_actor(client: ApiClient) -> Actor:
    return Actor(ActorKind.CLIENT, str(client.id), client.name)


def find_user_by_username(session: Session, username: str) -> User | None:
    return session.scalars(
        select(User)
        .where(User.username_key == name_key(username))
        .options(selectinload(User.roles))
    ).one_or_none()


def parse_scope(raw: str | None, *, allowed: frozenset[str]) -> frozenset[str] | None:
    """A requested scope (space-separated entitlements), which must be within `allowed`.

    Raises:
        ScopeNotAllowed: an unknown entitlement, or one the principal does not hold.
    """
    if raw is None or not raw.strip():
        return None
    requested = frozenset(raw.split())
    unknown = sorted(requested - ALL_ENTITLEMENTS)
    if unknown:
        raise ScopeNotAllowed(f"Unknown scope: {' '.join(unknown)}.")
    missing = sorted(requested - allowed)
    if missing:
        raise ScopeNotAllowed(
            f"Scope not granted to this principal: {' '.join(missing)}."
        )
    return requested


def authenticate_user(
    session: Session,
    hasher: PasswordHasher,
    *,
    username: str,
    password: str,
    grant: str,
    source: str | None,
    totp: str | None = None,
    cipher: EnvelopeCipher | None = None,
) -> User:
    """Check a username, password and (when enrolled) TOTP code; every failure is audited.

    `source` is the caller's address. A wrong password or code counts against
    the account from that address, in a transaction of its own (this request's
    rolls back); see `access.lockout` for what the counts lock or slow down.

    Raises:
        LoginLockedOut, LoginDelayed: refused before the password is checked.
        InvalidCredentials: unknown user or wrong password (the same answer for both).
        TotpRequired: right password, 2FA enrolled, no code given.
        InvalidTotp: wrong or replayed code.
        AccountDisabled: right password, disabled account.
        AccountLocked: right password, account locked by an administrator.
    """
    account, origin = lockout.account_key(username), lockout.source_of(source)
    user = find_user_by_username(session, username)
    try:
        lockout.check(session, account=account, source=origin, now=utcnow())
    except (LoginLockedOut, LoginDelayed) as refused:
        audit_service.record_isolated(
            session,
            actor=user_actor(user)
            if user
            else Actor(ActorKind.ANONYMOUS, None, username[:200]),
            action="auth.login",
            resource_type="user",
            resource_id=user.id if user else None,
            outcome=Outcome.DENIED,
            details={"grant": grant, "reason": refused.code},
        )
        raise
    if (
        not hasher.verify(password, user.password_hash if user else None)
        or user is None
    ):
        _refuse_login(
            session,
            user,
            username,
            grant,
            "wrong_password" if user else "unknown_user",
            source=origin,
        )
        raise InvalidCredentials("Invalid username or password.")
    if user.status != UserStatus.ACTIVE:
        audit_service.record_isolated(
            session,
            actor=user_actor(user),
            action="auth.login",
            resource_type="user",
            resource_id=user.id,
            outcome=Outcome.DENIED,
            details={"grant": grant, "reason": f"account_{user.status.value}"},
        )
        if user.status == UserStatus.LOCKED:
            raise AccountLocked(
                "This account is locked until an administrator unlocks it."
            )
        raise AccountDisabled("This account is disabled.")
    if user.totp_seed is not None:
        if not totp:
            audit_service.record_isolated(
                session,
                actor=user_actor(user),
                action="auth.login",
                resource_type="user",
                resource_id=user.id,
                details={"grant": grant, "reason": "totp_missing"},
            )
            raise TotpRequired(
                "This account uses two-factor authentication: send the current code in 'totp'."
                if grant == "login"
                else "This account uses two-factor authentication: log in with POST /api/v1/auth/login."
            )
        if not totp_service.verify_login_code(
            session, totp_service.require_cipher(cipher), user=user, code=totp
        ):
            _refuse_login(session, user, username, grant, "wrong_totp", source=origin)
            raise InvalidTotp("The two-factor code is wrong or was already used.")
    if hasher.needs_rehash(user.password_hash):
        user.password_hash = hasher.hash(password)
    lockout.clear_source(session, account=account, source=origin)
    if access_service.password_expired(
        user, settings_service.password_policy(session), utcnow()
    ):
        user.must_change_password = True
    return user


def _refuse_login(
    session: Session,
    user: User | None,
    username: str,
    grant: str,
    reason: str,
    *,
    source: str,
) -> None:
    user_id = user.id if user else None
    audit_service.record_isolated(
        session,
        actor=user_actor(user)
        if user
        else Actor(ActorKind.ANONYMOUS, None, username[:200]),
        action="auth.login",
        resource_type="user",
        resource_id=user_id,
        details={"grant": grant, "reason": reason},
        along=lambda own: lockout.count_failure(
            own, account=lockout.account_key(username), source=source, user_id=user_id
        ),
    )


def revoke_user_sessions(
    session: Session, user_id: uuid.UUID, *, reason: str, actor: Actor
) -> int:
    """End every open session of a user (their refresh tokens and the access tokens issued in them)."""
    families = session.scalars(
        select(AuthSession).where(
            AuthSession.user_id == user_id, AuthSession.revoked_at.is_(None)
        )
    ).all()
    for family in families:
        _end_session(
            session, family, reason=reason, action="auth.session_revoked", actor=actor
        )
    return len(families)


def start_user_session(
    session: Session,
    *,
    keys: TokenKeys,
    refresh_ttl: timedelta,
    user: User,
    scope: frozenset[str] | None,
    grant: str,
    access_ttl: timedelta | None = None,
    client: ApiClient | None = None,
) -> IssuedTokens:
    """Open a session (a refresh-token family) for an authenticated user and issue its first tokens.

    `client`: the API client that authenticated with the request (password grant),
    which may then revoke the session's tokens (RFC 7009).
    """
    now = utcnow()
    auth_session = AuthSession(
        user_id=user.id,
        client_id=client.id if client is not None else None,
        scope=sorted(scope) if scope is not None else None,
        expires_at=now + refresh_ttl,
    )
    session.add(auth_session)
    session.flush()
    refresh_token = _add_refresh_token(session, auth_session, refresh_ttl)
    access_token, claims = keys.issue(
        sub=str(user.id),
        kind="user",
        sid=str(auth_session.id),
        scope=scope,
        ttl=access_ttl,
    )
    user.last_login_at = now
    audit_service.record(
        session,
        actor=user_actor(user),
        action="auth.login",
        resource_type="user",
        resource_id=user.id,
        details={"grant": grant, "session_id": str(auth_session.id), "jti": claims.jti},
    )
    return IssuedTokens(
        access_token,
        _expires_in(claims),
        refresh_token,
        scope if scope is not None else user.entitlements,
    )


def refresh_user_session(
    session: Session,
    *,
    keys: TokenKeys,
    refresh_ttl: timedelta,
    refresh_token: str,
    access_ttl: timedelta | None = None,
) -> IssuedTokens:
    """Spend a refresh token for a new pair in the same family.

    A refresh token that was already spent means it leaked: the whole family is
    revoked (stored even though this request fails).

    Raises:
        InvalidRefreshToken: unknown, expired, spent or revoked token; inactive account.
    """
    stored = session.scalars(
        select(RefreshToken)
        .where(RefreshToken.token_digest == secret_digest(refresh_token))
        .options(selectinload(RefreshToken.session))
    ).one_or_none()
    if stored is None:
        _record_refresh_refused(session, None, "unknown_token")
        raise InvalidRefreshToken("The refresh token is not valid.")
    family = stored.session
    now = utcnow()
    if family.revoked_at is not None:
        _record_refresh_refused(session, family, "session_revoked")
        raise InvalidRefreshToken("The refresh token's session has been revoked.")
    spent = session.execute(
        update(RefreshToken)
        .where(RefreshToken.id == stored.id, RefreshToken.spent_at.is_(None))
        .values(spent_at=now)
    )
    if spent.rowcount != 1:  # type: ignore[attr-defined]
        family_id = family.id
        after_transaction(session, lambda own: _revoke_reused_family(own, family_id))
        raise InvalidRefreshToken(
            "The refresh token was already used; its session has been revoked."
        )
    if stored.expires_at <= now:
        _record_refresh_refused(session, family, "expired")
        raise InvalidRefreshToken("The refresh token has expired.")
    user = session.scalars(
        select(User).where(User.id == family.user_id).options(selectinload(User.roles))
    ).one()
    if user.status == UserStatus.DISABLED:
        _record_refresh_refused(session, family, "account_disabled")
        raise InvalidRefreshToken("The account is disabled.")
    if user.status == UserStatus.LOCKED:
        # A locked account's tokens run out; they are not renewed.
        _record_refresh_refused(session, family, "account_locked")
        raise InvalidRefreshToken("The account is locked.")
    family.expires_at = now + refresh_ttl
    new_refresh = _add_refresh_token(session, family, refresh_ttl)
    scope = frozenset(family.scope) if family.scope is not None else None
    access_token, claims = keys.issue(
        sub=str(user.id), kind="user", sid=str(family.id), scope=scope, ttl=access_ttl
    )
    audit_service.record(
        session,
        actor=user_actor(user),
        action="auth.token_refreshed",
        resource_type="auth_session",
        resource_id=family.id,
        details={"jti": claims.jti},
    )
    return IssuedTokens(
        access_token,
        _expires_in(claims),
        new_refresh,
        scope if scope is not None else user.entitlements,
    )


def _revoke_reused_family(session: Session, family_id: uuid.UUID) -> None:
    _end_session(
        session,
        session.get_one(AuthSession, family_id),
        reason="refresh_token_reuse",
        action="auth.refresh_reuse_detected",
        outcome=Outcome.DENIED,
    )


def _end_session(
    session: Session,
    family: AuthSession,
    *,
    reason: str,
    action: str,
    outcome: Outcome = Outcome.SUCCESS,
    actor: Actor | None = None,
    details: dict[str, str] | None = None,
) -> None:
    """Revoke a session (every token issued in it) and audit why."""
    if family.revoked_at is None:
        family.revoked_at = utcnow()
        family.revoke_reason = reason
    audit_service.record(
        session,
        actor=actor or Actor(ActorKind.USER, str(family.user_id)),
        action=action,
        resource_type="auth_session",
        resource_id=family.id,
        outcome=outcome,
        details={"reason": reason, **(details or {})},
    )


def _record_refresh_refused(
    session: Session, family: AuthSession | None, reason: str
) -> None:
    audit_service.record_isolated(
        session,
        actor=Actor(ActorKind.USER, str(family.user_id)) if family else ANONYMOUS,
        action="auth.token_refreshed",
        resource_type="auth_session",
        resource_id=family.id if family else None,
        details={"reason": reason},
    )


def _add_refresh_token(session: Session, family: AuthSession, ttl: timedelta) -> str:
    value = new_secret()
    session.add(
        RefreshToken(
            session_id=family.id,
            token_digest=secret_digest(value),
            expires_at=utcnow() + ttl,
        )
    )
    return value


def _expires_in(claims: AccessClaims) -> int:
    return int((claims.expires_at - claims.issued_at).total_seconds())


def authenticate_client(
    session: Session, *, client_id: str, client_secret: str
) -> ApiClient:
    """Check client credentials; failures are audited.

    Raises:
        InvalidCredentials: unknown client, wrong secret, disabled or expired client.
    """
    client = session.scalars(
        select(ApiClient).where(ApiClient.client_id == client_id)
    ).one_or_none()
    reason = None
    if client is None:
        reason = "unknown_client"
    elif not secret_matches(client_secret, client.secret_digest):
        reason = "wrong_secret"
    elif client.status != ClientStatus.ACTIVE:
        reason = "client_disabled"
    elif client.expires_at is not None and client.expires_at <= utcnow():
        reason = "client_expired"
    if reason is not None or client is None:
        audit_service.record_isolated(
            session,
            actor=client_actor(client)
            if client
            else Actor(ActorKind.ANONYMOUS, None, client_id[:200]),
            action="auth.client_authentication",
            resource_type="api_client",
            resource_id=client.id if client else None,
            details={"reason": reason},
        )
        raise InvalidCredentials("Client authentication failed.")
    return client


def client_grant_entitlements(session: Session, client: ApiClient) -> frozenset[str]:
    """What the client-credentials grant may put in a token now (refusals are audited).

    Raises:
        ClientOwnerInactive
    """
    try:
        return client_standing(session, client).entitlements
    except ClientOwnerInactive:
        audit_service.record_isolated(
            session,
            actor=client_actor(client),
            action="auth.token_issued",
            resource_type="api_client",
            resource_id=client.id,
            outcome=Outcome.DENIED,
            details={"grant": "client_credentials", "reason": "client_owner_inactive"},
        )
        raise


def issue_client_token(
    session: Session,
    *,
    keys: TokenKeys,
    client: ApiClient,
    scope: frozenset[str] | None,
    access_ttl: timedelta | None = None,
) -> IssuedTokens:
    """Access token for the client-credentials grant (no refresh token, RFC 6749 §4.4.3)."""
    access_token, claims = keys.issue(
        sub=str(client.id), kind="client", sid=None, scope=scope, ttl=access_ttl
    )
    client.last_used_at = utcnow()
    audit_service.record(
        session,
        actor=client_actor(client),
        action="auth.token_issued",
        resource_type="api_client",
        resource_id=client.id,
        details={
            "grant": "client_credentials",
            "jti": claims.jti,
            "scope": sorted(scope) if scope else None,
        },
    )
    return IssuedTokens(
        access_token,
        _expires_in(claims),
        None,
        scope if scope is not None else client_standing(session, client).entitlements,
    )


@dataclass(frozen=True, slots=True)
class ClientStanding:
    entitlements: frozenset[str]
    department_id: uuid.UUID | None


def client_standing(session: Session, client: ApiClient) -> ClientStanding:
    """What a client may do now: its grant capped by what its owner holds now.

    The client works in its department only while its owner belongs to it (or
    is an administrator, who reaches every department). A
    client whose owner is deleted (`created_by_id` NULL) or disabled does
    nothing until an administrator transfers it; a locked owner (a lockout
    anyone can cause with wrong passwords) does not stop it.

    Raises:
        ClientOwnerInactive
    """
    owner = (
        session.scalars(
            select(User)
            .where(User.id == client.created_by_id)
            .options(selectinload(User.roles))
        ).one_or_none()
        if client.created_by_id is not None
        else None
    )
    if owner is None or owner.status == UserStatus.DISABLED:
        raise ClientOwnerInactive(
            "The API client's owner is deleted or disabled; an administrator must transfer the client to an active user."
        )
    return ClientStanding(
        frozenset(client.entitlements) & owner.entitlements,
        client.department_id
        if clients.owner_reaches_department(owner, client.department_id)
        else None,
    )


def principal_from_access_token(
    session: Session, keys: TokenKeys, token: str
) -> Principal:
    """Resolve a bearer token into the principal it speaks for, with current entitlements.

    Entitlements come from the user's roles (or the client's grant) as they are
    now, narrowed by the token's scope: a role change applies on the next request.

    Raises:
        InvalidToken: bad token, revoked token or session, gone or disabled principal.
    """
    return principal_from_claims(session, verified_claims(session, keys, token))


def verified_claims(session: Session, keys: TokenKeys, token: str) -> AccessClaims:
    """The token's claims, if its signature and dates hold. Raises: InvalidToken (audited)."""
    try:
        return keys.verify(token)
    except InvalidToken as exc:
        _audit_rejected(session, exc)
        raise


def principal_from_claims(session: Session, claims: AccessClaims) -> Principal:
    """`principal_from_access_token` for claims `verified_claims` returned."""
    try:
        return _resolve_principal(session, claims)
    except InvalidToken as exc:
        _audit_rejected(session, exc)
        raise


def _audit_rejected(session: Session, exc: InvalidToken) -> None:
    audit_service.record_isolated(
        session,
        actor=ANONYMOUS,
        action="auth.token_rejected",
        outcome=Outcome.DENIED,
        details={"reason": exc.detail},
    )


def _resolve_principal(session: Session, claims: AccessClaims) -> Principal:
    try:
        subject = uuid.UUID(claims.sub)
    except ValueError:
        subject = None
    if claims.kind == "user" and subject is not None:
        # One round trip for the usual case: the user with the token's standing.
        found = (
            session.execute(
                select(
                    User,
                    _token_revoked(claims).label("revoked"),
                    _session_alive(claims).label("alive"),
                )
                .where(User.id == subject)
                .options(joinedload(User.roles))
            )
            .unique()
            .one_or_none()
        )
        revoked, alive = (
            (found.revoked, found.alive)
            if found is not None
            else session.execute(
                select(_token_revoked(claims), _session_alive(claims))
            ).one()
        )
        if revoked:
            raise InvalidToken("The access token has been revoked.")
        if not alive:
            raise InvalidToken("The access token's session has been revoked.")
        user = found.User if found is not None else None
        if user is None or user.status == UserStatus.DISABLED:
            raise InvalidToken(
                "The access token's account no longer exists or is disabled."
            )
        return Principal(
            "user",
            user.id,
            user.username,
            _narrow(user.entitlements, claims.scope),
            claims,
            user=user,
        )
    if session.get(RevokedAccessToken, claims.jti) is not None:
        raise InvalidToken("The access token has been revoked.")
    if subject is None:
        raise InvalidToken("The access token has an invalid subject.")
    client = session.get(ApiClient, subject)
    if client is None or client.status != ClientStatus.ACTIVE:
        raise InvalidToken("The access token's client no longer exists or is disabled.")
    if client.expires_at is not None and client.expires_at <= utcnow():
        raise InvalidToken("The access token's client has expired.")
    standing = client_standing(session, client)
    return Principal(
        "client",
        client.id,
        client.name,
        _narrow(standing.entitlements, claims.scope),
        claims,
        client=client,
        client_department_id=standing.department_id,
    )


def _narrow(held: frozenset[str], scope: frozenset[str] | None) -> frozenset[str]:
    return held if scope is None else held & scope


def _token_revoked(claims: AccessClaims) -> Exists:
    return (
        select(RevokedAccessToken.jti)
        .where(RevokedAccessToken.jti == claims.jti)
        .exists()
    )


def _session_alive(claims: AccessClaims) -> ColumnElement[bool]:
    """The token's login session is not revoked (a token without one has nothing to revoke)."""
    if claims.sid is None:
        return true()
    try:
        sid = uuid.UUID(claims.sid)
    except ValueError:
        return false()
    return (
        select(AuthSession.id)
        .where(AuthSession.id == sid, AuthSession.revoked_at.is_(None))
        .exists()
    )


def logout(session: Session, principal: Principal) -> None:
    """Revoke the presented access token and, for a user, its whole session."""
    _deny_access_token(session, principal.claims)
    if principal.claims.sid is not None:
        family = session.get(AuthSession, uuid.UUID(principal.claims.sid))
        if family is not None and family.revoked_at is None:
            family.revoked_at = utcnow()
            family.revoke_reason = "logout"
    audit_service.record(
        session,
        actor=principal.actor,
        action="auth.logout",
        resource_type="auth_session",
        resource_id=principal.claims.sid,
        details={"jti": principal.claims.jti},
    )


def _deny_access_token(session: Session, claims: AccessClaims) -> None:
    if session.get(RevokedAccessToken, claims.jti) is None:
        session.add(RevokedAccessToken(jti=claims.jti, expires_at=claims.expires_at))


def revoke_token(
    session: Session,
    *,
    keys: TokenKeys,
    token: str,
    hint: str | None,
    client: ApiClient | None,
) -> None:
    """RFC 7009: revoke an access or refresh token; unknown or foreign tokens change nothing.

    A client may revoke the tokens issued to it; without client authentication,
    holding a user's token is the right to revoke it.
    """
    actor = client_actor(client) if client else ANONYMOUS
    kinds = (
        ("refresh_token", "access_token")
        if hint != "access_token"
        else ("access_token", "refresh_token")
    )
    for kind in kinds:
        if kind == "refresh_token" and _revoke_refresh_token(
            session, token, actor, client
        ):
            return
        if kind == "access_token" and _revoke_access_token(
            session, keys, token, actor, client
        ):
            return


def _revoke_refresh_token(
    session: Session, token: str, actor: Actor, client: ApiClient | None
) -> bool:
    stored = session.scalars(
        select(RefreshToken)
        .where(RefreshToken.token_digest == secret_digest(token))
        .options(selectinload(RefreshToken.session))
    ).one_or_none()
    if stored is None:
        return False
    if client is not None and stored.session.client_id != client.id:
        # A session another client (or none) started: not this client's to revoke.
        return True
    # RFC 7009 §2.1: the access tokens of the session end with it.
    _end_session(
        session,
        stored.session,
        reason="revoked",
        action="auth.token_revoked",
        details={"token_type": "refresh_token"},
    )
    return True


def _revoke_access_token(
    session: Session,
    keys: TokenKeys,
    token: str,
    actor: Actor,
    client: ApiClient | None,
) -> bool:
    try:
        claims = keys.verify(token)
    except InvalidToken:
        return False
    owned = client is not None and (
        claims.sub == str(client.id)
        if claims.kind == "client"
        else _session_of_client(session, claims, client)
    )
    if client is not None and not owned:
        return True
    if client is None and claims.kind != "user":
        return True
    _deny_access_token(session, claims)
    audit_service.record(
        session,
        actor=actor if client else Actor(ActorKind.USER, claims.sub),
        action="auth.token_revoked",
        resource_type="access_token",
        resource_id=claims.jti,
        details={"token_type": "access_token"},
    )
    return True


def _session_of_client(
    session: Session, claims: AccessClaims, client: ApiClient
) -> bool:
    """The user token was issued in a session this client started (password grant)."""
    try:
        sid = uuid.UUID(claims.sid) if claims.sid else None
    except ValueError:
        return False
    family = session.get(AuthSession, sid) if sid else None
    return family is not None and family.client_id == client.id


def background_principal(
    session: Session,
    *,
    kind: str,
    principal_id: uuid.UUID,
    scope: frozenset[str] | None,
    job: str,
) -> Principal:
    """The principal a background job (a signing batch) acts for, as it is now in the database.

    Entitlements are the user's roles (or the client's grant capped by its owner's
    roles) at this moment, narrowed by `scope` (the scope of the token that started
    the job); the claims name the job (`jti`) and no session.

    Raises:
        AccountDisabled: the user or client is gone, disabled or expired.
        ClientOwnerInactive: the client's owner is gone or disabled.
    """
    now = utcnow()
    claims = AccessClaims(
        sub=str(principal_id),
        kind=kind,
        jti=job,
        issued_at=now,
        expires_at=now,
        sid=None,
        scope=scope,
    )
    if kind == "user":
        user = session.scalars(
            select(User)
            .where(User.id == principal_id)
            .options(selectinload(User.roles))
        ).one_or_none()
        if user is None or user.status == UserStatus.DISABLED:
            raise AccountDisabled("The account this job runs for is gone or disabled.")
        return Principal(
            "user",
            user.id,
            user.username,
            _narrow(user.entitlements, scope),
            claims,
            user=user,
        )
    client = session.get(ApiClient, principal_id)
    if (
        client is None
        or client.status != ClientStatus.ACTIVE
        or (client.expires_at is not None and client.expires_at <= now)
    ):
        raise AccountDisabled(
            "The API client this job runs for is gone, disabled or expired."
        )
    standing = client_standing(session, client)
    return Principal(
        "client",
        client.id,
        client.name,
        _narrow(standing.entitlements, scope),
        claims,
        client=client,
        client_department_id=standing.department_id,
    )
