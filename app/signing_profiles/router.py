import uuid
from collections.abc import Sequence
from typing import Annotated

from fastapi import APIRouter, Depends, Query, status

from app.access.entitlements import Entitlement
from app.access.policy import require
from app.access.principal import Principal
from app.core.deps import SessionDep
from app.core.errors import problem_responses
from app.core.pagination import Page, PageParams, page_of, page_params
from app.core.routing import AppRoute
from app.signing_profiles import service as profiles_service
from app.signing_profiles.models import SigningProfile
from app.signing_profiles.schemas import (
    SigningProfileChoice,
    SigningProfileIn,
    SigningProfileRead,
)

router = APIRouter(
    prefix="/api/v1/signing-profiles", tags=["signing profiles"], route_class=AppRoute
)

ReadPrincipal = Annotated[Principal, Depends(require(Entitlement.SETTINGS_READ))]
WritePrincipal = Annotated[Principal, Depends(require(Entitlement.SETTINGS_WRITE))]
SignPrincipal = Annotated[Principal, Depends(require(Entitlement.DOCUMENTS_SIGN))]


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=SigningProfileRead,
    responses=problem_responses(401, 403, 409, 415, 422),
)
def create_signing_profile(
    body: SigningProfileIn, principal: WritePrincipal, session: SessionDep
) -> SigningProfile:
    """A named set of level, TSA, appearance and certification that sign requests name as `profile`."""
    return profiles_service.create_profile(session, principal, body)


@router.get(
    "",
    response_model=Page[SigningProfileRead],
    responses=problem_responses(401, 403, 422),
)
def list_signing_profiles(
    _principal: ReadPrincipal,
    session: SessionDep,
    params: Annotated[PageParams, Depends(page_params)],
    q: Annotated[
        str | None, Query(max_length=100, description="Part of the name.")
    ] = None,
) -> dict[str, object]:
    """Signing profiles (filter `q`; sortable by name, created_at, updated_at)."""
    rows, total = profiles_service.list_profiles(session, params=params, q=q)
    return page_of(rows, total, params, SigningProfileRead)


@router.get(
    "/choices",
    response_model=list[SigningProfileChoice],
    responses=problem_responses(401, 403),
)
def list_signing_profile_choices(
    _principal: SignPrincipal, session: SessionDep
) -> Sequence[SigningProfile]:
    """Every profile's name, description, level and certification, by name: what a signer may name as `profile`."""
    return profiles_service.all_profiles(session)


@router.get(
    "/{profile_id}",
    response_model=SigningProfileRead,
    responses=problem_responses(401, 403, 404),
)
def read_signing_profile(
    profile_id: uuid.UUID, _principal: ReadPrincipal, session: SessionDep
) -> SigningProfile:
    """One signing profile."""
    return profiles_service.get_profile(session, profile_id)


@router.put(
    "/{profile_id}",
    response_model=SigningProfileRead,
    responses=problem_responses(401, 403, 404, 409, 415, 422),
)
def replace_signing_profile(
    profile_id: uuid.UUID,
    body: SigningProfileIn,
    principal: WritePrincipal,
    session: SessionDep,
) -> SigningProfile:
    """Replace every option of a profile; the next sign request naming it uses them."""
    profile = profiles_service.get_profile(session, profile_id)
    return profiles_service.replace_profile(session, principal, profile, body)


@router.delete(
    "/{profile_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=problem_responses(401, 403, 404),
)
def delete_signing_profile(
    profile_id: uuid.UUID, principal: WritePrincipal, session: SessionDep
) -> None:
    """Delete a profile; requests naming it are refused afterwards (422 `unknown_signing_profile`)."""
    profile = profiles_service.get_profile(session, profile_id)
    profiles_service.delete_profile(session, principal, profile)
