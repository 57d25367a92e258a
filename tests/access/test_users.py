from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from app.access.models import User
from app.auth.models import AuthSession
from app.core.security import PasswordHasher
from tests.factories import (
    Credentials,
    assert_problem,
    audit_events,
    bearer,
    login,
    make_department,
    make_role,
    make_user,
    mint_token,
)

NEW_PASSWORD = "Brand-New-Passw0rd"


def role_id(client: TestClient, headers: dict[str, str], name: str) -> str:
    roles = client.get("/api/v1/roles", params={"q": name}, headers=headers).json()
    [role] = [r for r in roles["data"] if r["name"] == name]
    return str(role["id"])


def create(
    client: TestClient, headers: dict[str, str], **fields: object
) -> dict[str, object]:
    body = {"username": "alice", "password": NEW_PASSWORD, **fields}
    response = client.post("/api/v1/users", json=body, headers=headers)
    assert response.status_code == 201, response.text
    created: dict[str, object] = response.json()
    return created


def test_created_user_can_log_in_and_is_audited_without_the_password(
    client: TestClient,
    admin_headers: dict[str, str],
    session_factory: sessionmaker[Session],
) -> None:
    signer = role_id(client, admin_headers, "signer")
    body = create(
        client,
        admin_headers,
        email="alice@example.com",
        full_name="Alice Martin",
        role_ids=[signer],
    )
    assert body["status"] == "active"
    assert body["role_ids"] == [signer]
    assert NEW_PASSWORD not in str(body)
    assert not {"password", "password_hash", "totp_seed"} & set(body)
    token = client.post(
        "/api/v1/auth/login", json={"username": "Alice", "password": NEW_PASSWORD}
    )
    assert token.status_code == 200
    [event] = audit_events(session_factory, "user.created", resource_id=body["id"])
    assert event.details["roles"] == ["signer"]
    assert NEW_PASSWORD not in str(event.details)


def test_username_is_unique_ignoring_case(
    client: TestClient, admin_headers: dict[str, str]
) -> None:
    create(client, admin_headers)
    response = client.post(
        "/api/v1/users",
        json={"username": "ALICE", "password": NEW_PASSWORD},
        headers=admin_headers,
    )
    assert_problem(response, 409, "username_taken")


def test_invalid_email_is_422(
    client: TestClient, admin_headers: dict[str, str]
) -> None:
    response = client.post(
        "/api/v1/users",
        json={"username": "bob", "password": NEW_PASSWORD, "email": "not-an-email"},
        headers=admin_headers,
    )
    body = assert_problem(response, 422, "validation_failed")
    assert body["invalid_params"][0]["name"] == "email"


def test_list_filters_by_role_department_status_and_text(
    client: TestClient,
    admin_headers: dict[str, str],
    admin: Credentials,
) -> None:
    finance = client.post(
        "/api/v1/departments", json={"name": "Finance"}, headers=admin_headers
    ).json()
    auditor = role_id(client, admin_headers, "auditor")
    create(client, admin_headers, username="carol", department_id=finance["id"])
    create(
        client,
        admin_headers,
        username="dave",
        full_name="Dave Auditor",
        role_ids=[auditor],
    )
    dave = client.get(
        "/api/v1/users", params={"q": "auditor"}, headers=admin_headers
    ).json()
    assert [u["username"] for u in dave["data"]] == ["dave"]

    def names(**params: str) -> list[str]:
        page = client.get("/api/v1/users", params=params, headers=admin_headers)
        assert page.status_code == 200, page.text
        return sorted(u["username"] for u in page.json()["data"])

    assert names(department_id=finance["id"]) == ["carol"]
    assert names(role_id=auditor) == ["dave"]
    assert names(status="active", sort="username") == ["admin", "carol", "dave"]
    assert names(status="disabled") == []
    page = client.get(
        "/api/v1/users", params={"limit": 1, "sort": "-username"}, headers=admin_headers
    ).json()
    assert (page["total"], page["count"], page["data"][0]["username"]) == (
        3,
        1,
        "dave",
    )


