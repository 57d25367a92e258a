from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends

from app.access.entitlements import Entitlement
from app.access.policy import require
from app.access.principal import Principal
from app.core.deps import SessionDep, SettingsDep
from app.core.errors import problem_responses
from app.core.routing import AppRoute
from app.settings import service as settings_service
from app.settings.schemas import (
    DocumentSettings,
    PasswordPolicy,
    SecuritySettings,
    SigningSettings,
)

router = APIRouter(prefix="/api/v1/settings", tags=["settings"], route_class=AppRoute)

ReadPrincipal = Annotated[Principal, Depends(require(Entitlement.SETTINGS_READ))]
WritePrincipal = Annotated[Principal, Depends(require(Entitlement.SETTINGS_WRITE))]
MergePatch = Annotated[
    dict[str, Any],
    Body(
        media_type="application/merge-patch+json",
        description="RFC 7396: the members given replace the section's, objects merge, null sets a member back to its default; application/json is taken too.",
    ),
]


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


@router.patch("/password-policy", responses=problem_responses(401, 403, 415, 422))
def update_password_policy(
    body: MergePatch,
    principal: WritePrincipal,
    session: SessionDep,
) -> PasswordPolicy:
    """Change some of the password policy (RFC 7396 merge patch; PUT replaces it whole)."""
    merged = settings_service.patched_section(
        settings_service.password_policy(session), body
    )
    return settings_service.put_section(
        session,
        principal,
        name=settings_service.PASSWORD_POLICY,
        value=merged,
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


@router.patch("/security", responses=problem_responses(401, 403, 415, 422))
def update_security_settings(
    body: MergePatch,
    principal: WritePrincipal,
    session: SessionDep,
) -> SecuritySettings:
    """Change some security settings (RFC 7396 merge patch; PUT replaces them whole)."""
    merged = settings_service.patched_section(settings_service.security(session), body)
    return settings_service.put_section(
        session,
        principal,
        name=settings_service.SECURITY,
        value=merged,
    )


@router.get("/signing", responses=problem_responses(401, 403))
def read_signing_settings(
    _principal: ReadPrincipal, session: SessionDep
) -> SigningSettings:
    """Default level, TSA, hash algorithm, default appearance, extra trust roots for validation."""
    return settings_service.signing(session)


@router.put("/signing", responses=problem_responses(401, 403, 415, 422))
def replace_signing_settings(
    body: SigningSettings, principal: WritePrincipal, session: SessionDep
) -> SigningSettings:
    """Replace the signing settings; the next sign or verify request uses them. 422 `invalid_trust_root` for an entry that is not one PEM certificate."""
    return settings_service.put_section(
        session,
        principal,
        name=settings_service.SIGNING,
        value=settings_service.checked_signing(body),
    )


@router.patch("/signing", responses=problem_responses(401, 403, 415, 422))
def update_signing_settings(
    body: MergePatch,
    principal: WritePrincipal,
    session: SessionDep,
) -> SigningSettings:
    """Change some signing settings (RFC 7396 merge patch; PUT replaces them whole)."""
    merged = settings_service.patched_section(settings_service.signing(session), body)
    return settings_service.put_section(
        session,
        principal,
        name=settings_service.SIGNING,
        value=settings_service.checked_signing(merged),
    )


@router.get("/documents", responses=problem_responses(401, 403))
def read_document_settings(
    _principal: ReadPrincipal, session: SessionDep
) -> DocumentSettings:
    """Upload size limit and content retention (null: the server setting / keep for ever)."""
    return settings_service.documents(session)


@router.put("/documents", responses=problem_responses(401, 403, 415, 422))
def replace_document_settings(
    body: DocumentSettings,
    principal: WritePrincipal,
    session: SessionDep,
    settings: SettingsDep,
) -> DocumentSettings:
    """Replace the document settings. 422 `upload_limit_above_server_cap` when the limit exceeds SIGNVAULT_MAX_UPLOAD_BYTES."""
    return settings_service.put_section(
        session,
        principal,
        name=settings_service.DOCUMENTS,
        value=settings_service.checked_documents(body, settings),
    )


@router.patch("/documents", responses=problem_responses(401, 403, 415, 422))
def update_document_settings(
    body: MergePatch,
    principal: WritePrincipal,
    session: SessionDep,
    settings: SettingsDep,
) -> DocumentSettings:
    """Change some document settings (RFC 7396 merge patch; PUT replaces them whole)."""
    merged = settings_service.patched_section(settings_service.documents(session), body)
    return settings_service.put_section(
        session,
        principal,
        name=settings_service.DOCUMENTS,
        value=settings_service.checked_documents(merged, settings),
    )
