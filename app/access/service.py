"""Users: creation, administration, passwords, lockout, and the guard rails around them.

Bounded delegation: a non-administrator sees and manages only the users of its
own department (without a department, only itself), places new users only in
its own department, and never changes a user holding entitlements beyond its
own. Nobody, administrators included, changes their own roles or department.
A client counts as the user who owns it for all of this.
"""

import uuid
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Select, delete, false, func, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, selectinload

from app.access import lockout, passwords
from app.access.errors import (
    DepartmentOutOfScope,
    LastAdministrator,
    PrivilegeEscalation,
    RoleNotFound,
    SelfChangeForbidden,
    StillReferenced,
    UsernameTaken,
    UserNotFound,
    WrongPassword,
)
from app.access.models import (
    Department,
    PasswordHistory,
    Role,
    User,
    UserStatus,
    user_roles,
)
from app.access.principal import Principal
from app.audit import service as audit_service
from app.audit.service import SYSTEM, Actor, ActorKind
from app.auth import service as auth_service
from app.core.crypto import EnvelopeCipher
from app.core.errors import NotFound
from app.core.pagination import PageParams, paginate
from app.core.security import PasswordHasher
from app.core.types import name_key, utcnow
from app.license import service as license_service
from app.license.service import Capacity
from app.settings import service as settings_service
from app.settings.schemas import PasswordPolicy

ADMINISTRATOR_ROLE = "administrator"

SORTABLE = {
    "created_at": User.created_at,
    "username": User.username_key,
    "email": User.email,
    "full_name": User.full_name,
    "last_login_at": User.last_login_at,
    "status": User.status,
}


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
    department: Department | None = None,
    policy: PasswordPolicy | None = None,
) -> User:
    """Create an active user; `policy`, when given, must accept the password.

    Raises:
        UsernameTaken: the username is taken (case-insensitively).
        PasswordRejected: the password breaks `policy`.
        LicenseRefusal: beyond the licence's user limit (the first user of an
            empty database is exempt).
    """
    license_service.check_capacity(session, Capacity.USERS, actor=actor)
    key = name_key(username)
    if (
        session.scalars(select(User.id).where(User.username_key == key)).first()
        is not None
    ):
        raise UsernameTaken(f"The username '{username}' is taken.")
    if policy is not None:
        passwords.check(policy, hasher, password)
    user = User(
        username=username.strip(),
        username_key=key,
        email=email,
        full_name=full_name,
        password_hash=hasher.hash(password),
        status=UserStatus.ACTIVE,
        password_changed_at=utcnow(),
        roles=roles,
        department=department,
    )
    session.add(user)
    session.flush()
    session.add(PasswordHistory(user_id=user.id, password_hash=user.password_hash))
    audit_service.record(
        session,
        actor=actor,
        action="user.created",
        resource_type="user",
        resource_id=user.id,
        details={
            "username": user.username,
            "email": email,
            "full_name": full_name,
            "department_id": str(department.id) if department else None,
            "roles": [role.name for role in roles],
        },
    )
    return user


def bootstrap_admin(
    session: Session, hasher: PasswordHasher, *, username: str, password: str | None
) -> tuple[User, str | None] | None:
    """On an empty database, create the administrator; returns it and the generated password, if any.

    A given password must meet the password policy, as for any user. A generated
    one is shown once, on a terminal or in a container log, so it must be changed
    at first login. Returns None when users exist already.

    Raises:
        PasswordRejected: the given password breaks the policy.
    """
    if session.scalar(select(func.count()).select_from(User)):
        return None
    policy = settings_service.password_policy(session)
    generated = None if password else passwords.generate(policy)
    user = create_user(
        session,
        hasher,
        actor=SYSTEM,
        username=username,
        password=password or generated or "",
        roles=[get_role_by_name(session, ADMINISTRATOR_ROLE)],
        full_name="Administrator",
        policy=policy,
    )
    user.must_change_password = generated is not None
    return user, generated


# --- reading -------------------------------------------------------------------


def visible_users(statement: Select[Any], principal: Principal) -> Select[Any]:
    """Users a principal may see and manage: all for an administrator, else its department's.

    Without a department a non-administrator sees only itself (a client, its owner).
    """
    if principal.is_administrator:
        return statement
    if principal.department_id is not None:
        return statement.where(User.department_id == principal.department_id)
    own = principal.acting_user_id
    return statement.where(User.id == own if own is not None else false())


def get_user(session: Session, principal: Principal, user_id: uuid.UUID) -> User:
    """Raises: UserNotFound (also for a user the principal may not see)."""
    user: User | None = session.scalars(
        visible_users(select(User), principal)
        .where(User.id == user_id)
        .options(selectinload(User.roles))
    ).one_or_none()
    if user is None:
        raise UserNotFound(f"No user with id {user_id}.")
    return user