def test_update_records_changed_fields_before_and_after(
    client: TestClient,
    admin_headers: dict[str, str],
    session_factory: sessionmaker[Session],
) -> None:
    user = create(client, admin_headers, full_name="Alice")
    auditor = role_id(client, admin_headers, "auditor")
    response = client.patch(
        f"/api/v1/users/{user['id']}",
        json={"full_name": "Alice M.", "role_ids": [auditor]},
        headers=admin_headers,
    )
    assert response.status_code == 200, response.text
    assert response.json()["roles"][0]["name"] == "auditor"
    [event] = audit_events(session_factory, "user.updated")
    assert event.details == {
        "before": {"full_name": "Alice", "roles": []},
        "after": {"full_name": "Alice M.", "roles": ["auditor"]},
    }


def test_disabling_a_user_revokes_tokens_and_sessions_at_once(
    client: TestClient,
    admin_headers: dict[str, str],
    session_factory: sessionmaker[Session],
    hasher: PasswordHasher,
) -> None:
    bob = make_user(session_factory, hasher, username="bob")
    tokens = login(client, bob)
    headers = bearer(tokens["access_token"])
    assert client.get("/api/v1/auth/me", headers=headers).status_code == 200
    response = client.post(
        f"/api/v1/users/{bob.user_id}/disable", headers=admin_headers
    )
    assert response.json()["status"] == "disabled"
    assert_problem(client.get("/api/v1/auth/me", headers=headers), 401, "invalid_token")
    refreshed = client.post(
        "/api/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]}
    )
    assert_problem(refreshed, 401, "invalid_refresh_token")
    with session_factory() as session:
        [family] = session.scalars(
            select(AuthSession).where(AuthSession.user_id == bob.user_id)
        )
        assert family.revoke_reason == "user_disabled"
    assert_problem(
        client.post(
            "/api/v1/auth/login", json={"username": "bob", "password": bob.password}
        ),
        403,
        "account_disabled",
    )
    client.post(f"/api/v1/users/{bob.user_id}/enable", headers=admin_headers)
    login(client, bob)


def test_reset_password_gives_a_temporary_password_that_must_be_changed(
    client: TestClient,
    admin_headers: dict[str, str],
    session_factory: sessionmaker[Session],
    hasher: PasswordHasher,
) -> None:
    bob = make_user(
        session_factory, hasher, username="bob", roles=("certificate-manager",)
    )
    old_tokens = login(client, bob)
    response = client.post(
        f"/api/v1/users/{bob.user_id}/reset-password", headers=admin_headers
    )
    temporary = response.json()["temporary_password"]
    assert_problem(
        client.get("/api/v1/auth/me", headers=bearer(old_tokens["access_token"])),
        401,
        "invalid_token",
    )
    assert_problem(
        client.post(
            "/api/v1/auth/login", json={"username": "bob", "password": bob.password}
        ),
        401,
        "invalid_credentials",
    )
    headers = bearer(
        login(client, Credentials("bob", temporary, bob.user_id))["access_token"]
    )
    assert client.get("/api/v1/auth/me", headers=headers).json()["must_change_password"]
    assert_problem(
        client.get("/api/v1/users", headers=headers), 403, "password_change_required"
    )
    changed = client.post(
        "/api/v1/auth/password",
        json={"old_password": temporary, "new_password": NEW_PASSWORD},
        headers=headers,
    )
    assert changed.status_code == 204, changed.text
    assert client.get("/api/v1/users", headers=headers).status_code == 200
    assert [e.action for e in audit_events(session_factory, "user.password_reset")]


