"""Bounded delegation for users: a non-administrator manages its own department only, nobody their own standing."""

import uuid

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from app.access.entitlements import ALL
from app.access.models import User
from app.core.security import PasswordHasher
from tests.auth.test_clients import token_for
from tests.factories import (
    Credentials,
    assert_problem,
    make_department,
    make_role,
    make_user,
    mint_token,
)

USERS = "/api/v1/users"
PASSWORD = "Brand-New-Passw0rd"


@pytest.fixture
def departments(session_factory: sessionmaker[Session]) -> tuple[uuid.UUID, uuid.UUID]:
    return make_department(session_factory, "ops"), make_department(
        session_factory, "legal"
    )


def user_manager(
    session_factory: sessionmaker[Session],
    hasher: PasswordHasher,
    department_id: uuid.UUID | None,
) -> Credentials:
    make_role(
        session_factory,
        name="user-manager",
        entitlements=[
            "users:read",
            "users:write",
            "departments:read",
            "documents:read",
        ],
    )
    return make_user(
        session_factory,
        hasher,
        username="mgr",
        roles=("user-manager",),
        department_id=department_id,
    )


def department_of(
    session_factory: sessionmaker[Session], user_id: uuid.UUID
) -> uuid.UUID | None:
    with session_factory() as session:
        return session.get_one(User, user_id).department_id


def test_user_manager_cannot_move_themself_into_another_department(
    app: FastAPI,
    client: TestClient,
    session_factory: sessionmaker[Session],
    hasher: PasswordHasher,
    departments: tuple[uuid.UUID, uuid.UUID],
) -> None:
    ops, legal = departments
    manager = user_manager(session_factory, hasher, ops)
    headers = mint_token(app, manager.user_id)
    assert_problem(
        client.patch(
            f"{USERS}/{manager.user_id}",
            json={"department_id": str(legal)},
            headers=headers,
        ),
        403,
        "self_change_forbidden",
    )
    assert department_of(session_factory, manager.user_id) == ops
    # Nor moves a user of its department out of it.
    carl = make_user(
        session_factory, hasher, username="carl", roles=(), department_id=ops
    )
    for target in (str(legal), None):
        assert_problem(
            client.patch(
                f"{USERS}/{carl.user_id}",
                json={"department_id": target},
                headers=headers,
            ),
            403,
            "department_out_of_scope",
        )
    assert department_of(session_factory, carl.user_id) == ops


def test_users_of_another_department_answer_as_missing_to_a_manager(
    app: FastAPI,
    client: TestClient,
    session_factory: sessionmaker[Session],
    hasher: PasswordHasher,
    departments: tuple[uuid.UUID, uuid.UUID],
) -> None:
    ops, legal = departments
    manager = user_manager(session_factory, hasher, ops)
    headers = mint_token(app, manager.user_id)
    carl = make_user(
        session_factory, hasher, username="carl", roles=(), department_id=ops
    )
    lena = make_user(session_factory, hasher, username="lena", department_id=legal)
    listed = client.get(f"{USERS}?sort=username", headers=headers).json()
    assert [u["username"] for u in listed["data"]] == ["carl", "mgr"]
    assert (
        client.get(f"{USERS}?department_id={legal}", headers=headers).json()["total"]
        == 0
    )
    url = f"{USERS}/{lena.user_id}"
    for method, path, body in [
        ("GET", "", None),
        ("PATCH", "", {"full_name": "Lena"}),
        ("POST", "/reset-password", None),
        ("POST", "/disable", None),
        ("POST", "/enable", None),
        ("POST", "/unlock", None),
        ("POST", "/2fa/disable", None),
        ("DELETE", "", None),
    ]:
        response = client.request(method, url + path, json=body, headers=headers)
        assert_problem(response, 404, "user_not_found")
    assert (
        client.post(
            f"{USERS}/{carl.user_id}/reset-password", headers=headers
        ).status_code
        == 200
    )


def test_user_manager_creates_users_only_in_their_department(
    app: FastAPI,
    client: TestClient,
    session_factory: sessionmaker[Session],
    hasher: PasswordHasher,
    departments: tuple[uuid.UUID, uuid.UUID],
) -> None:
    ops, legal = departments
    headers = mint_token(app, user_manager(session_factory, hasher, ops).user_id)
    assert_problem(
        client.post(
            USERS,
            json={"username": "eve", "password": PASSWORD, "department_id": str(legal)},
            headers=headers,
        ),
        403,
        "department_out_of_scope",
    )
    created = client.post(
        USERS, json={"username": "eve", "password": PASSWORD}, headers=headers
    )
    assert created.status_code == 201, created.text
    assert created.json()["department_id"] == str(ops)


def test_user_manager_without_a_department_manages_nobody(
    app: FastAPI,
    client: TestClient,
    session_factory: sessionmaker[Session],
    hasher: PasswordHasher,
) -> None:
    manager = user_manager(session_factory, hasher, None)
    headers = mint_token(app, manager.user_id)
    bob = make_user(session_factory, hasher, username="bob")
    assert [
        u["username"] for u in client.get(USERS, headers=headers).json()["data"]
    ] == ["mgr"]
    assert_problem(
        client.post(f"{USERS}/{bob.user_id}/reset-password", headers=headers),
        404,
        "user_not_found",
    )
    assert_problem(
        client.post(
            USERS, json={"username": "eve", "password": PASSWORD}, headers=headers
        ),
        403,
        "department_out_of_scope",
    )


def test_administrator_cannot_change_own_roles_or_department(
    app: FastAPI,
    client: TestClient,
    admin: Credentials,
    admin_headers: dict[str, str],
    session_factory: sessionmaker[Session],
    departments: tuple[uuid.UUID, uuid.UUID],
) -> None:
    ops, _legal = departments
    url = f"{USERS}/{admin.user_id}"
    assert_problem(
        client.patch(url, json={"department_id": str(ops)}, headers=admin_headers),
        403,
        "self_change_forbidden",
    )
    signer = client.get("/api/v1/roles?q=signer", headers=admin_headers).json()["data"][
        0
    ]
    admin_role = client.get(
        "/api/v1/roles?q=administrator", headers=admin_headers
    ).json()["data"][0]
    assert_problem(
        client.patch(
            url,
            json={"role_ids": [admin_role["id"], signer["id"]]},
            headers=admin_headers,
        ),
        403,
        "self_change_forbidden",
    )
    # Other fields, and the same roles, are still theirs to change.
    same = client.patch(
        url,
        json={"full_name": "Root", "role_ids": [admin_role["id"]]},
        headers=admin_headers,
    )
    assert same.status_code == 200, same.text


def test_a_client_cannot_change_its_owners_roles_or_department(
    client: TestClient,
    admin: Credentials,
    admin_headers: dict[str, str],
    departments: tuple[uuid.UUID, uuid.UUID],
) -> None:
    ops, _legal = departments
    created = client.post(
        "/api/v1/clients",
        json={"name": "root-bot", "entitlements": sorted(ALL)},
        headers=admin_headers,
    ).json()
    token = token_for(client, created["client_id"], created["client_secret"]).json()[
        "access_token"
    ]
    assert_problem(
        client.patch(
            f"{USERS}/{admin.user_id}",
            json={"department_id": str(ops)},
            headers={"Authorization": f"Bearer {token}"},
        ),
        403,
        "self_change_forbidden",
    )
