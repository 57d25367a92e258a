"""Roles: named bundles of catalogue entitlements; the built-in ones are protected."""

import uuid
from collections.abc import Sequence
from typing import Any

from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session

from app.access import service as access_service
from app.access.entitlements import BUILTIN_ROLES, Entitlement
from app.access.errors import (
    BuiltinRoleProtected,
    NameTaken,
    RoleNotFound,
    SelfChangeForbidden,
    StillReferenced,
)
from app.access.models import Role, user_roles
from app.access.principal import Principal
from app.audit import service as audit_service
from app.core.pagination import PageParams, paginate
from app.core.types import name_key

SORTABLE = {"created_at": Role.created_at, "name": Role.name}

# What each built-in role is for: it can never lose these.
DEFINING: dict[str, frozenset[str]] = {
    "administrator": frozenset(BUILTIN_ROLES["administrator"][1]),
    "signer": frozenset({Entitlement.DOCUMENTS_SIGN.value}),
    "auditor": frozenset({Entitlement.AUDIT_READ.value}),
    "certificate-manager": frozenset({Entitlement.CERTIFICATES_WRITE.value}),
}


def get_role(session: Session, role_id: uuid.UUID) -> Role:
    """Raises: RoleNotFound."""
    role = session.get(Role, role_id)
    if role is None:
        raise RoleNotFound(f"No role with id {role_id}.")
    return role


def list_roles(
    session: Session, *, params: PageParams, q: str | None
) -> tuple[Sequence[Role], int]:
    statement: Select[Any] = select(Role)
    if q:
        statement = statement.where(func.lower(Role.name).like(f"%{q.lower()}%"))
    return paginate(session, statement, params, sortable=SORTABLE, tiebreaker=Role.id)


def _check_name_free(
    session: Session, name: str, *, other_than: uuid.UUID | None = None
) -> None:
    statement = select(Role.id).where(Role.name_key == name_key(name))
    if other_than is not None:
        statement = statement.where(Role.id != other_than)
    if session.scalars(statement).first() is not None:
        raise NameTaken(f"A role named '{name}' exists.")


def create_role(
    session: Session,
    principal: Principal,
    *,
    name: str,
    description: str,
    entitlements: Sequence[str],
) -> Role:
    """Raises: NameTaken, PrivilegeEscalation (entitlements the caller does not hold)."""
    granted = sorted(set(entitlements))
    access_service.check_grantable(principal, granted, "A role cannot get")
    _check_name_free(session, name)
    role = Role(name=name, description=description, entitlements=granted)
    session.add(role)
    session.flush()
    _audit(
        session,
        principal,
        "role.created",
        role,
        {"name": name, "entitlements": granted},
    )
    return role


def update_role(
    session: Session, principal: Principal, *, role: Role, changes: dict[str, Any]
) -> Role:
    """Change name, description or entitlements; holders get the change on their next request.

    A non-administrator changes neither a role it holds (a client: its owner)
    nor one holding entitlements beyond its own.

    Raises:
        SelfChangeForbidden: a role the caller holds.
        BuiltinRoleProtected: renaming a built-in role or removing its defining entitlements.
        PrivilegeEscalation: the role, or the entitlements added or removed, beyond the caller's.
        NameTaken.
    """
    if not principal.is_administrator:
        _check_not_held(session, principal, role)
        access_service.check_grantable(principal, role.entitlements, "This role holds")
    if changes.get("entitlements") is not None:
        new = set(changes["entitlements"])
        old = set(role.entitlements)
        access_service.check_grantable(principal, new ^ old, "Cannot change")
        if role.is_builtin and DEFINING.get(role.name, frozenset()) - new:
            missing = sorted(DEFINING[role.name] - new)
            raise BuiltinRoleProtected(
                f"The built-in role '{role.name}' must keep {', '.join(missing)}."
            )
        changes["entitlements"] = sorted(new)
    if changes.get("name") is not None and changes["name"] != role.name:
        if role.is_builtin:
            raise BuiltinRoleProtected(
                f"The built-in role '{role.name}' cannot be renamed."
            )
        _check_name_free(session, changes["name"], other_than=role.id)
    before = {field: _plain(getattr(role, field)) for field in changes}
    for field, value in changes.items():
        if value is not None:
            setattr(role, field, value)
    session.flush()
    after = {field: _plain(getattr(role, field)) for field in changes}
    changed = [field for field in changes if before[field] != after[field]]
    _audit(
        session,
        principal,
        "role.updated",
        role,
        {
            "before": {f: before[f] for f in changed},
            "after": {f: after[f] for f in changed},
        },
    )
    return role


def delete_role(session: Session, principal: Principal, *, role: Role) -> None:
    """Raises: BuiltinRoleProtected, StillReferenced (users still hold it)."""
    if role.is_builtin:
        raise BuiltinRoleProtected(
            f"The built-in role '{role.name}' cannot be deleted."
        )
    access_service.check_grantable(
        principal, role.entitlements, "Cannot delete a role with"
    )
    holders = session.scalar(
        select(func.count())
        .select_from(user_roles)
        .where(user_roles.c.role_id == role.id)
    )
    if holders:
        raise StillReferenced(
            f"{holders} users hold the role '{role.name}'; take it from them first.",
            extra={"remaining": {"users": holders}},
        )
    _audit(session, principal, "role.deleted", role, {"name": role.name})
    session.delete(role)
    session.flush()


def _check_not_held(session: Session, principal: Principal, role: Role) -> None:
    """Raises: SelfChangeForbidden."""
    holder = principal.acting_user_id
    held = holder is not None and session.scalar(
        select(user_roles.c.role_id).where(
            user_roles.c.user_id == holder, user_roles.c.role_id == role.id
        )
    )
    if held:
        raise SelfChangeForbidden(
            f"You hold the role '{role.name}': another administrator must change it."
        )


def _plain(value: Any) -> Any:
    return sorted(value) if isinstance(value, list) else value


def _audit(
    session: Session,
    principal: Principal,
    action: str,
    role: Role,
    details: dict[str, Any],
) -> None:
    audit_service.record(
        session,
        actor=principal.actor,
        action=action,
        resource_type="role",
        resource_id=role.id,
        details=details,
    )
