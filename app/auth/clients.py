"""OAuth2 machine clients: created with a one-time secret, entitlements within their owner's.

Bounded delegation: a client's owner is the user who created it (for a client
created by a client, that client's owner), and it acts with its grant capped by
what its owner holds now (auth.service.client_standing). A non-administrator
sees only the clients it owns or that belong to its department, and changes,
rotates, disables, enables or deletes one only when the client's grant is
within its own entitlements: otherwise it could take the secret of a more
powerful client and act as it. Only an administrator transfers a client.
"""

import secrets
import uuid
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Select, false, func, select
from sqlalchemy.orm import Session, selectinload

from app.access import service as access_service
from app.access.entitlements import ALL
from app.access.errors import DepartmentOutOfScope
from app.access.models import Department, User, UserStatus
from app.access.principal import Principal
from app.audit import service as audit_service
from app.auth.errors import AdministratorRequired, ClientNotFound, EntitlementEscalation
from app.auth.models import ApiClient, ClientStatus
from app.core.errors import InvalidInput
from app.core.pagination import PageParams, paginate
from app.core.security import new_secret, secret_digest
from app.core.types import utcnow

# Fields a PATCH may set to null (to remove an expiry, or the department).
NULLABLE_FIELDS = frozenset({"expires_at", "department_id"})

SORTABLE = {
    "created_at": ApiClient.created_at,
    "name": ApiClient.name,
    "client_id": ApiClient.client_id,
    "last_used_at": ApiClient.last_used_at,
    "expires_at": ApiClient.expires_at,
}


def _check_grantable(principal: Principal, entitlements: Iterable[str]) -> list[str]:
    wanted = sorted(set(entitlements))
    beyond = [e for e in wanted if not principal.has(e)]
    if beyond:
        raise EntitlementEscalation(
            f"A client cannot get entitlements its creator does not hold: {', '.join(beyond)}.",
            extra={"entitlements": beyond},
        )
    return wanted


def _check_manageable(principal: Principal, client: ApiClient) -> None:
    """Whoever holds a client's secret acts as it: only a holder of its whole grant manages it.

    Raises:
        PrivilegeEscalation: naming the grant's entitlements beyond the caller's.
    """
    access_service.check_grantable(principal, client.entitlements, "This client holds")


def visible_clients(statement: Select[Any], principal: Principal) -> Select[Any]:
    """An administrator sees every client; others their own (or their owner's) and their department's."""
    if principal.is_administrator:
        return statement
    owner_id = principal.acting_user_id
    mine = ApiClient.created_by_id == owner_id if owner_id is not None else false()
    if principal.department_id is None:
        return statement.where(mine)
    return statement.where(mine | (ApiClient.department_id == principal.department_id))


def _check_expiry(expires_at: datetime | None) -> None:
    if expires_at is not None and expires_at <= utcnow():
        raise InvalidInput(
            "expires_at must be in the future.",
            invalid_params=[
                {"name": "expires_at", "in": "body", "reason": "must be in the future"}
            ],
        )


def _check_department(
    session: Session, principal: Principal, department_id: uuid.UUID | None
) -> None:
    """A client's department scopes its documents and certificates: a manager places it only in its own.

    Raises:
        InvalidInput: no such department.
        DepartmentOutOfScope: a non-administrator names another department.
    """
    if department_id is None:
        return
    if session.get(Department, department_id) is None:
        raise InvalidInput(
            f"No department {department_id}.",
            invalid_params=[
                {"name": "department_id", "in": "body", "reason": "does not exist"}
            ],
        )
    if not principal.is_administrator and department_id != principal.department_id:
        raise DepartmentOutOfScope("You place API clients only in your own department.")


def create_client(
    session: Session,
    principal: Principal,
    *,
    name: str,
    description: str,
    entitlements: Sequence[str],
    expires_at: datetime | None,
    department_id: uuid.UUID | None,
) -> tuple[ApiClient, str]:
    """Create a client; returns it with its secret, which is stored only as a hash.

    The client's owner is the calling user, or the calling client's owner; it
    works in the department given (the caller's own unless it is an
    administrator), or none.

    Raises:
        EntitlementEscalation: an entitlement the creator does not hold.
        InvalidInput: an expiry in the past, or an unknown department.
        DepartmentOutOfScope: a department other than a non-administrator's own.
    """
    granted = _check_grantable(principal, entitlements)
    _check_expiry(expires_at)
    _check_department(session, principal, department_id)
    secret = new_secret()
    client = ApiClient(
        client_id="sv-" + secrets.token_hex(10),
        name=name,
        description=description,
        secret_digest=secret_digest(secret),
        entitlements=granted,
        expires_at=expires_at,
        created_by_id=principal.acting_user_id,
        department_id=department_id,
    )
    session.add(client)
    session.flush()
    _audit(
        session,
        principal,
        "client.created",
        client,
        {
            "name": name,
            "entitlements": granted,
            "client_id": client.client_id,
            "department_id": str(department_id) if department_id else None,
        },
    )
    return client, secret


def list_clients(
    session: Session,
    principal: Principal,
    *,
    params: PageParams,
    status: Sequence[ClientStatus],
    q: str | None,
) -> tuple[Sequence[ApiClient], int]:
    """The clients the principal may see."""
    statement: Select[Any] = visible_clients(select(ApiClient), principal)
    if status:
        statement = statement.where(ApiClient.status.in_(status))
    if q:
        pattern = f"%{q.lower()}%"
        statement = statement.where(
            func.lower(ApiClient.name).like(pattern)
            | func.lower(ApiClient.client_id).like(pattern)
        )
    return paginate(
        session, statement, params, sortable=SORTABLE, tiebreaker=ApiClient.id
    )


