"""Bounded delegation for API clients: nobody manages or acts through a client holding more than they do."""

import uuid
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from app.access.entitlements import ALL
from app.access.models import User, UserStatus
from app.auth import service as auth_service
from app.auth.errors import ClientOwnerInactive
from app.core.security import PasswordHasher
from tests.auth.test_clients import token_for
from tests.factories import (
    Credentials,
    assert_problem,
    audit_events,
    bearer,
    make_department,
    make_role,
    make_user,
    mint_token,
)

CLIENTS = "/api/v1/clients"
MANAGER = ["clients:read", "clients:write", "documents:read"]


def make_client(
    client: TestClient, headers: dict[str, str], entitlements: list[str]
) -> dict[str, Any]:
    response = client.post(
        CLIENTS,
        json={"name": f"c-{uuid.uuid4().hex[:6]}", "entitlements": entitlements},
        headers=headers,
    )
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


def manager_in(
    session_factory: sessionmaker[Session],
    hasher: PasswordHasher,
    username: str,
    department_id: uuid.UUID | None,
    entitlements: list[str] = MANAGER,
) -> Credentials:
    make_role(session_factory, name=f"role-{username}", entitlements=entitlements)
    return make_user(
        session_factory,
        hasher,
        username=username,
        roles=(f"role-{username}",),
        department_id=department_id,
    )


def move(
    session_factory: sessionmaker[Session], user_id: uuid.UUID, department_id: uuid.UUID
) -> None:
    with session_factory.begin() as session:
        session.get_one(User, user_id).department_id = department_id


def test_client_writer_cannot_take_over_a_client_holding_more_than_they_do(
    app: FastAPI,
    client: TestClient,
    admin: Credentials,
    admin_headers: dict[str, str],
    session_factory: sessionmaker[Session],
    hasher: PasswordHasher,
) -> None:
    ops = make_department(session_factory, "ops")
    move(session_factory, admin.user_id, ops)
    almighty = make_client(client, admin_headers, sorted(ALL))
    headers = mint_token(app, manager_in(session_factory, hasher, "max", ops).user_id)
    url = f"{CLIENTS}/{almighty['id']}"
    # Same department: the manager sees it, but may not touch it.
    assert client.get(url, headers=headers).status_code == 200
    for method, path, body in [
        ("POST", "/rotate-secret", None),
        ("PATCH", "", {"description": "mine now"}),
        ("PATCH", "", {"entitlements": ["documents:read"]}),
        ("POST", "/disable", None),
        ("POST", "/enable", None),
        ("DELETE", "", None),
    ]:
        refused = client.request(method, url + path, json=body, headers=headers)
        problem = assert_problem(refused, 403, "entitlement_escalation")
        assert "users:write" in problem["entitlements"]
    # The old secret still works and the client is untouched.
    assert (
        token_for(client, almighty["client_id"], almighty["client_secret"]).status_code
        == 200
    )
    assert client.get(url, headers=admin_headers).json()["status"] == "active"


def test_clients_of_another_department_answer_as_missing(
    app: FastAPI,
    client: TestClient,
    session_factory: sessionmaker[Session],
    hasher: PasswordHasher,
) -> None:
    ops, legal = (make_department(session_factory, n) for n in ("ops", "legal"))
    owner = mint_token(app, manager_in(session_factory, hasher, "olga", legal).user_id)
    theirs = make_client(client, owner, ["documents:read"])
    assert theirs["department_id"] == str(legal)
    headers = mint_token(app, manager_in(session_factory, hasher, "max", ops).user_id)
    mine = make_client(client, headers, ["documents:read"])
    listed = client.get(CLIENTS, headers=headers).json()
    assert [c["id"] for c in listed["data"]] == [mine["id"]]
    url = f"{CLIENTS}/{theirs['id']}"
    assert_problem(client.get(url, headers=headers), 404, "client_not_found")
    assert_problem(
        client.post(f"{url}/rotate-secret", headers=headers), 404, "client_not_found"
    )
    # A manager with no department sees only the clients it owns.
    loner = mint_token(app, manager_in(session_factory, hasher, "lou", None).user_id)
    own = make_client(client, loner, ["documents:read"])
    assert [c["id"] for c in client.get(CLIENTS, headers=loner).json()["data"]] == [
        own["id"]
    ]


