"""/api/v1/clients: machine clients, their one-time secrets, and their guard rails."""

import base64
from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from app.access.models import Role
from app.auth.models import ApiClient
from app.core.security import PasswordHasher
from app.core.types import utcnow
from tests.factories import assert_problem, audit_events, bearer, login, make_user

CLIENTS = "/api/v1/clients"


def token_for(client: TestClient, client_id: str, secret: str) -> Any:
    auth = base64.b64encode(f"{client_id}:{secret}".encode()).decode()
    return client.post(
        "/api/v1/auth/token",
        data={"grant_type": "client_credentials"},
        headers={"Authorization": f"Basic {auth}"},
    )


@pytest.fixture
def created(client: TestClient, admin_headers: dict[str, str]) -> dict[str, Any]:
    response = client.post(
        CLIENTS,
        json={
            "name": "erp",
            "description": "ERP invoices",
            "entitlements": ["documents:sign", "documents:read"],
        },
        headers=admin_headers,
    )
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


def test_create_returns_the_secret_once_and_stores_only_a_hash(
    client: TestClient,
    admin_headers: dict[str, str],
    created: dict[str, Any],
    session_factory: sessionmaker[Session],
) -> None:
    secret = created["client_secret"]
    assert created["client_id"].startswith("sv-")
    assert created["entitlements"] == ["documents:read", "documents:sign"]
    assert created["status"] == "active"
    shown = client.get(f"{CLIENTS}/{created['id']}", headers=admin_headers)
    assert shown.status_code == 200
    assert "client_secret" not in shown.json()
    assert secret not in shown.text
    assert secret not in client.get(CLIENTS, headers=admin_headers).text
    with session_factory() as session:
        stored = session.scalars(select(ApiClient)).one()
        assert secret not in (
            stored.secret_digest,
            stored.client_id,
            stored.description,
        )
    for event in audit_events(session_factory):
        assert secret not in str(event.details)
    [event] = audit_events(session_factory, "client.created")
    assert event.resource_id == created["id"]


def test_unknown_entitlement_is_422(
    client: TestClient, admin_headers: dict[str, str]
) -> None:
    response = client.post(
        CLIENTS,
        json={"name": "x", "entitlements": ["documents:fly"]},
        headers=admin_headers,
    )
    body = assert_problem(response, 422, "validation_failed")
    assert body["invalid_params"][0]["name"] == "entitlements.0"


def test_expiry_in_the_past_is_422(
    client: TestClient, admin_headers: dict[str, str]
) -> None:
    past = (utcnow() - timedelta(days=1)).isoformat()
    response = client.post(
        CLIENTS,
        json={"name": "x", "entitlements": ["documents:read"], "expires_at": past},
        headers=admin_headers,
    )
    assert_problem(response, 422, "validation_failed")


def test_a_client_cannot_get_entitlements_its_creator_lacks(
    client: TestClient,
    session_factory: sessionmaker[Session],
    hasher: PasswordHasher,
    admin_headers: dict[str, str],
) -> None:
    # a client manager with clients:write but not users:write (roles get their API in issue #3)
    with session_factory.begin() as session:
        session.add(
            Role(
                name="client-manager",
                description="",
                entitlements=["clients:read", "clients:write", "documents:read"],
            )
        )
    manager = make_user(
        session_factory, hasher, username="max", roles=("client-manager",)
    )
    headers = bearer(login(client, manager)["access_token"])
    allowed = client.post(
        CLIENTS,
        json={"name": "ok", "entitlements": ["documents:read"]},
        headers=headers,
    )
    assert allowed.status_code == 201
    refused = client.post(
        CLIENTS,
        json={"name": "no", "entitlements": ["documents:read", "users:write"]},
        headers=headers,
    )
    body = assert_problem(refused, 403, "entitlement_escalation")
    assert body["entitlements"] == ["users:write"]
    patch = client.patch(
        f"{CLIENTS}/{allowed.json()['id']}",
        json={"entitlements": ["clients:write", "users:write"]},
        headers=headers,
    )
    assert_problem(patch, 403, "entitlement_escalation")


def test_update_changes_fields_and_is_audited(
    client: TestClient,
    admin_headers: dict[str, str],
    created: dict[str, Any],
    session_factory: sessionmaker[Session],
) -> None:
    future = (utcnow() + timedelta(days=30)).isoformat()
    response = client.patch(
        f"{CLIENTS}/{created['id']}",
        json={
            "description": "changed",
            "entitlements": ["documents:read"],
            "expires_at": future,
        },
        headers=admin_headers,
    )
    assert response.status_code == 200
    body = response.json()
    assert (body["description"], body["entitlements"], body["name"]) == (
        "changed",
        ["documents:read"],
        "erp",
    )
    assert body["expires_at"].endswith("Z")
    cleared = client.patch(
        f"{CLIENTS}/{created['id']}", json={"expires_at": None}, headers=admin_headers
    )
    assert cleared.json()["expires_at"] is None
    [first, _second] = audit_events(session_factory, "client.updated")
    assert first.details["before"]["description"] == "ERP invoices"
    assert first.details["after"]["description"] == "changed"


