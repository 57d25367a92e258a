"""Signing profiles: create, list, replace, delete (audited), and look up by name for sign requests."""

import uuid
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session

from app.access.principal import Principal
from app.audit import service as audit_service
from app.core.pagination import PageParams, paginate
from app.signing_profiles.errors import (
    SigningProfileNameTaken,
    SigningProfileNotFound,
    UnknownSigningProfile,
)
from app.signing_profiles.models import SigningProfile
from app.signing_profiles.schemas import SigningProfileIn

SORTABLE = {
    "created_at": SigningProfile.created_at,
    "updated_at": SigningProfile.updated_at,
    "name": SigningProfile.name,
}


def create_profile(
    session: Session, principal: Principal, body: SigningProfileIn
) -> SigningProfile:
    """Raises SigningProfileNameTaken (409)."""
    _check_name_free(session, body.name)
    values = body.model_dump(mode="json")
    profile = SigningProfile(**values)
    session.add(profile)
    session.flush()
    _audit(session, principal, "signing_profile.created", profile, values)
    return profile


def replace_profile(
    session: Session,
    principal: Principal,
    profile: SigningProfile,
    body: SigningProfileIn,
) -> SigningProfile:
    """Replace every option; audited with the changed ones. Raises SigningProfileNameTaken (409)."""
    if body.name != profile.name:
        _check_name_free(session, body.name)
    after = body.model_dump(mode="json")
    before = {key: getattr(profile, key) for key in after}
    changed = sorted(key for key in after if before[key] != after[key])
    for key in changed:
        setattr(profile, key, after[key])
    session.flush()
    _audit(
        session,
        principal,
        "signing_profile.updated",
        profile,
        {
            "before": {key: before[key] for key in changed},
            "after": {key: after[key] for key in changed},
        },
    )
    return profile


def delete_profile(
    session: Session, principal: Principal, profile: SigningProfile
) -> None:
    """Sign requests and pending batch items naming it are refused afterwards (422)."""
    _audit(
        session, principal, "signing_profile.deleted", profile, {"name": profile.name}
    )
    session.delete(profile)
    session.flush()


def get_profile(session: Session, profile_id: uuid.UUID) -> SigningProfile:
    """Raises SigningProfileNotFound (404)."""
    profile = session.get(SigningProfile, profile_id)
    if profile is None:
        raise SigningProfileNotFound(f"No signing profile with id {profile_id}.")
    return profile


def profile_named(session: Session, name: str) -> SigningProfile:
    """The profile a sign request names. Raises UnknownSigningProfile (422)."""
    profile = session.scalars(
        select(SigningProfile).where(SigningProfile.name == name)
    ).one_or_none()
    if profile is None:
        raise UnknownSigningProfile(f"No signing profile is named '{name}'.")
    return profile


def list_profiles(
    session: Session, *, params: PageParams, q: str | None
) -> tuple[Sequence[SigningProfile], int]:
    statement: Select[Any] = select(SigningProfile)
    if q:
        statement = statement.where(
            func.lower(SigningProfile.name).like(f"%{q.lower()}%")
        )
    return paginate(
        session,
        statement,
        params,
        sortable=SORTABLE,
        default_sort="name",
        tiebreaker=SigningProfile.id,
    )


def all_profiles(session: Session) -> Sequence[SigningProfile]:
    """Every profile, by name (a short list: administrators write them)."""
    return session.scalars(select(SigningProfile).order_by(SigningProfile.name)).all()


def _check_name_free(session: Session, name: str) -> None:
    taken = session.scalar(select(SigningProfile.id).where(SigningProfile.name == name))
    if taken is not None:
        raise SigningProfileNameTaken(
            f"A signing profile named '{name}' exists (id {taken})."
        )


def _audit(
    session: Session,
    principal: Principal,
    action: str,
    profile: SigningProfile,
    details: dict[str, Any],
) -> None:
    audit_service.record(
        session,
        actor=principal.actor,
        action=action,
        resource_type="signing_profile",
        resource_id=profile.id,
        details=details,
    )
