"""Property: no sequence of delegation calls lets a principal reach beyond what it holds.

Each example sets up, in one app and database (fresh names per example, so
examples never see each other's principals), an actor A and another user B with
random roles from the catalogue, in random departments, an almighty client and a
client owned by B. A (as itself, or through any client whose secret it got) then
makes random delegation calls: create and change users, roles and clients, rotate
secrets, transfer, assign, reset passwords, request tokens, read users and clients.
After every call:
- A, and every client A can act through, holds no entitlement A did not hold at
  the start, and works in no department other than A's;
- no user or client ends up with an entitlement it did not have unless A holds it;
- no user leaves or enters a department other than A's by A's doing;
- whatever A reads (users, clients) is in A's department or A's own.
"""

import base64
import itertools
import uuid
from dataclasses import dataclass, field
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fastapi import FastAPI
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from sqlalchemy import select
from sqlalchemy.orm import Session, selectinload, sessionmaker

from app.access.entitlements import ALL
from app.access.models import User
from app.audit.service import SYSTEM
from app.auth import service as auth_service
from app.auth.errors import ClientOwnerInactive
from app.auth.models import ApiClient
from app.core.config import Settings
from app.core.security import PasswordHasher
from app.license import service as license_service
from tests.factories import (
    Credentials,
    bearer,
    make_department,
    make_role,
    make_user,
    mint_token,
)
from tests.license.conftest import issuer, make_license, public_key_text

__all__ = ["issuer"]

# The entitlements that delegate, plus a few that reach data; A never holds them all.
RELEVANT = sorted(
    {
        "clients:read",
        "clients:write",
        "users:read",
        "users:write",
        "roles:read",
        "roles:write",
        "departments:read",
        "documents:read",
        "settings:write",
        "certificates:assign",
    }
)
entitlement_sets = st.frozensets(st.sampled_from(RELEVANT))
_counter = itertools.count()


@pytest.fixture
def settings(settings: Settings, issuer: Ed25519PrivateKey) -> Settings:
    # Examples create many users: more than evaluation mode allows.
    return settings.model_copy(update={"license_public_key": public_key_text(issuer)})


@pytest.fixture
def licensed(app: FastAPI, issuer: Ed25519PrivateKey) -> None:
    with app.state.sessionmaker.begin() as session:
        license_service.install_license(
            session, actor=SYSTEM, content=make_license(issuer)
        )


@dataclass
class World:
    app: FastAPI
    http: TestClient
    factory: sessionmaker[Session]
    actor: uuid.UUID
    actor_entitlements: frozenset[str]
    actor_department: uuid.UUID | None
    departments: list[uuid.UUID | None]
    users: list[uuid.UUID]
    roles: list[str]
    clients: list[str]
    # What A can speak as: its own token, and client tokens it obtained.
    tokens: list[dict[str, str]] = field(default_factory=list)
    before_users: dict[uuid.UUID, tuple[frozenset[str], uuid.UUID | None]] = field(
        default_factory=dict
    )
    before_clients: dict[uuid.UUID, frozenset[str]] = field(default_factory=dict)


def _users_state(
    factory: sessionmaker[Session], ids: list[uuid.UUID]
) -> dict[uuid.UUID, tuple[frozenset[str], uuid.UUID | None]]:
    with factory() as session:
        users = session.scalars(
            select(User).where(User.id.in_(ids)).options(selectinload(User.roles))
        ).all()
        return {u.id: (u.entitlements, u.department_id) for u in users}


def _clients_state(
    factory: sessionmaker[Session], ids: list[str]
) -> dict[uuid.UUID, frozenset[str]]:
    """Each client's effective entitlements now (empty when its owner is inactive)."""
    out = {}
    with factory() as session:
        for client in session.scalars(
            select(ApiClient).where(ApiClient.id.in_([uuid.UUID(i) for i in ids]))
        ):
            try:
                out[client.id] = auth_service.client_standing(
                    session, client
                ).entitlements
            except ClientOwnerInactive:
                out[client.id] = frozenset()
    return out


def _own_department(world: World) -> str | None:
    return str(world.actor_department) if world.actor_department else None


