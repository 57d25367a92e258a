from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from app.access.entitlements import ALL, DESCRIPTIONS
from app.core.security import PasswordHasher
from tests.factories import (
    assert_problem,
    audit_events,
    bearer,
    login,
    make_role,
    make_user,
    mint_token,
)


def role_by_name(
    client: TestClient, headers: dict[str, str], name: str
) -> dict[str, object]:
    page = client.get("/api/v1/roles", params={"q": name}, headers=headers).json()
    [role] = [r for r in page["data"] if r["name"] == name]
    found: dict[str, object] = role
    return found


def test_entitlement_catalogue_lists_every_entitlement_with_a_description(
    client: TestClient, admin_headers: dict[str, str]
) -> None:
    response = client.get("/api/v1/entitlements", headers=admin_headers)
    catalogue = {e["name"]: e["description"] for e in response.json()}
    assert set(catalogue) == ALL
    assert catalogue["documents:sign"] == DESCRIPTIONS["documents:sign"]  # type: ignore[index]


def test_role_crud_is_audited(
    client: TestClient,
    admin_headers: dict[str, str],
    session_factory: sessionmaker[Session],
) -> None:
    created = client.post(
        "/api/v1/roles",
        json={
            "name": "invoice-signer",
            "entitlements": ["documents:sign", "documents:read"],
        },
        headers=admin_headers,
    )
    assert created.status_code == 201, created.text
    role = created.json()
    assert (role["is_builtin"], role["entitlements"]) == (
        False,
        ["documents:read", "documents:sign"],
    )
    url = f"/api/v1/roles/{role['id']}"
    updated = client.patch(
        url, json={"entitlements": ["documents:read"]}, headers=admin_headers
    )
    assert updated.json()["entitlements"] == ["documents:read"]
    assert client.delete(url, headers=admin_headers).status_code == 204
    assert_problem(client.get(url, headers=admin_headers), 404, "role_not_found")
    [change] = audit_events(session_factory, "role.updated")
    assert change.details == {
        "before": {"entitlements": ["documents:read", "documents:sign"]},
        "after": {"entitlements": ["documents:read"]},
    }
    assert audit_events(session_factory, "role.deleted")


def test_unknown_entitlement_is_422(
    client: TestClient, admin_headers: dict[str, str]
) -> None:
    response = client.post(
        "/api/v1/roles",
        json={"name": "odd", "entitlements": ["documents:teleport"]},
        headers=admin_headers,
    )
    body = assert_problem(response, 422, "validation_failed")
    assert body["invalid_params"][0]["name"].startswith("entitlements")


def test_builtin_roles_cannot_be_deleted_renamed_or_stripped(
    client: TestClient, admin_headers: dict[str, str]
) -> None:
    for name in ("administrator", "signer", "auditor", "certificate-manager"):
        url = f"/api/v1/roles/{role_by_name(client, admin_headers, name)['id']}"
        assert_problem(
            client.delete(url, headers=admin_headers), 409, "builtin_role_protected"
        )
        assert_problem(
            client.patch(url, json={"name": f"{name}-x"}, headers=admin_headers),
            409,
            "builtin_role_protected",
        )
        assert_problem(
            client.patch(url, json={"entitlements": []}, headers=admin_headers),
            409,
            "builtin_role_protected",
        )
    signer = role_by_name(client, admin_headers, "signer")
    # Extra entitlements and a new description are fine.
    response = client.patch(
        f"/api/v1/roles/{signer['id']}",
        json={
            "description": "Signs",
            "entitlements": ["documents:sign", "reports:read"],
        },
        headers=admin_headers,
    )
    assert response.status_code == 200, response.text


def test_role_change_applies_to_holders_on_their_next_request(
    client: TestClient,
    admin_headers: dict[str, str],
    session_factory: sessionmaker[Session],
    hasher: PasswordHasher,
) -> None:
    role_id = make_role(session_factory, name="readers", entitlements=["users:read"])
    bob = make_user(session_factory, hasher, username="bob", roles=("readers",))
    headers = bearer(login(client, bob)["access_token"])
    assert client.get("/api/v1/users", headers=headers).status_code == 200
    client.patch(
        f"/api/v1/roles/{role_id}",
        json={"entitlements": ["roles:read"]},
        headers=admin_headers,
    )
    assert_problem(client.get("/api/v1/users", headers=headers), 403, "forbidden")
    assert client.get("/api/v1/roles", headers=headers).status_code == 200


def test_user_entitlements_are_the_union_of_their_roles(
    app: FastAPI,
    client: TestClient,
    session_factory: sessionmaker[Session],
    hasher: PasswordHasher,
) -> None:
    make_role(session_factory, name="a", entitlements=["users:read"])
    make_role(session_factory, name="b", entitlements=["roles:read"])
    bob = make_user(session_factory, hasher, username="bob", roles=("a", "b"))
    me = client.get("/api/v1/auth/me", headers=mint_token(app, bob.user_id)).json()
    assert me["entitlements"] == ["roles:read", "users:read"]