def test_client_of_a_deleted_owner_is_refused_until_an_administrator_transfers_it(
    app: FastAPI,
    client: TestClient,
    admin_headers: dict[str, str],
    session_factory: sessionmaker[Session],
    hasher: PasswordHasher,
) -> None:
    owner = manager_in(session_factory, hasher, "max", None)
    created = make_client(
        client, mint_token(app, owner.user_id), ["clients:read", "documents:read"]
    )
    token = token_for(client, created["client_id"], created["client_secret"]).json()[
        "access_token"
    ]
    assert client.get("/api/v1/auth/me", headers=bearer(token)).status_code == 200
    assert (
        client.delete(
            f"/api/v1/users/{owner.user_id}", headers=admin_headers
        ).status_code
        == 204
    )
    assert_problem(
        client.get("/api/v1/auth/me", headers=bearer(token)),
        401,
        "client_owner_inactive",
    )
    refused = token_for(client, created["client_id"], created["client_secret"])
    assert refused.status_code == 400
    assert refused.json()["error"] == "unauthorized_client"
    assert refused.json()["reason"] == "client_owner_inactive"
    # The new owner holds documents:read but not clients:read: the grant shrinks to it.
    bob = make_user(session_factory, hasher, username="bob", roles=("signer",))
    moved = client.post(
        f"{CLIENTS}/{created['id']}/transfer",
        json={"owner_id": str(bob.user_id)},
        headers=admin_headers,
    )
    assert moved.status_code == 200, moved.text
    assert moved.json()["created_by_id"] == str(bob.user_id)
    assert moved.json()["entitlements"] == ["documents:read"]
    [event] = audit_events(session_factory, "client.transferred")
    assert event.details["before"]["owner_id"] is None
    assert event.details["before"]["entitlements"] == ["clients:read", "documents:read"]
    assert event.details["after"] == {
        "owner_id": str(bob.user_id),
        "department_id": None,
        "entitlements": ["documents:read"],
    }
    issued = token_for(client, created["client_id"], created["client_secret"])
    assert issued.status_code == 200
    assert issued.json()["scope"] == "documents:read"


def test_client_of_a_disabled_owner_is_refused_and_works_again_once_enabled(
    app: FastAPI,
    client: TestClient,
    admin_headers: dict[str, str],
    session_factory: sessionmaker[Session],
    hasher: PasswordHasher,
) -> None:
    owner = manager_in(session_factory, hasher, "max", None)
    created = make_client(client, mint_token(app, owner.user_id), ["documents:read"])
    token = token_for(client, created["client_id"], created["client_secret"]).json()[
        "access_token"
    ]
    client.post(f"/api/v1/users/{owner.user_id}/disable", headers=admin_headers)
    assert_problem(
        client.get("/api/v1/auth/me", headers=bearer(token)),
        401,
        "client_owner_inactive",
    )
    assert (
        token_for(client, created["client_id"], created["client_secret"]).status_code
        == 400
    )
    client.post(f"/api/v1/users/{owner.user_id}/enable", headers=admin_headers)
    assert client.get("/api/v1/auth/me", headers=bearer(token)).status_code == 200


def test_transfer_is_for_administrators_and_needs_an_active_user(
    app: FastAPI,
    client: TestClient,
    admin_headers: dict[str, str],
    session_factory: sessionmaker[Session],
    hasher: PasswordHasher,
) -> None:
    owner = manager_in(session_factory, hasher, "max", None)
    headers = mint_token(app, owner.user_id)
    created = make_client(client, headers, ["documents:read"])
    url = f"{CLIENTS}/{created['id']}/transfer"
    assert_problem(
        client.post(url, json={"owner_id": str(owner.user_id)}, headers=headers),
        403,
        "administrator_required",
    )
    assert_problem(
        client.post(url, json={"owner_id": str(uuid.uuid4())}, headers=admin_headers),
        422,
        "validation_failed",
    )
    bob = make_user(session_factory, hasher, username="bob")
    client.post(f"/api/v1/users/{bob.user_id}/disable", headers=admin_headers)
    assert_problem(
        client.post(url, json={"owner_id": str(bob.user_id)}, headers=admin_headers),
        422,
        "validation_failed",
    )


def test_token_and_background_jobs_carry_only_what_the_owner_holds_now(
    app: FastAPI,
    client: TestClient,
    admin_headers: dict[str, str],
    session_factory: sessionmaker[Session],
    hasher: PasswordHasher,
) -> None:
    role_id = make_role(
        session_factory,
        name="integrator",
        entitlements=["clients:write", "documents:read", "documents:sign"],
    )
    owner = make_user(session_factory, hasher, username="dan", roles=("integrator",))
    created = make_client(
        client, mint_token(app, owner.user_id), ["documents:read", "documents:sign"]
    )
    client.patch(
        f"/api/v1/roles/{role_id}",
        json={"entitlements": ["clients:write", "documents:read"]},
        headers=admin_headers,
    )
    issued = token_for(client, created["client_id"], created["client_secret"])
    assert issued.json()["scope"] == "documents:read"
    with session_factory() as session:
        principal = auth_service.background_principal(
            session,
            kind="client",
            principal_id=uuid.UUID(created["id"]),
            scope=None,
            job="batch:test",
        )
        assert principal.entitlements == {"documents:read"}
    with session_factory.begin() as session:
        session.get_one(User, owner.user_id).status = UserStatus.DISABLED
    with session_factory() as session, pytest.raises(ClientOwnerInactive):
        auth_service.background_principal(
            session,
            kind="client",
            principal_id=uuid.UUID(created["id"]),
            scope=None,
            job="batch:test",
        )