def list_users(
    session: Session,
    principal: Principal,
    *,
    params: PageParams,
    department_id: uuid.UUID | None,
    role_id: uuid.UUID | None,
    status: Sequence[UserStatus],
    q: str | None,
) -> tuple[Sequence[User], int]:
    statement: Select[Any] = visible_users(
        select(User).options(selectinload(User.roles)), principal
    )
    if department_id is not None:
        statement = statement.where(User.department_id == department_id)
    if role_id is not None:
        statement = statement.where(
            User.id.in_(
                select(user_roles.c.user_id).where(user_roles.c.role_id == role_id)
            )
        )
    if status:
        statement = statement.where(User.status.in_(status))
    if q:
        pattern = f"%{q.lower()}%"
        statement = statement.where(
            or_(
                User.username_key.like(pattern),
                func.lower(User.email).like(pattern),
                func.lower(User.full_name).like(pattern),
            )
        )
    return paginate(session, statement, params, sortable=SORTABLE, tiebreaker=User.id)


def roles_by_ids(session: Session, role_ids: Iterable[uuid.UUID]) -> list[Role]:
    """Raises: RoleNotFound naming the first unknown id."""
    wanted = list(dict.fromkeys(role_ids))
    found = {
        role.id: role
        for role in session.scalars(select(Role).where(Role.id.in_(wanted)))
    }
    for role_id in wanted:
        if role_id not in found:
            raise RoleNotFound(f"No role with id {role_id}.")
    return [found[role_id] for role_id in wanted]


# --- guard rails ---------------------------------------------------------------


def check_grantable(
    principal: Principal, entitlements: Iterable[str], what: str
) -> None:
    """Nobody hands out (or takes charge of) entitlements they do not hold.

    Raises:
        PrivilegeEscalation: naming the entitlements beyond the principal's.
    """
    beyond = sorted({e for e in entitlements if not principal.has(e)})
    if beyond:
        raise PrivilegeEscalation(
            f"{what} entitlements you do not hold: {', '.join(beyond)}.",
            extra={"entitlements": beyond},
        )


def check_manageable(principal: Principal, user: User) -> None:
    """A user with entitlements beyond the caller's cannot be changed by the caller.

    Otherwise resetting an administrator's password would be a way to become one.

    Raises:
        PrivilegeEscalation
    """
    check_grantable(principal, user.entitlements, "This user holds")


def check_department_in_reach(
    principal: Principal, department_id: uuid.UUID | None
) -> None:
    """A non-administrator places users only in its own department.

    Raises:
        DepartmentOutOfScope
    """
    if principal.is_administrator:
        return
    if principal.department_id is None:
        raise DepartmentOutOfScope(
            "You belong to no department: only an administrator places users."
        )
    if department_id != principal.department_id:
        raise DepartmentOutOfScope(
            "You manage only the users of your own department.",
            extra={"department_id": str(principal.department_id)},
        )


def check_not_self(
    principal: Principal,
    user: User,
    *,
    department: Department | None,
    changes: dict[str, Any],
    roles: list[Role] | None,
) -> None:
    """Nobody, administrators included, changes their own roles or department.

    Raises:
        SelfChangeForbidden
    """
    if user.id != principal.acting_user_id:
        return
    moved = (
        "department_id" in changes
        and (department.id if department else None) != user.department_id
    )
    regranted = roles is not None and {r.id for r in roles} != set(user.role_ids)
    if moved or regranted:
        raise SelfChangeForbidden(
            "You cannot change your own roles or department; ask another administrator."
            if principal.kind == "user"
            else "A client cannot change the roles or department of the user who owns it."
        )


def ensure_an_administrator_remains(session: Session) -> None:
    """Call after flushing a change: at least one active user must hold the administrator role.

    The administrator role row is locked first, so concurrent changes on
    PostgreSQL are checked one after the other (SQLite serialises writers anyway).

    Raises:
        LastAdministrator
    """
    role = session.scalars(
        select(Role).where(Role.name == ADMINISTRATOR_ROLE).with_for_update()
    ).one()
    session.flush()
    remaining = session.scalar(
        select(func.count())
        .select_from(User)
        .join(user_roles, user_roles.c.user_id == User.id)
        .where(user_roles.c.role_id == role.id, User.status == UserStatus.ACTIVE)
    )
    if not remaining:
        raise LastAdministrator(
            "This would leave no active user with the administrator role."
        )


def _holds_admin(user: User) -> bool:
    return any(role.name == ADMINISTRATOR_ROLE for role in user.roles)


