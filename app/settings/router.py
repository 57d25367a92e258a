from typing import Annotated

from fastapi import APIRouter, Depends

from app.access.entitlements import Entitlement
from app.access.policy import require
from app.access.principal import Principal
from app.core.deps import SessionDep
from app.core.errors import problem_responses
from app.core.routing import AppRoute
from app.settings import service as settings_service
from app.settings.schemas import PasswordPolicy, SecuritySettings

router = APIRouter(prefix="/api/v1/settings", tags=["settings"], route_class=AppRoute)

ReadPrincipal = Annotated[Principal, Depends(require(Entitlement.SETTINGS_READ))]
WritePrincipal = Annotated[Principal, Depends(require(Entitlement.SETTINGS_WRITE))]


@router.get("/password-policy", responses=problem_responses(401, 403))
def read_password_policy(
    _principal: ReadPrincipal, session: SessionDep
) -> PasswordPolicy:
    """The password policy: length, character classes, history, maximum age, lockout."""
    return settings_service.password_policy(session)


@router.put("/password-policy", responses=problem_responses(401, 403, 415, 422))
def replace_password_policy(
    body: PasswordPolicy, principal: WritePrincipal, session: SessionDep
) -> PasswordPolicy:
    """Replace the password policy; it applies to the next password set and the next login."""
    return settings_service.put_section(
        session, principal, name=settings_service.PASSWORD_POLICY, value=body
    )


@router.get("/security", responses=problem_responses(401, 403))
def read_security_settings(
    _principal: ReadPrincipal, session: SessionDep
) -> SecuritySettings:
    """Token lifetimes, 2FA for administrators, rate limits (null: the server setting)."""
    return settings_service.security(session)


@router.put("/security", responses=problem_responses(401, 403, 415, 422))
def replace_security_settings(
    body: SecuritySettings, principal: WritePrincipal, session: SessionDep
) -> SecuritySettings:
    """Replace the security settings; they apply from the next request or login."""
    return settings_service.put_section(
        session, principal, name=settings_service.SECURITY, value=body
    )