def _check_invariants(world: World) -> None:
    held = world.actor_entitlements
    for headers in world.tokens:
        me = world.http.get("/api/v1/auth/me", headers=headers)
        if me.status_code != 200:
            continue  # a token A lost (client disabled, deleted, owner inactive)
        body = me.json()
        assert set(body["entitlements"]) <= held, body
        assert body["department_id"] in (
            None,
            str(world.actor_department) if world.actor_department else None,
        ), body
    users_now = _users_state(world.factory, world.users)
    for user_id, (entitlements, department) in users_now.items():
        before_entitlements, before_department = world.before_users.get(
            user_id, (frozenset(), world.actor_department)
        )
        assert entitlements - before_entitlements <= held, (user_id, entitlements)
        if department != before_department:
            # Only within A's own department, and never A itself.
            assert user_id != world.actor
            assert world.actor_department is not None
            assert world.actor_department in (department, before_department)
            assert department == world.actor_department
    actor_entitlements, actor_department = users_now[world.actor]
    assert actor_entitlements == held
    assert actor_department == world.actor_department
    for client_id, effective in _clients_state(world.factory, world.clients).items():
        assert effective - world.before_clients.get(client_id, frozenset()) <= held


def _token_of(http: TestClient, client_id: str, secret: str) -> dict[str, str] | None:
    auth = base64.b64encode(f"{client_id}:{secret}".encode()).decode()
    response = http.post(
        "/api/v1/auth/token",
        data={"grant_type": "client_credentials"},
        headers={"Authorization": f"Basic {auth}"},
    )
    if response.status_code != 200:
        return None
    return bearer(response.json()["access_token"])


def _step(world: World, data: st.DataObject) -> None:
    http = world.http
    headers = data.draw(st.sampled_from(world.tokens))
    some_entitlements = sorted(data.draw(entitlement_sets)) or ["documents:read"]
    department = data.draw(st.sampled_from(world.departments))
    kind = data.draw(
        st.sampled_from(
            [
                "create_client",
                "rotate",
                "patch_client",
                "toggle_client",
                "delete_client",
                "transfer",
                "create_role",
                "patch_role",
                "create_user",
                "patch_user",
                "reset_password",
                "read_users",
                "read_clients",
            ]
        )
    )
    if kind == "create_client":
        placement = data.draw(
            st.sampled_from(
                [{}, {"department_id": str(department) if department else None}]
            )
        )
        response = http.post(
            "/api/v1/clients",
            json={"name": "p", "entitlements": some_entitlements, **placement},
            headers=headers,
        )
        if response.status_code == 201:
            body = response.json()
            assert body["department_id"] in (_own_department(world), None), body
            world.clients.append(body["id"])
            token = _token_of(http, body["client_id"], body["client_secret"])
            if token:
                world.tokens.append(token)
    elif kind == "rotate":
        target = data.draw(st.sampled_from(world.clients))
        response = http.post(f"/api/v1/clients/{target}/rotate-secret", headers=headers)
        if response.status_code == 200:
            body = response.json()
            token = _token_of(http, body["client_id"], body["client_secret"])
            if token:
                world.tokens.append(token)
    elif kind == "patch_client":
        target = data.draw(st.sampled_from(world.clients))
        change = data.draw(
            st.sampled_from(
                [
                    {"entitlements": some_entitlements},
                    {"department_id": str(department) if department else None},
                ]
            )
        )
        response = http.patch(f"/api/v1/clients/{target}", json=change, headers=headers)
        if response.status_code == 200 and "department_id" in change:
            # A places a client only in its own department, or in none.
            assert change["department_id"] in (_own_department(world), None)
    elif kind == "toggle_client":
        target = data.draw(st.sampled_from(world.clients))
        action = data.draw(st.sampled_from(["disable", "enable"]))
        http.post(f"/api/v1/clients/{target}/{action}", headers=headers)
    elif kind == "delete_client":
        target = data.draw(st.sampled_from(world.clients))
        http.delete(f"/api/v1/clients/{target}", headers=headers)
    elif kind == "transfer":
        target = data.draw(st.sampled_from(world.clients))
        owner = data.draw(st.sampled_from(world.users))
        response = http.post(
            f"/api/v1/clients/{target}/transfer",
            json={"owner_id": str(owner)},
            headers=headers,
        )
        assert response.status_code in (403, 404), response.text
    elif kind == "create_role":
        response = http.post(
            "/api/v1/roles",
            json={"name": f"r{next(_counter)}", "entitlements": some_entitlements},
            headers=headers,
        )
        if response.status_code == 201:
            world.roles.append(response.json()["id"])
    elif kind == "patch_role":
        target = data.draw(st.sampled_from(world.roles))
        http.patch(
            f"/api/v1/roles/{target}",
            json={"entitlements": some_entitlements},
            headers=headers,
        )
    elif kind == "create_user":
        roles = data.draw(st.lists(st.sampled_from(world.roles), max_size=2))
        response = http.post(
            "/api/v1/users",
            json={
                "username": f"u{next(_counter)}",
                "password": "Brand-New-Passw0rd",
                "role_ids": roles,
                "department_id": str(department) if department else None,
            },
            headers=headers,
        )
        if response.status_code == 201:
            body = response.json()
            assert body["department_id"] == (
                str(world.actor_department) if world.actor_department else None
            )
            world.users.append(uuid.UUID(body["id"]))
    elif kind == "patch_user":
        target = data.draw(st.sampled_from(world.users))
        change: dict[str, Any] = data.draw(
            st.sampled_from(
                [
                    {"department_id": str(department) if department else None},
                    {
                        "role_ids": data.draw(
                            st.lists(st.sampled_from(world.roles), max_size=2)
                        )
                    },
                ]
            )
        )
        http.patch(f"/api/v1/users/{target}", json=change, headers=headers)
    elif kind == "reset_password":
        target = data.draw(st.sampled_from(world.users))
        response = http.post(f"/api/v1/users/{target}/reset-password", headers=headers)
        if response.status_code == 200:
            # A now holds that user's password: it must be one A may manage.
            (entitlements, user_department) = _users_state(world.factory, [target])[
                target
            ]
            assert entitlements <= world.actor_entitlements
            assert target == world.actor or (
                world.actor_department is not None
                and user_department == world.actor_department
            )
    elif kind == "read_users":
        response = http.get("/api/v1/users?limit=1000", headers=headers)
        if response.status_code == 200:
            for user in response.json()["data"]:
                assert user["id"] == str(world.actor) or (
                    world.actor_department is not None
                    and user["department_id"] == str(world.actor_department)
                ), user
    elif kind == "read_clients":
        response = http.get("/api/v1/clients?limit=1000", headers=headers)
        if response.status_code == 200:
            for seen in response.json()["data"]:
                assert seen["created_by_id"] == str(world.actor) or (
                    world.actor_department is not None
                    and seen["department_id"] == str(world.actor_department)
                ), seen
    _check_invariants(world)


