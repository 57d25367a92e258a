from fastapi.testclient import TestClient
from sqlalchemy import update
from sqlalchemy.orm import Session, sessionmaker

from app.access.models import User, UserStatus
from app.core.security import PasswordHasher
from tests.factories import (
    Credentials,
    assert_problem,
    audit_events,
    bearer,
    login,
    make_user,
)


def test_login_returns_a_token_pair_that_opens_me(
    client: TestClient, admin: Credentials
) -> None:
    response = client.post(
        "/api/v1/auth/login", json={"username": "ADMIN", "password": admin.password}
    )
    assert response.status_code == 200
    assert response.headers["cache-control"] == "no-store"
    body = response.json()
    assert body["token_type"] == "bearer"
    assert body["expires_in"] == 900
    assert body["refresh_token"]
    me = client.get("/api/v1/auth/me", headers=bearer(body["access_token"])).json()
    assert me["kind"] == "user"
    assert me["username"] == "admin"
    assert [role["name"] for role in me["roles"]] == ["administrator"]
    assert "clients:write" in me["entitlements"]


def test_successful_login_is_audited(
    client: TestClient, admin: Credentials, session_factory: sessionmaker[Session]
) -> None:
    login(client, admin)
    [event] = audit_events(session_factory, "auth.login")
    assert (event.outcome, event.actor_kind, event.actor_id) == (
        "success",
        "user",
        str(admin.user_id),
    )
    assert event.ip == "testclient"
    assert event.details["grant"] == "login"


def test_wrong_password_is_401_and_audited(
    client: TestClient, admin: Credentials, session_factory: sessionmaker[Session]
) -> None:
    response = client.post(
        "/api/v1/auth/login", json={"username": "admin", "password": "wrong-password"}
    )
    body = assert_problem(response, 401, "invalid_credentials")
    assert body["detail"] == "Invalid username or password."
    [event] = audit_events(session_factory, "auth.login")
    assert (event.outcome, event.actor_id, event.details["reason"]) == (
        "failure",
        str(admin.user_id),
        "wrong_password",
    )
    assert "wrong-password" not in str(event.details)


def test_unknown_user_gets_the_same_answer_and_is_audited(
    client: TestClient, admin: Credentials, session_factory: sessionmaker[Session]
) -> None:
    response = client.post(
        "/api/v1/auth/login", json={"username": "nobody", "password": "whatever-1"}
    )
    assert (
        assert_problem(response, 401, "invalid_credentials")["detail"]
        == "Invalid username or password."
    )
    [event] = audit_events(session_factory, "auth.login")
    assert (event.outcome, event.actor_kind, event.actor_name) == (
        "failure",
        "anonymous",
        "nobody",
    )
    assert event.details["reason"] == "unknown_user"


def test_disabled_user_cannot_log_in(
    client: TestClient, session_factory: sessionmaker[Session], hasher: PasswordHasher
) -> None:
    user = make_user(session_factory, hasher, username="dora")
    with session_factory.begin() as session:
        session.execute(
            update(User)
            .where(User.id == user.user_id)
            .values(status=UserStatus.DISABLED)
        )
    response = client.post(
        "/api/v1/auth/login", json={"username": "dora", "password": user.password}
    )
    assert_problem(response, 403, "account_disabled")
    [event] = audit_events(session_factory, "auth.login")
    assert (event.outcome, event.details["reason"]) == ("denied", "account_disabled")


def test_disabling_a_user_stops_their_tokens_at_once(
    client: TestClient, session_factory: sessionmaker[Session], hasher: PasswordHasher
) -> None:
    user = make_user(session_factory, hasher, username="erin")
    token = login(client, user)["access_token"]
    assert client.get("/api/v1/auth/me", headers=bearer(token)).status_code == 200
    with session_factory.begin() as session:
        session.execute(
            update(User)
            .where(User.id == user.user_id)
            .values(status=UserStatus.DISABLED)
        )
    assert_problem(
        client.get("/api/v1/auth/me", headers=bearer(token)), 401, "invalid_token"
    )


def test_form_body_on_the_json_login_is_415(
    client: TestClient, admin: Credentials
) -> None:
    response = client.post(
        "/api/v1/auth/login", data={"username": "admin", "password": admin.password}
    )
    assert_problem(response, 415, "unsupported_media_type")


def test_login_with_missing_or_extra_fields_is_422(client: TestClient) -> None:
    body = assert_problem(
        client.post("/api/v1/auth/login", json={"username": "admin"}),
        422,
        "validation_failed",
    )
    assert [p["name"] for p in body["invalid_params"]] == ["password"]
    body = assert_problem(
        client.post(
            "/api/v1/auth/login", json={"username": "a", "password": "b", "admin": True}
        ),
        422,
        "validation_failed",
    )
    assert [p["name"] for p in body["invalid_params"]] == ["admin"]


def test_user_entitlements_come_from_roles(
    client: TestClient, session_factory: sessionmaker[Session], hasher: PasswordHasher
) -> None:
    auditor = make_user(
        session_factory, hasher, username="audrey", roles=("auditor", "signer")
    )
    me = client.get(
        "/api/v1/auth/me", headers=bearer(login(client, auditor)["access_token"])
    ).json()
    assert {"audit:read", "documents:sign"} <= set(me["entitlements"])
    assert "clients:write" not in me["entitlements"]


def test_missing_entitlement_is_403_and_audited(
    client: TestClient, session_factory: sessionmaker[Session], hasher: PasswordHasher
) -> None:
    signer = make_user(session_factory, hasher, username="sam")
    response = client.get(
        "/api/v1/clients", headers=bearer(login(client, signer)["access_token"])
    )
    body = assert_problem(response, 403, "forbidden")
    assert "clients:read" in body["detail"]
    [event] = audit_events(session_factory, "access.denied")
    assert (event.outcome, event.actor_id, event.details["entitlement"]) == (
        "denied",
        str(signer.user_id),
        "clients:read",
    )
