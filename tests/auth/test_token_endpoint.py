"""The OAuth 2.0 token endpoint (RFC 6749) and token revocation (RFC 7009)."""

import base64
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from tests.factories import Credentials, audit_events, bearer, login

TOKEN = "/api/v1/auth/token"
ME = "/api/v1/auth/me"


def basic(client_id: str, secret: str) -> dict[str, str]:
    return {
        "Authorization": "Basic "
        + base64.b64encode(f"{client_id}:{secret}".encode()).decode()
    }


@pytest.fixture
def machine(client: TestClient, admin_headers: dict[str, str]) -> dict[str, Any]:
    response = client.post(
        "/api/v1/clients",
        json={"name": "erp", "entitlements": ["documents:read", "documents:sign"]},
        headers=admin_headers,
    )
    assert response.status_code == 201
    body: dict[str, Any] = response.json()
    return body


def oauth_error(response: Any, status: int, error: str) -> str:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/json"
    assert response.headers["cache-control"] == "no-store"
    body = response.json()
    assert body["error"] == error
    assert body["error_description"]
    return str(body["error_description"])


def test_client_credentials_with_http_basic(
    client: TestClient, machine: dict[str, Any], session_factory: sessionmaker[Session]
) -> None:
    response = client.post(
        TOKEN,
        data={"grant_type": "client_credentials"},
        headers=basic(machine["client_id"], machine["client_secret"]),
    )
    assert response.status_code == 200
    body = response.json()
    assert body["refresh_token"] is None
    assert body["scope"] == "documents:read documents:sign"
    me = client.get(ME, headers=bearer(body["access_token"])).json()
    assert (me["kind"], me["id"], me["name"]) == ("client", machine["id"], "erp")
    [event] = audit_events(session_factory, "auth.token_issued")
    assert (event.actor_kind, event.actor_id, event.details["grant"]) == (
        "client",
        machine["id"],
        "client_credentials",
    )


def test_client_credentials_in_the_body_with_a_narrower_scope(
    client: TestClient, machine: dict[str, Any]
) -> None:
    response = client.post(
        TOKEN,
        data={
            "grant_type": "client_credentials",
            "client_id": machine["client_id"],
            "client_secret": machine["client_secret"],
            "scope": "documents:read",
        },
    )
    assert response.json()["scope"] == "documents:read"
    me = client.get(ME, headers=bearer(response.json()["access_token"])).json()
    assert me["entitlements"] == ["documents:read"]


def test_wrong_client_secret_is_invalid_client_and_audited(
    client: TestClient, machine: dict[str, Any], session_factory: sessionmaker[Session]
) -> None:
    response = client.post(
        TOKEN,
        data={"grant_type": "client_credentials"},
        headers=basic(machine["client_id"], "wrong"),
    )
    oauth_error(response, 401, "invalid_client")
    assert response.headers["www-authenticate"].startswith("Basic")
    [event] = audit_events(session_factory, "auth.client_authentication")
    assert (event.outcome, event.actor_id, event.details["reason"]) == (
        "failure",
        machine["id"],
        "wrong_secret",
    )


def test_unknown_client_is_invalid_client(client: TestClient) -> None:
    response = client.post(
        TOKEN,
        data={
            "grant_type": "client_credentials",
            "client_id": "sv-nope",
            "client_secret": "x",
        },
    )
    oauth_error(response, 401, "invalid_client")


@pytest.mark.parametrize(
    ("scope", "part"),
    [("documents:fly", "Unknown scope"), ("clients:write", "not granted")],
)
def test_unknown_or_ungranted_scope_is_invalid_scope(
    client: TestClient, machine: dict[str, Any], scope: str, part: str
) -> None:
    response = client.post(
        TOKEN,
        data={"grant_type": "client_credentials", "scope": scope},
        headers=basic(machine["client_id"], machine["client_secret"]),
    )
    assert part in oauth_error(response, 400, "invalid_scope")