def test_last_administrator_cannot_be_deleted_disabled_or_demoted(
    app: FastAPI,
    client: TestClient,
    admin_headers: dict[str, str],
    admin: Credentials,
    session_factory: sessionmaker[Session],
    hasher: PasswordHasher,
) -> None:
    url = f"/api/v1/users/{admin.user_id}"
    assert_problem(client.delete(url, headers=admin_headers), 409, "last_administrator")
    assert_problem(
        client.post(f"{url}/disable", headers=admin_headers), 409, "last_administrator"
    )
    # Nobody changes their own roles, so the last administrator cannot demote itself.
    assert_problem(
        client.patch(url, json={"role_ids": []}, headers=admin_headers),
        403,
        "self_change_forbidden",
    )
    second = make_user(
        session_factory, hasher, username="second", roles=("administrator",)
    )
    # A disabled administrator does not count.
    client.post(f"/api/v1/users/{second.user_id}/disable", headers=admin_headers)
    assert_problem(client.delete(url, headers=admin_headers), 409, "last_administrator")
    client.post(f"/api/v1/users/{second.user_id}/enable", headers=admin_headers)
    response = client.patch(
        url, json={"role_ids": []}, headers=mint_token(app, second.user_id)
    )
    assert response.status_code == 200, response.text
    assert response.json()["roles"] == []
    # Its token now carries no entitlement: the role change applies on the next request.
    assert_problem(client.get(url, headers=admin_headers), 403, "forbidden")


def test_user_manager_cannot_grant_or_take_over_more_than_they_hold(
    app: FastAPI,
    client: TestClient,
    admin: Credentials,
    session_factory: sessionmaker[Session],
    hasher: PasswordHasher,
) -> None:
    make_role(
        session_factory,
        name="user-manager",
        entitlements=["users:read", "users:write", "roles:read"],
    )
    ops = make_department(session_factory, "ops")
    manager = make_user(
        session_factory,
        hasher,
        username="mgr",
        roles=("user-manager",),
        department_id=ops,
    )
    bob = make_user(
        session_factory, hasher, username="bob", roles=(), department_id=ops
    )
    with session_factory.begin() as session:
        session.get_one(User, admin.user_id).department_id = ops
    headers = mint_token(app, manager.user_id)
    administrator = role_id(client, headers, "administrator")
    created = client.post(
        "/api/v1/users",
        json={"username": "eve", "password": NEW_PASSWORD, "role_ids": [administrator]},
        headers=headers,
    )
    body = assert_problem(created, 403, "entitlement_escalation")
    assert "settings:write" in body["entitlements"]
    assert_problem(
        client.patch(
            f"/api/v1/users/{bob.user_id}",
            json={"role_ids": [administrator]},
            headers=headers,
        ),
        403,
        "entitlement_escalation",
    )
    assert_problem(
        client.patch(
            f"/api/v1/users/{manager.user_id}",
            json={"role_ids": [administrator]},
            headers=headers,
        ),
        403,
        "self_change_forbidden",
    )
    for action in ("reset-password", "disable"):
        assert_problem(
            client.post(f"/api/v1/users/{admin.user_id}/{action}", headers=headers),
            403,
            "entitlement_escalation",
        )
    assert (
        client.post(
            f"/api/v1/users/{bob.user_id}/reset-password", headers=headers
        ).status_code
        == 200
    )


def test_deleted_user_is_gone_but_their_audit_history_stays_readable(
    client: TestClient,
    admin_headers: dict[str, str],
    session_factory: sessionmaker[Session],
    hasher: PasswordHasher,
) -> None:
    bob = make_user(session_factory, hasher, username="bob")
    login(client, bob)
    response = client.delete(f"/api/v1/users/{bob.user_id}", headers=admin_headers)
    assert response.status_code == 204
    assert_problem(
        client.get(f"/api/v1/users/{bob.user_id}", headers=admin_headers),
        404,
        "user_not_found",
    )
    with session_factory() as session:
        assert session.get(User, bob.user_id) is None
    [logged_in] = audit_events(session_factory, "auth.login", actor_id=str(bob.user_id))
    assert logged_in.actor_name == "bob"
    [deleted] = audit_events(session_factory, "user.deleted")
    assert deleted.details["username"] == "bob"