# --- administration ------------------------------------------------------------


def update_user(
    session: Session,
    principal: Principal,
    *,
    user: User,
    changes: dict[str, Any],
    roles: list[Role] | None,
    department: Department | None,
) -> User:
    """Apply `changes` (email, full_name, department_id) and, when given, a new role set.

    Raises:
        SelfChangeForbidden: the caller's own roles or department.
        PrivilegeEscalation: the user or the new roles hold entitlements beyond the caller's.
        DepartmentOutOfScope: a non-administrator moving the user out of its department.
        LastAdministrator: the change would leave no administrator.
    """
    check_not_self(principal, user, department=department, changes=changes, roles=roles)
    check_manageable(principal, user)
    before = _snapshot(user)
    for field in ("email", "full_name"):
        if field in changes:
            setattr(user, field, changes[field])
    if "department_id" in changes:
        check_department_in_reach(principal, department.id if department else None)
        user.department = department
    if roles is not None:
        check_grantable(
            principal,
            {e for role in roles for e in role.entitlements},
            "Cannot assign roles with",
        )
        was_admin = _holds_admin(user)
        user.roles = roles
        if was_admin and not _holds_admin(user):
            ensure_an_administrator_remains(session)
    session.flush()
    _audit_change(session, principal, "user.updated", user, before)
    return user


def delete_user(
    session: Session,
    principal: Principal,
    *,
    user: User,
    cipher: EnvelopeCipher | None,
) -> None:
    """Delete a user; audit entries keep their name and id, so history stays readable.

    Raises:
        PrivilegeEscalation, LastAdministrator,
        StillReferenced: other records (documents, assignments) still point at the user.
    """
    check_manageable(principal, user)
    audit_service.record(
        session,
        actor=principal.actor,
        action="user.deleted",
        resource_type="user",
        resource_id=user.id,
        details={"username": user.username, "email": user.email},
    )
    if cipher is not None:
        for blob in (user.totp_seed, user.totp_pending_seed):
            if blob is not None:
                cipher.destroy(session, blob)
    session.delete(user)
    try:
        with session.begin_nested():
            session.flush()
    except IntegrityError:
        raise StillReferenced(
            "Other records still refer to this user; disable the user instead."
        ) from None
    ensure_an_administrator_remains(session)


def set_status(
    session: Session,
    principal: Principal,
    *,
    user: User,
    status: UserStatus,
) -> User:
    """Disable (its sessions are revoked at once) or enable a user.

    Raises:
        PrivilegeEscalation, LastAdministrator, LicenseRefusal (no free seat to enable).
    """
    check_manageable(principal, user)
    if user.status == status:
        return user
    if user.status == UserStatus.DISABLED:
        # A disabled user holds no licence seat: enabling one takes a seat again.
        license_service.check_capacity(session, Capacity.USERS, actor=principal.actor)
    before = user.status
    user.status = status
    if status == UserStatus.ACTIVE:
        lockout.clear_account(session, account=user.username_key)
    session.flush()
    if status == UserStatus.DISABLED:
        ensure_an_administrator_remains(session)
        auth_service.revoke_user_sessions(
            session, user.id, reason="user_disabled", actor=principal.actor
        )
    audit_service.record(
        session,
        actor=principal.actor,
        action="user.disabled" if status == UserStatus.DISABLED else "user.enabled",
        resource_type="user",
        resource_id=user.id,
        details={"before": {"status": before.value}, "after": {"status": status.value}},
    )
    return user


def lock_user(session: Session, principal: Principal, *, user: User) -> User:
    """Lock an active user until an administrator unlocks them; their sessions end at once.

    Unlike disabling, the user keeps their licence seat. Failed logins never do this.

    Raises:
        PrivilegeEscalation, LastAdministrator.
    """
    check_manageable(principal, user)
    if user.status != UserStatus.ACTIVE:
        return user
    user.status = UserStatus.LOCKED
    session.flush()
    ensure_an_administrator_remains(session)
    auth_service.revoke_user_sessions(
        session, user.id, reason="user_locked", actor=principal.actor
    )
    audit_service.record(
        session,
        actor=principal.actor,
        action="user.locked",
        resource_type="user",
        resource_id=user.id,
        details={"reason": "by_administrator"},
    )
    return user