def test_password_grant_accepts_swagger_uis_empty_basic_client(
    client: TestClient, admin: Credentials
) -> None:
    response = client.post(
        TOKEN,
        data={
            "grant_type": "password",
            "username": admin.username,
            "password": admin.password,
            "scope": "",
        },
        headers={"Authorization": "Basic Og=="},
    )
    assert response.status_code == 200, response.text
    assert response.json()["refresh_token"]
    assert (
        client.get(ME, headers=bearer(response.json()["access_token"])).json()[
            "username"
        ]
        == "admin"
    )


def test_password_grant_with_wrong_password_is_invalid_grant_and_audited(
    client: TestClient, admin: Credentials, session_factory: sessionmaker[Session]
) -> None:
    response = client.post(
        TOKEN, data={"grant_type": "password", "username": "admin", "password": "nope"}
    )
    oauth_error(response, 400, "invalid_grant")
    [event] = audit_events(session_factory, "auth.login")
    assert (event.outcome, event.details["grant"]) == ("failure", "password")


def test_refresh_token_grant_rotates(client: TestClient, admin: Credentials) -> None:
    first = login(client, admin)
    response = client.post(
        TOKEN,
        data={"grant_type": "refresh_token", "refresh_token": first["refresh_token"]},
    )
    assert response.status_code == 200
    again = client.post(
        TOKEN,
        data={"grant_type": "refresh_token", "refresh_token": first["refresh_token"]},
    )
    oauth_error(again, 400, "invalid_grant")


@pytest.mark.parametrize(
    ("data", "error"),
    [
        ({}, "invalid_request"),
        ({"grant_type": "authorization_code", "code": "x"}, "unsupported_grant_type"),
        ({"grant_type": "password", "username": "admin"}, "invalid_request"),
        ({"grant_type": "refresh_token"}, "invalid_request"),
        ({"grant_type": "client_credentials"}, "invalid_client"),
    ],
)
def test_malformed_token_requests(
    client: TestClient, data: dict[str, str], error: str
) -> None:
    response = client.post(TOKEN, data=data)
    oauth_error(response, 401 if error == "invalid_client" else 400, error)


def test_json_token_request_is_invalid_request(client: TestClient) -> None:
    assert "x-www-form-urlencoded" in oauth_error(
        client.post(TOKEN, json={"grant_type": "password"}), 400, "invalid_request"
    )


def test_basic_and_body_credentials_together_are_invalid_request(
    client: TestClient, machine: dict[str, Any]
) -> None:
    response = client.post(
        TOKEN,
        data={
            "grant_type": "client_credentials",
            "client_id": machine["client_id"],
            "client_secret": machine["client_secret"],
        },
        headers=basic(machine["client_id"], machine["client_secret"]),
    )
    oauth_error(response, 400, "invalid_request")


def _client_token(client: TestClient, machine: dict[str, Any]) -> str:
    response = client.post(
        TOKEN,
        data={"grant_type": "client_credentials"},
        headers=basic(machine["client_id"], machine["client_secret"]),
    )
    return str(response.json()["access_token"])


def test_client_revokes_its_access_token(
    client: TestClient, machine: dict[str, Any], session_factory: sessionmaker[Session]
) -> None:
    token = _client_token(client, machine)
    response = client.post(
        "/api/v1/auth/revoke",
        data={"token": token, "token_type_hint": "access_token"},
        headers=basic(machine["client_id"], machine["client_secret"]),
    )
    assert (response.status_code, response.content) == (200, b"")
    assert client.get(ME, headers=bearer(token)).status_code == 401
    [event] = audit_events(session_factory, "auth.token_revoked")
    assert (event.actor_kind, event.details["token_type"]) == ("client", "access_token")


def test_user_revokes_a_refresh_token_without_client_auth(
    client: TestClient, admin: Credentials
) -> None:
    pair = login(client, admin)
    assert (
        client.post(
            "/api/v1/auth/revoke", data={"token": pair["refresh_token"]}
        ).status_code
        == 200
    )
    assert (
        client.post(
            "/api/v1/auth/refresh", json={"refresh_token": pair["refresh_token"]}
        ).status_code
        == 401
    )
    assert client.get(ME, headers=bearer(pair["access_token"])).status_code == 401


