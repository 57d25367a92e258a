"""The one place authorisation is declared: `require(...)` on every protected route."""

from typing import Annotated, TypeVar

from fastapi import Depends, Request
from fastapi.security import OAuth2PasswordBearer
from sqlalchemy import Select

from app.access.entitlements import Entitlement
from app.access.principal import Principal
from app.audit import service as audit_service
from app.audit.service import Outcome
from app.auth import service as auth_service
from app.core.deps import SessionDep
from app.core.errors import Forbidden, NotAuthenticated
from app.documents.models import Document

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
    """

    def __init__(self, entitlement: Entitlement | None) -> None:
        self.entitlement = entitlement

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
        principal = auth_service.principal_from_access_token(
            session, request.app.state.token_keys, token
        )
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


def require(entitlement: Entitlement | None) -> Require:
    return Require(entitlement)


AuthenticatedDep = Annotated[Principal, Depends(require(None))]


def visible_documents(statement: Select[_T], principal: Principal) -> Select[_T]:
    """Documents a principal may see: its own, its department's, or all for an administrator."""
    if principal.is_administrator:
        return statement
    mine = (Document.owner_kind == principal.kind) & (Document.owner_id == principal.id)
    if principal.department_id is None:
        return statement.where(mine)
    return statement.where(mine | (Document.department_id == principal.department_id))