def unlock_user(session: Session, actor: Actor, *, user: User, reason: str) -> bool:
    """Lift an administrator's lock and forget every failed login against the account.

    Addresses locked out of it may try again at once. Returns whether anything was lifted.
    """
    changed = session.execute(
        update(User)
        .where(User.id == user.id, User.status == UserStatus.LOCKED)
        .values(status=UserStatus.ACTIVE)
        .execution_options(synchronize_session=False)
    ).rowcount  # type: ignore[attr-defined]
    if changed:
        session.refresh(user, ["status"])
    addresses = lockout.clear_account(session, account=user.username_key)
    if changed or addresses:
        audit_service.record(
            session,
            actor=actor,
            action="user.unlocked",
            resource_type="user",
            resource_id=user.id,
            details={"reason": reason, "addresses": addresses},
        )
    return bool(changed or addresses)


def reset_password(
    session: Session, hasher: PasswordHasher, principal: Principal, *, user: User
) -> str:
    """Give the user a random temporary password, to be changed at next login; returns it.

    Their sessions are revoked. Raises: PrivilegeEscalation.
    """
    check_manageable(principal, user)
    policy = settings_service.password_policy(session)
    temporary = passwords.generate(policy)
    _store_password(session, hasher, user, temporary, policy, temporary=True)
    auth_service.revoke_user_sessions(
        session, user.id, reason="password_reset", actor=principal.actor
    )
    audit_service.record(
        session,
        actor=principal.actor,
        action="user.password_reset",
        resource_type="user",
        resource_id=user.id,
        details={"must_change_password": True},
    )
    return temporary


def change_own_password(
    session: Session,
    hasher: PasswordHasher,
    principal: Principal,
    *,
    user: User,
    old_password: str,
    new_password: str,
) -> None:
    """Raises: WrongPassword, PasswordRejected (policy rule or recent password)."""
    if not hasher.verify(old_password, user.password_hash):
        audit_service.record_isolated(
            session,
            actor=principal.actor,
            action="user.password_changed",
            resource_type="user",
            resource_id=user.id,
            details={"reason": "wrong_old_password"},
        )
        raise WrongPassword("The current password is wrong.")
    policy = settings_service.password_policy(session)
    passwords.check(
        policy,
        hasher,
        new_password,
        field="new_password",
        previous_hashes=recent_password_hashes(session, user, policy.history),
    )
    _store_password(session, hasher, user, new_password, policy, temporary=False)
    audit_service.record(
        session,
        actor=principal.actor,
        action="user.password_changed",
        resource_type="user",
        resource_id=user.id,
    )


def recent_password_hashes(session: Session, user: User, count: int) -> list[str]:
    if count <= 0:
        return []
    return list(
        session.scalars(
            select(PasswordHistory.password_hash)
            .where(PasswordHistory.user_id == user.id)
            .order_by(PasswordHistory.created_at.desc(), PasswordHistory.id)
            .limit(count)
        )
    )


def _store_password(
    session: Session,
    hasher: PasswordHasher,
    user: User,
    password: str,
    policy: PasswordPolicy,
    *,
    temporary: bool,
) -> None:
    user.password_hash = hasher.hash(password)
    user.password_changed_at = utcnow()
    user.must_change_password = temporary
    session.add(PasswordHistory(user_id=user.id, password_hash=user.password_hash))
    session.flush()
    keep = max(policy.history, 1)
    stale = (
        select(PasswordHistory.id)
        .where(PasswordHistory.user_id == user.id)
        .order_by(PasswordHistory.created_at.desc(), PasswordHistory.id)
        .offset(keep)
    )
    session.execute(
        delete(PasswordHistory)
        .where(PasswordHistory.id.in_(list(session.scalars(stale))))
        .execution_options(synchronize_session=False)
    )


def password_expired(user: User, policy: PasswordPolicy, now: datetime) -> bool:
    if not policy.max_age_days or user.password_changed_at is None:
        return False
    return user.password_changed_at + timedelta(days=policy.max_age_days) <= now


# --- audit ---------------------------------------------------------------------

_AUDITED_FIELDS = ("email", "full_name", "department_id", "roles")


def _snapshot(user: User) -> dict[str, Any]:
    return {
        "email": user.email,
        "full_name": user.full_name,
        "department_id": str(user.department_id) if user.department_id else None,
        "roles": sorted(role.name for role in user.roles),
    }


def _audit_change(
    session: Session,
    principal: Principal,
    action: str,
    user: User,
    before: dict[str, Any],
) -> None:
    after = _snapshot(user)
    changed = [field for field in _AUDITED_FIELDS if before[field] != after[field]]
    audit_service.record(
        session,
        actor=principal.actor,
        action=action,
        resource_type="user",
        resource_id=user.id,
        details={
            "before": {field: before[field] for field in changed},
            "after": {field: after[field] for field in changed},
        },
    )


def user_actor(user: User) -> Actor:
    return Actor(ActorKind.USER, str(user.id), user.username)