def test_role_held_by_users_cannot_be_deleted(
    client: TestClient,
    admin_headers: dict[str, str],
    session_factory: sessionmaker[Session],
    hasher: PasswordHasher,
) -> None:
    role_id = make_role(session_factory, name="readers", entitlements=["users:read"])
    make_user(session_factory, hasher, username="bob", roles=("readers",))
    body = assert_problem(
        client.delete(f"/api/v1/roles/{role_id}", headers=admin_headers),
        409,
        "still_referenced",
    )
    assert body["remaining"] == {"users": 1}


def test_role_writer_cannot_create_or_widen_roles_beyond_their_entitlements(
    app: FastAPI,
    client: TestClient,
    session_factory: sessionmaker[Session],
    hasher: PasswordHasher,
) -> None:
    make_role(
        session_factory, name="role-admin", entitlements=["roles:read", "roles:write"]
    )
    own = make_role(session_factory, name="mine", entitlements=["roles:read"])
    carol = make_user(session_factory, hasher, username="carol", roles=("role-admin",))
    headers = mint_token(app, carol.user_id)
    assert_problem(
        client.post(
            "/api/v1/roles",
            json={"name": "sneaky", "entitlements": ["users:write"]},
            headers=headers,
        ),
        403,
        "entitlement_escalation",
    )
    assert_problem(
        client.patch(
            f"/api/v1/roles/{own}",
            json={"entitlements": ["roles:read", "settings:write"]},
            headers=headers,
        ),
        403,
        "entitlement_escalation",
    )
    ok = client.post(
        "/api/v1/roles",
        json={"name": "fine", "entitlements": ["roles:read"]},
        headers=headers,
    )
    assert ok.status_code == 201


def test_client_cannot_outgrow_its_creator(
    app: FastAPI,
    client: TestClient,
    admin_headers: dict[str, str],
    session_factory: sessionmaker[Session],
    hasher: PasswordHasher,
) -> None:
    role_id = make_role(
        session_factory,
        name="integrator",
        entitlements=["clients:write", "clients:read", "users:read"],
    )
    dan = make_user(session_factory, hasher, username="dan", roles=("integrator",))
    headers = mint_token(app, dan.user_id)
    assert_problem(
        client.post(
            "/api/v1/clients",
            json={"name": "erp", "entitlements": ["users:write"]},
            headers=headers,
        ),
        403,
        "entitlement_escalation",
    )
    created = client.post(
        "/api/v1/clients",
        json={"name": "erp", "entitlements": ["users:read"]},
        headers=headers,
    ).json()
    token = client.post(
        "/api/v1/auth/token",
        data={
            "grant_type": "client_credentials",
            "client_id": created["client_id"],
            "client_secret": created["client_secret"],
        },
    ).json()["access_token"]
    assert client.get("/api/v1/users", headers=bearer(token)).status_code == 200
    # The creator loses users:read: so does the client, at once.
    client.patch(
        f"/api/v1/roles/{role_id}",
        json={"entitlements": ["clients:read"]},
        headers=admin_headers,
    )
    assert_problem(client.get("/api/v1/users", headers=bearer(token)), 403, "forbidden")


def test_role_writer_cannot_edit_a_role_they_hold_or_one_holding_more(
    app: FastAPI,
    client: TestClient,
    session_factory: sessionmaker[Session],
    hasher: PasswordHasher,
) -> None:
    held = make_role(
        session_factory,
        name="role-admin",
        entitlements=["roles:read", "roles:write", "documents:read"],
    )
    bigger = make_role(
        session_factory, name="bigger", entitlements=["roles:read", "settings:write"]
    )
    carol = make_user(session_factory, hasher, username="carol", roles=("role-admin",))
    headers = mint_token(app, carol.user_id)
    assert_problem(
        client.patch(
            f"/api/v1/roles/{held}", json={"description": "mine"}, headers=headers
        ),
        403,
        "self_change_forbidden",
    )
    # Taking roles:read (which carol holds) off a role that holds settings:write.
    for change in ({"entitlements": ["settings:write"]}, {"name": "renamed"}):
        assert_problem(
            client.patch(f"/api/v1/roles/{bigger}", json=change, headers=headers),
            403,
            "entitlement_escalation",
        )
    other = make_role(session_factory, name="reader", entitlements=["roles:read"])
    widened = client.patch(
        f"/api/v1/roles/{other}",
        json={"entitlements": ["roles:read", "documents:read"]},
        headers=headers,
    )
    assert widened.status_code == 200, widened.text