def test_revoking_a_refresh_token_ends_the_access_tokens_of_its_session(
    client: TestClient, admin: Credentials, session_factory: sessionmaker[Session]
) -> None:
    first = login(client, admin)
    renewed = client.post(
        "/api/v1/auth/refresh", json={"refresh_token": first["refresh_token"]}
    ).json()
    other = login(client, admin)  # another session, untouched
    assert (
        client.post(
            "/api/v1/auth/revoke",
            data={
                "token": renewed["refresh_token"],
                "token_type_hint": "refresh_token",
            },
        ).status_code
        == 200
    )
    # RFC 7009 §2.1: every access token of the session, old and new, ends with it.
    for access_token in (first["access_token"], renewed["access_token"]):
        assert client.get(ME, headers=bearer(access_token)).status_code == 401
    assert client.get(ME, headers=bearer(other["access_token"])).status_code == 200
    [event] = audit_events(session_factory, "auth.token_revoked")
    assert (event.resource_type, event.details["token_type"]) == (
        "auth_session",
        "refresh_token",
    )


def test_a_client_revokes_the_session_it_started_with_the_password_grant(
    client: TestClient, machine: dict[str, Any], admin: Credentials
) -> None:
    credentials = basic(machine["client_id"], machine["client_secret"])
    pair = client.post(
        TOKEN,
        data={
            "grant_type": "password",
            "username": admin.username,
            "password": admin.password,
        },
        headers=credentials,
    ).json()
    # A confidential client authenticates at revocation too (RFC 7009 §2.1);
    # before, that made the refresh token "not its own" and nothing was revoked.
    response = client.post(
        "/api/v1/auth/revoke",
        data={"token": pair["refresh_token"]},
        headers=credentials,
    )
    assert response.status_code == 200
    assert client.get(ME, headers=bearer(pair["access_token"])).status_code == 401
    assert (
        client.post(
            "/api/v1/auth/refresh", json={"refresh_token": pair["refresh_token"]}
        ).status_code
        == 401
    )
    # Its access token alone, too.
    again = client.post(
        TOKEN,
        data={
            "grant_type": "password",
            "username": admin.username,
            "password": admin.password,
        },
        headers=credentials,
    ).json()
    client.post(
        "/api/v1/auth/revoke",
        data={"token": again["access_token"], "token_type_hint": "access_token"},
        headers=credentials,
    )
    assert client.get(ME, headers=bearer(again["access_token"])).status_code == 401


def test_revoking_an_unknown_token_is_200_and_changes_nothing(
    client: TestClient, admin: Credentials
) -> None:
    pair = login(client, admin)
    assert (
        client.post("/api/v1/auth/revoke", data={"token": "garbage"}).status_code == 200
    )
    assert client.get(ME, headers=bearer(pair["access_token"])).status_code == 200


def test_a_client_cannot_revoke_someone_elses_token(
    client: TestClient, machine: dict[str, Any], admin: Credentials
) -> None:
    pair = login(client, admin)
    response = client.post(
        "/api/v1/auth/revoke",
        data={"token": pair["access_token"]},
        headers=basic(machine["client_id"], machine["client_secret"]),
    )
    assert response.status_code == 200
    assert client.get(ME, headers=bearer(pair["access_token"])).status_code == 200


def test_revoke_with_wrong_client_secret_is_invalid_client(
    client: TestClient, machine: dict[str, Any]
) -> None:
    token = _client_token(client, machine)
    response = client.post(
        "/api/v1/auth/revoke",
        data={"token": token},
        headers=basic(machine["client_id"], "wrong"),
    )
    oauth_error(response, 401, "invalid_client")
    assert client.get(ME, headers=bearer(token)).status_code == 200