def _setup(
    app: FastAPI,
    http: TestClient,
    admin: Credentials,
    admin_headers: dict[str, str],
    data: st.DataObject,
) -> World:
    factory: sessionmaker[Session] = app.state.sessionmaker
    hasher: PasswordHasher = app.state.password_hasher
    n = next(_counter)
    d1 = make_department(factory, f"d1-{n}")
    d2 = make_department(factory, f"d2-{n}")
    departments: list[uuid.UUID | None] = [d1, d2, None]
    held = data.draw(entitlement_sets, label="A holds")
    other = data.draw(entitlement_sets, label="B holds")
    roles = [
        str(make_role(factory, name=f"ra-{n}", entitlements=held)),
        str(make_role(factory, name=f"rb-{n}", entitlements=other)),
    ]
    actor_department = data.draw(st.sampled_from([d1, None]), label="A's department")
    actor = make_user(
        factory,
        hasher,
        username=f"a-{n}",
        roles=(f"ra-{n}",),
        department_id=actor_department,
    )
    victim = make_user(
        factory,
        hasher,
        username=f"b-{n}",
        roles=(f"rb-{n}",),
        department_id=data.draw(st.sampled_from(departments), label="B's department"),
    )
    with factory.begin() as session:
        # The administrator works in A's department, so its clients are in A's sight.
        session.get_one(User, admin.user_id).department_id = actor_department
    almighty = http.post(
        "/api/v1/clients",
        json={"name": "almighty", "entitlements": sorted(ALL)},
        headers=admin_headers,
    )
    assert almighty.status_code == 201, almighty.text
    clients = [almighty.json()["id"]]
    with factory.begin() as session:
        # B's own client, as B would have made it (B may not hold clients:write).
        owned = ApiClient(
            client_id=f"sv-b-{n}",
            name="b's",
            secret_digest="-",
            entitlements=sorted(other),
            created_by_id=victim.user_id,
            department_id=session.get_one(User, victim.user_id).department_id,
        )
        session.add(owned)
        session.flush()
        clients.append(str(owned.id))
    users = [actor.user_id, victim.user_id, admin.user_id]
    world = World(
        app=app,
        http=http,
        factory=factory,
        actor=actor.user_id,
        actor_entitlements=held,
        actor_department=actor_department,
        departments=departments,
        users=users,
        roles=roles,
        clients=clients,
        tokens=[mint_token(app, actor.user_id)],
    )
    world.before_users = _users_state(factory, users)
    world.before_clients = _clients_state(factory, clients)
    return world


@hypothesis_settings(
    max_examples=60,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(data=st.data())
def test_no_sequence_of_delegation_calls_reaches_beyond_what_the_actor_holds(
    app: FastAPI,
    client: TestClient,
    admin: Credentials,
    admin_headers: dict[str, str],
    licensed: None,
    data: st.DataObject,
) -> None:
    world = _setup(app, client, admin, admin_headers, data)
    for _ in range(data.draw(st.integers(min_value=4, max_value=20), label="steps")):
        _step(world, data)
