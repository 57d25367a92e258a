"""Users as needed to log in, and the bootstrap administrator (administration is issue #3)."""

import secrets

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.access.models import Role, User, UserStatus
from app.audit import service as audit_service
from app.audit.service import SYSTEM, Actor
from app.core.errors import Conflict, NotFound
from app.core.security import PasswordHasher
from app.core.types import utcnow
from app.license import service as license_service
from app.license.service import Capacity

ADMINISTRATOR_ROLE = "administrator"


def get_role_by_name(session: Session, name: str) -> Role:
    """Raises: NotFound."""
    role = session.scalars(select(Role).where(Role.name == name)).one_or_none()
    if role is None:
        raise NotFound(f"No role named '{name}'.")
    return role


def create_user(
    session: Session,
    hasher: PasswordHasher,
    *,
    actor: Actor,
    username: str,
    password: str,
    roles: list[Role],
    email: str | None = None,
    full_name: str = "",
) -> User:
    """Raises: Conflict if the username is taken (case-insensitively); LicenseRefusal
    beyond the licence's user limit (the first user of an empty database is exempt).
    """
    license_service.check_capacity(session, Capacity.USERS, actor=actor)
    key = username.strip().lower()
    if (
        session.scalars(select(User.id).where(User.username_key == key)).first()
        is not None
    ):
        raise Conflict(f"The username '{username}' is taken.")
    user = User(
        username=username.strip(),
        username_key=key,
        email=email,
        full_name=full_name,
        password_hash=hasher.hash(password),
        status=UserStatus.ACTIVE,
        password_changed_at=utcnow(),
        roles=roles,
    )
    session.add(user)
    session.flush()
    audit_service.record(
        session,
        actor=actor,
        action="user.created",
        resource_type="user",
        resource_id=user.id,
        details={"username": user.username, "roles": [role.name for role in roles]},
    )
    return user


def bootstrap_admin(
    session: Session, hasher: PasswordHasher, *, username: str, password: str | None
) -> tuple[User, str | None] | None:
    """On an empty database, create the administrator; returns it and the generated password, if any.

    Returns None when users exist already.
    """
    if session.scalar(select(func.count()).select_from(User)):
        return None
    generated = None if password else secrets.token_urlsafe(18)
    user = create_user(
        session,
        hasher,
        actor=SYSTEM,
        username=username,
        password=password or generated or "",
        roles=[get_role_by_name(session, ADMINISTRATOR_ROLE)],
        full_name="Administrator",
    )
    return user, generated
