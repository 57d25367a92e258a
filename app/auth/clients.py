"""OAuth2 machine clients: created with a one-time secret, entitlements within their creator's."""

import secrets
import uuid
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session

from app.access.principal import Principal
from app.audit import service as audit_service
from app.auth.errors import ClientNotFound, EntitlementEscalation
from app.auth.models import ApiClient, ClientStatus
from app.core.errors import InvalidInput
from app.core.pagination import PageParams, paginate
from app.core.security import new_secret, secret_digest
from app.core.types import utcnow

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


def _check_expiry(expires_at: datetime | None) -> None:
    if expires_at is not None and expires_at <= utcnow():
        raise InvalidInput(
            "expires_at must be in the future.",
            invalid_params=[
                {"name": "expires_at", "in": "body", "reason": "must be in the future"}
            ],
        )


def create_client(
    session: Session,
    principal: Principal,
    *,
    name: str,
    description: str,
    entitlements: Sequence[str],
    expires_at: datetime | None,
) -> tuple[ApiClient, str]:
    """Create a client; returns it with its secret, which is stored only as a hash.

    Raises:
        EntitlementEscalation: an entitlement the creator does not hold.
        InvalidInput: an expiry in the past.
    """
    granted = _check_grantable(principal, entitlements)
    _check_expiry(expires_at)
    secret = new_secret()
    client = ApiClient(
        client_id="sv-" + secrets.token_hex(10),
        name=name,
        description=description,
        secret_digest=secret_digest(secret),
        entitlements=granted,
        expires_at=expires_at,
        created_by_id=principal.id if principal.kind == "user" else None,
    )
    session.add(client)
    session.flush()
    _audit(
        session,
        principal,
        "client.created",
        client,
        {"name": name, "entitlements": granted, "client_id": client.client_id},
    )
    return client, secret


def list_clients(
    session: Session,
    *,
    params: PageParams,
    status: Sequence[ClientStatus],
    q: str | None,
) -> tuple[Sequence[ApiClient], int]:
    statement: Select[Any] = select(ApiClient)
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


def get_client(session: Session, client_id: uuid.UUID) -> ApiClient:
    """Raises: ClientNotFound."""
    client = session.get(ApiClient, client_id)
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
    """Apply the given fields; `expires_at: null` removes the expiry.

    Raises:
        EntitlementEscalation: new entitlements beyond the caller's.
        InvalidInput: an expiry in the past.
    """
    if "entitlements" in changes and changes["entitlements"] is not None:
        changes["entitlements"] = _check_grantable(principal, changes["entitlements"])
    if "expires_at" in changes:
        _check_expiry(changes["expires_at"])
    before = {field: _jsonable(getattr(client, field)) for field in changes}
    for field, value in changes.items():
        if value is None and field != "expires_at":
            continue
        setattr(client, field, value)
    after = {field: _jsonable(getattr(client, field)) for field in changes}
    _audit(
        session, principal, "client.updated", client, {"before": before, "after": after}
    )
    return client


def rotate_secret(session: Session, principal: Principal, *, client: ApiClient) -> str:
    secret = new_secret()
    client.secret_digest = secret_digest(secret)
    client.secret_rotated_at = utcnow()
    _audit(session, principal, "client.secret_rotated", client, {})
    return secret


def set_status(
    session: Session, principal: Principal, *, client: ApiClient, status: ClientStatus
) -> ApiClient:
    """Disable or enable; a disabled client's tokens stop working on their next use."""
    if client.status != status:
        client.status = status
        action = (
            "client.disabled" if status == ClientStatus.DISABLED else "client.enabled"
        )
        _audit(session, principal, action, client, {})
    return client


def delete_client(session: Session, principal: Principal, *, client: ApiClient) -> None:
    _audit(
        session,
        principal,
        "client.deleted",
        client,
        {"name": client.name, "client_id": client.client_id},
    )
    session.delete(client)
    session.flush()


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
    if isinstance(value, list):
        return list(value)
    return value.value if isinstance(value, ClientStatus) else value