def test_rotate_secret_replaces_the_old_one(
    client: TestClient, admin_headers: dict[str, str], created: dict[str, Any]
) -> None:
    old = created["client_secret"]
    rotated = client.post(
        f"{CLIENTS}/{created['id']}/rotate-secret", headers=admin_headers
    )
    assert rotated.status_code == 200
    new = rotated.json()["client_secret"]
    assert new != old
    assert token_for(client, created["client_id"], old).status_code == 401
    assert token_for(client, created["client_id"], new).status_code == 200


def test_disable_stops_tokens_and_enable_restores(
    client: TestClient, admin_headers: dict[str, str], created: dict[str, Any]
) -> None:
    token = token_for(client, created["client_id"], created["client_secret"]).json()[
        "access_token"
    ]
    assert (
        client.post(f"{CLIENTS}/{created['id']}/disable", headers=admin_headers).json()[
            "status"
        ]
        == "disabled"
    )
    assert client.get("/api/v1/auth/me", headers=bearer(token)).status_code == 401
    assert (
        token_for(client, created["client_id"], created["client_secret"]).status_code
        == 401
    )
    assert (
        client.post(f"{CLIENTS}/{created['id']}/enable", headers=admin_headers).json()[
            "status"
        ]
        == "active"
    )
    assert client.get("/api/v1/auth/me", headers=bearer(token)).status_code == 200


def test_expired_client_cannot_get_tokens(
    client: TestClient,
    admin_headers: dict[str, str],
    created: dict[str, Any],
    session_factory: sessionmaker[Session],
) -> None:
    with session_factory.begin() as session:
        stored = session.scalars(select(ApiClient)).one()
        stored.expires_at = utcnow() - timedelta(seconds=1)
    assert (
        token_for(client, created["client_id"], created["client_secret"]).status_code
        == 401
    )


def test_delete_removes_the_client_and_its_tokens_stop(
    client: TestClient,
    admin_headers: dict[str, str],
    created: dict[str, Any],
    session_factory: sessionmaker[Session],
) -> None:
    token = token_for(client, created["client_id"], created["client_secret"]).json()[
        "access_token"
    ]
    assert (
        client.delete(f"{CLIENTS}/{created['id']}", headers=admin_headers).status_code
        == 204
    )
    assert_problem(
        client.get(f"{CLIENTS}/{created['id']}", headers=admin_headers),
        404,
        "client_not_found",
    )
    assert client.get("/api/v1/auth/me", headers=bearer(token)).status_code == 401
    assert len(audit_events(session_factory, "client.deleted")) == 1


def test_unknown_or_malformed_id_is_404_or_422(
    client: TestClient, admin_headers: dict[str, str]
) -> None:
    assert_problem(
        client.get(
            f"{CLIENTS}/00000000-0000-0000-0000-000000000000", headers=admin_headers
        ),
        404,
        "client_not_found",
    )
    assert_problem(
        client.get(f"{CLIENTS}/not-a-uuid", headers=admin_headers),
        422,
        "validation_failed",
    )


def test_list_filters_by_status_and_text(
    client: TestClient, admin_headers: dict[str, str], created: dict[str, Any]
) -> None:
    other = client.post(
        CLIENTS,
        json={"name": "Payroll", "entitlements": ["documents:read"]},
        headers=admin_headers,
    ).json()
    client.post(f"{CLIENTS}/{other['id']}/disable", headers=admin_headers)
    disabled = client.get(f"{CLIENTS}?status=disabled", headers=admin_headers).json()
    assert [c["name"] for c in disabled["data"]] == ["Payroll"]
    both = client.get(
        f"{CLIENTS}?status=disabled&status=active", headers=admin_headers
    ).json()
    assert both["total"] == 2
    assert [
        c["name"]
        for c in client.get(f"{CLIENTS}?q=PAY", headers=admin_headers).json()["data"]
    ] == ["Payroll"]
    assert_problem(
        client.get(f"{CLIENTS}?status=sleeping", headers=admin_headers),
        422,
        "validation_failed",
    )


def test_client_with_clients_write_creates_clients_within_its_scope(
    client: TestClient, admin_headers: dict[str, str]
) -> None:
    provisioner = client.post(
        CLIENTS,
        json={"name": "prov", "entitlements": ["clients:write", "documents:read"]},
        headers=admin_headers,
    ).json()
    token = token_for(
        client, provisioner["client_id"], provisioner["client_secret"]
    ).json()["access_token"]
    ok = client.post(
        CLIENTS,
        json={"name": "child", "entitlements": ["documents:read"]},
        headers=bearer(token),
    )
    assert ok.status_code == 201
    # The child belongs to the provisioning client's owner, never to no one (uncapped).
    assert ok.json()["created_by_id"] == provisioner["created_by_id"]
    assert_problem(
        client.post(
            CLIENTS,
            json={"name": "x", "entitlements": ["users:write"]},
            headers=bearer(token),
        ),
        403,
        "entitlement_escalation",
    )
