import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Query, status

from app.access.entitlements import Entitlement
from app.access.policy import require
from app.access.principal import Principal
from app.auth import clients as clients_service
from app.auth.models import ApiClient, ClientStatus
from app.auth.schemas import (
    ClientCreate,
    ClientCreated,
    ClientRead,
    ClientSecret,
    ClientTransfer,
    ClientUpdate,
)
from app.core.deps import SessionDep
from app.core.errors import problem_responses
from app.core.pagination import Page, PageParams, page_of, page_params
from app.core.routing import AppRoute

router = APIRouter(prefix="/api/v1/clients", tags=["clients"], route_class=AppRoute)

ReadPrincipal = Annotated[Principal, Depends(require(Entitlement.CLIENTS_READ))]
WritePrincipal = Annotated[Principal, Depends(require(Entitlement.CLIENTS_WRITE))]


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    responses=problem_responses(401, 403, 415, 422),
)
def create_client(
    body: ClientCreate, principal: WritePrincipal, session: SessionDep
) -> ClientCreated:
    """Create an API client; its `client_secret` is in this response only."""
    client, secret = clients_service.create_client(
        session,
        principal,
        name=body.name,
        description=body.description,
        entitlements=[e.value for e in body.entitlements],
        expires_at=body.expires_at,
        department_id=body.department_id
        if "department_id" in body.model_fields_set
        else principal.department_id,
    )
    return ClientCreated(
        **ClientRead.model_validate(client).model_dump(), client_secret=secret
    )


@router.get(
    "", response_model=Page[ClientRead], responses=problem_responses(401, 403, 422)
)
def list_clients(
    principal: ReadPrincipal,
    session: SessionDep,
    params: Annotated[PageParams, Depends(page_params)],
    status_filter: Annotated[list[ClientStatus], Query(alias="status")] = [],  # noqa: B006 (FastAPI copies defaults)
    q: Annotated[
        str | None, Query(max_length=200, description="Part of the name or client_id.")
    ] = None,
) -> dict[str, object]:
    """List the API clients you may see: all for an administrator, else yours and your department's (filters `status`, `q`; sortable by created_at, name, client_id, last_used_at, expires_at)."""
    rows, total = clients_service.list_clients(
        session, principal, params=params, status=status_filter, q=q
    )
    return page_of(rows, total, params, ClientRead)


@router.get(
    "/{client_id}",
    response_model=ClientRead,
    responses=problem_responses(401, 403, 404),
)
def read_client(
    principal: ReadPrincipal, session: SessionDep, client_id: uuid.UUID
) -> ApiClient:
    """One API client (never its secret)."""
    return clients_service.get_client(session, principal, client_id)


@router.patch(
    "/{client_id}",
    response_model=ClientRead,
    responses=problem_responses(401, 403, 404, 415, 422),
)
def update_client(
    body: ClientUpdate,
    principal: WritePrincipal,
    session: SessionDep,
    client_id: uuid.UUID,
) -> ApiClient:
    """Change name, description, entitlements, expiry or department (`null` removes an expiry or the department); only a client whose grant you hold."""
    client = clients_service.get_client(session, principal, client_id)
    changes = body.model_dump(exclude_unset=True)
    if "entitlements" in changes and changes["entitlements"] is not None:
        changes["entitlements"] = [str(e) for e in changes["entitlements"]]
    return clients_service.update_client(
        session, principal, client=client, changes=changes
    )


@router.delete(
    "/{client_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=problem_responses(401, 403, 404),
)
def delete_client(
    principal: WritePrincipal, session: SessionDep, client_id: uuid.UUID
) -> None:
    """Delete an API client; its tokens stop working at once."""
    client = clients_service.get_client(session, principal, client_id)
    clients_service.delete_client(session, principal, client=client)


@router.post(
    "/{client_id}/rotate-secret",
    responses=problem_responses(401, 403, 404),
)
def rotate_client_secret(
    principal: WritePrincipal, session: SessionDep, client_id: uuid.UUID
) -> ClientSecret:
    """Replace the client's secret; the new one is in this response only, the old one stops working."""
    client = clients_service.get_client(session, principal, client_id)
    secret = clients_service.rotate_secret(session, principal, client=client)
    return ClientSecret(client_id=client.client_id, client_secret=secret)


@router.post(
    "/{client_id}/disable",
    response_model=ClientRead,
    responses=problem_responses(401, 403, 404),
)
def disable_client(
    principal: WritePrincipal, session: SessionDep, client_id: uuid.UUID
) -> ApiClient:
    """Disable a client: no new tokens, and its current tokens are refused."""
    client = clients_service.get_client(session, principal, client_id)
    return clients_service.set_status(
        session, principal, client=client, status=ClientStatus.DISABLED
    )


@router.post(
    "/{client_id}/enable",
    response_model=ClientRead,
    responses=problem_responses(401, 403, 404),
)
def enable_client(
    principal: WritePrincipal, session: SessionDep, client_id: uuid.UUID
) -> ApiClient:
    """Enable a disabled client."""
    client = clients_service.get_client(session, principal, client_id)
    return clients_service.set_status(
        session, principal, client=client, status=ClientStatus.ACTIVE
    )


@router.post(
    "/{client_id}/transfer",
    response_model=ClientRead,
    responses=problem_responses(401, 403, 404, 415, 422),
)
def transfer_client(
    body: ClientTransfer,
    principal: WritePrincipal,
    session: SessionDep,
    client_id: uuid.UUID,
) -> ApiClient:
    """Give the client to another active user (administrators only); its grant is capped by the new owner's entitlements."""
    client = clients_service.get_client(session, principal, client_id)
    return clients_service.transfer_client(
        session, principal, client=client, owner_id=body.owner_id
    )
