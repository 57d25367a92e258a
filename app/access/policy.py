"""The one place authorisation is declared: `require(...)` on every protected route."""

from typing import Annotated, TypeVar

from fastapi import Depends, Request
from fastapi.security import OAuth2PasswordBearer
from sqlalchemy import Select

from app.access import throttle
from app.access.entitlements import Entitlement
from app.access.errors import PasswordChangeRequired, TwoFactorEnrolmentRequired
from app.access.principal import Principal
from app.access.service import ADMINISTRATOR_ROLE
from app.audit import service as audit_service
from app.audit.service import Outcome
from app.auth import service as auth_service
from app.core.deps import SessionDep
from app.core.errors import Forbidden, NotAuthenticated
from app.documents.models import Document
from app.settings.schemas import SecuritySettings

_T = TypeVar("_T")

oauth2_scheme = OAuth2PasswordBearer(
    tokenUrl="/api/v1/auth/token",
    auto_error=False,
    scheme_name="OAuth2",
    description="Bearer access token: from POST /api/v1/auth/login, or the token endpoint (password or client-credentials grant).",
)


class Require:
    """Dependency: the caller must present a valid access token holding `entitlement`.

    `entitlement=None` asks only for authentication (e.g. `/auth/me`). The route-walk
    test finds instances of this class in every protected route's dependencies.
    A user who must first change their password (or enrol in 2FA) reaches only
    routes declared with `allow_pending=True`.
    Each call counts against the principal's request rate limit.
    """

    def __init__(
        self, entitlement: Entitlement | None, *, allow_pending: bool = False
    ) -> None:
        self.entitlement = entitlement
        self.allow_pending = allow_pending

    def __call__(
        self,
        request: Request,
        session: SessionDep,
        token: Annotated[str | None, Depends(oauth2_scheme)],
    ) -> Principal:
        if not token:
            raise NotAuthenticated(
                "This resource needs an access token: send 'Authorization: Bearer <token>'."
            )
        claims = auth_service.verified_claims(
            session, request.app.state.token_keys, token
        )
        section = throttle.limit_requests(
            session,
            request.app.state.sessionmaker,
            request.app.state.settings,
            bucket=f"{claims.kind}:{claims.sub}",
            limit_of=throttle.principal_limit,
        )
        principal = auth_service.principal_from_claims(session, claims)
        if not self.allow_pending:
            _refuse_pending(principal, section)
        if self.entitlement is not None and not principal.has(self.entitlement):
            audit_service.record_isolated(
                session,
                actor=principal.actor,
                action="access.denied",
                outcome=Outcome.DENIED,
                details={
                    "entitlement": self.entitlement.value,
                    "method": request.method,
                    "path": request.url.path,
                },
            )
            raise Forbidden(
                f"This action needs the entitlement '{self.entitlement.value}'."
            )
        return principal


def _refuse_pending(principal: Principal, section: SecuritySettings) -> None:
    user = principal.user
    if user is None:
        return
    if user.must_change_password:
        raise PasswordChangeRequired(
            "Change your password first: POST /api/v1/auth/password."
        )
    if (
        user.totp_seed is None
        and any(role.name == ADMINISTRATOR_ROLE for role in user.roles)
        and section.require_2fa_for_administrators
    ):
        raise TwoFactorEnrolmentRequired(
            "Administrators must enrol in two-factor authentication first: POST /api/v1/auth/2fa/setup, then /2fa/enable."
        )


def require(entitlement: Entitlement | None, *, allow_pending: bool = False) -> Require:
    return Require(entitlement, allow_pending=allow_pending)


AuthenticatedDep = Annotated[Principal, Depends(require(None))]
# About the caller itself, reachable while a password change or 2FA enrolment is pending.
SelfServiceDep = Annotated[Principal, Depends(require(None, allow_pending=True))]


def visible_documents(statement: Select[_T], principal: Principal) -> Select[_T]:
    """Documents a principal may see: its own, its department's, or all for an administrator."""
    if principal.is_administrator:
        return statement
    mine = (Document.owner_kind == principal.kind) & (Document.owner_id == principal.id)
    if principal.department_id is None:
        return statement.where(mine)
    return statement.where(mine | (Document.department_id == principal.department_id))