def get_client(
    session: Session, principal: Principal, client_id: uuid.UUID
) -> ApiClient:
    """Raises: ClientNotFound (also for one the principal may not see)."""
    client: ApiClient | None = session.scalars(
        visible_clients(select(ApiClient), principal).where(ApiClient.id == client_id)
    ).one_or_none()
    if client is None:
        raise ClientNotFound(f"No API client with id {client_id}.")
    return client


def update_client(
    session: Session,
    principal: Principal,
    *,
    client: ApiClient,
    changes: dict[str, Any],
) -> ApiClient:
    """Apply the given fields; `expires_at: null` removes the expiry, `department_id: null` the department.

    Raises:
        PrivilegeEscalation: the client's grant is beyond the caller's.
        EntitlementEscalation: new entitlements beyond the caller's.
        InvalidInput: an expiry in the past, an unknown department.
        DepartmentOutOfScope: a department other than a non-administrator's own.
    """
    _check_manageable(principal, client)
    if "entitlements" in changes and changes["entitlements"] is not None:
        changes["entitlements"] = _check_grantable(principal, changes["entitlements"])
    if "expires_at" in changes:
        _check_expiry(changes["expires_at"])
    if "department_id" in changes:
        _check_department(session, principal, changes["department_id"])
    before = {field: _jsonable(getattr(client, field)) for field in changes}
    for field, value in changes.items():
        if value is None and field not in NULLABLE_FIELDS:
            continue
        setattr(client, field, value)
    after = {field: _jsonable(getattr(client, field)) for field in changes}
    _audit(
        session, principal, "client.updated", client, {"before": before, "after": after}
    )
    return client


def rotate_secret(session: Session, principal: Principal, *, client: ApiClient) -> str:
    """Raises: PrivilegeEscalation (the client holds more than the caller)."""
    _check_manageable(principal, client)
    secret = new_secret()
    client.secret_digest = secret_digest(secret)
    client.secret_rotated_at = utcnow()
    _audit(session, principal, "client.secret_rotated", client, {})
    return secret


def set_status(
    session: Session, principal: Principal, *, client: ApiClient, status: ClientStatus
) -> ApiClient:
    """Disable or enable; a disabled client's tokens stop working on their next use.

    Raises: PrivilegeEscalation (the client holds more than the caller).
    """
    _check_manageable(principal, client)
    if client.status != status:
        client.status = status
        action = (
            "client.disabled" if status == ClientStatus.DISABLED else "client.enabled"
        )
        _audit(session, principal, action, client, {})
    return client


def delete_client(session: Session, principal: Principal, *, client: ApiClient) -> None:
    """Raises: PrivilegeEscalation (the client holds more than the caller)."""
    _check_manageable(principal, client)
    _audit(
        session,
        principal,
        "client.deleted",
        client,
        {"name": client.name, "client_id": client.client_id},
    )
    session.delete(client)
    session.flush()


def transfer_client(
    session: Session, principal: Principal, *, client: ApiClient, owner_id: uuid.UUID
) -> ApiClient:
    """Give the client a new owner (an administrator's act), capping its grant by the owner's roles.

    The client keeps its department if the new owner is an administrator or
    belongs to it, and moves to the new owner's department otherwise. This is
    how a client whose owner was deleted or disabled works again.

    Raises:
        AdministratorRequired: the caller is not an administrator.
        InvalidInput: no such user, or a disabled one.
    """
    if not principal.is_administrator:
        raise AdministratorRequired("Only an administrator may transfer an API client.")
    owner = session.scalars(
        select(User).where(User.id == owner_id).options(selectinload(User.roles))
    ).one_or_none()
    if owner is None or owner.status == UserStatus.DISABLED:
        raise InvalidInput(
            f"No active user {owner_id}.",
            invalid_params=[
                {"name": "owner_id", "in": "body", "reason": "not an active user"}
            ],
        )
    before = _ownership(client)
    client.created_by_id = owner.id
    if not owner_reaches_department(owner, client.department_id):
        client.department_id = owner.department_id
    client.entitlements = sorted(set(client.entitlements) & owner.entitlements)
    session.flush()
    _audit(
        session,
        principal,
        "client.transferred",
        client,
        {"before": before, "after": _ownership(client)},
    )
    return client


def owner_reaches_department(owner: User, department_id: uuid.UUID | None) -> bool:
    """Whether a client of this owner may work in the department: an administrator's reach every one."""
    return (
        department_id is None
        or owner.department_id == department_id
        or owner.entitlements >= ALL
    )


def _ownership(client: ApiClient) -> dict[str, Any]:
    return {
        "owner_id": str(client.created_by_id) if client.created_by_id else None,
        "department_id": str(client.department_id) if client.department_id else None,
        "entitlements": sorted(client.entitlements),
    }


def _audit(
    session: Session,
    principal: Principal,
    action: str,
    client: ApiClient,
    details: dict[str, Any],
) -> None:
    audit_service.record(
        session,
        actor=principal.actor,
        action=action,
        resource_type="api_client",
        resource_id=client.id,
        details=details,
    )


def _jsonable(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, list):
        return list(value)
    return value.value if isinstance(value, ClientStatus) else value
