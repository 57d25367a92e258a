from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import update
from sqlalchemy.orm import Session, sessionmaker

from app.access.models import User, UserStatus
from app.core.config import Settings
from app.core.security import PasswordHasher
from app.core.types import utcnow
from app.main import create_app
from app.settings.models import SettingsSection
from tests.factories import (
    Credentials,
    assert_problem,
    audit_events,
    bearer,
    login,
    make_user,
)

THRESHOLD = 5


@pytest.fixture
def bob(
    session_factory: sessionmaker[Session], hasher: PasswordHasher, admin: Credentials
) -> Credentials:
    # (The administrator first: bootstrap only happens on an empty user table.)
    with session_factory.begin() as session:
        session.add(
            SettingsSection(
                name="password-policy",
                value={"lockout_threshold": THRESHOLD, "lockout_minutes": 10},
            )
        )
        session.add(
            SettingsSection(
                name="security", value={"login_attempts_per_minute_per_ip": 0}
            )
        )
    return make_user(session_factory, hasher, username="bob")


def fail(client: TestClient, username: str = "bob") -> int:
    return client.post(
        "/api/v1/auth/login", json={"username": username, "password": "wrong-one"}
    ).status_code


def state(session_factory: sessionmaker[Session], credentials: Credentials) -> User:
    with session_factory() as session:
        return session.get_one(User, credentials.user_id)


def test_account_locks_at_exactly_n_failures_in_a_row(
    client: TestClient, bob: Credentials, session_factory: sessionmaker[Session]
) -> None:
    for _ in range(THRESHOLD - 1):
        assert fail(client) == 401
    assert state(session_factory, bob).status == UserStatus.ACTIVE
    assert audit_events(session_factory, "user.locked") == []
    assert fail(client) == 401
    user = state(session_factory, bob)
    assert user.status == UserStatus.LOCKED
    assert user.locked_until is not None
    assert timedelta(minutes=9) < user.locked_until - utcnow() <= timedelta(minutes=10)
    [locked] = audit_events(session_factory, "user.locked")
    assert (locked.resource_id, locked.details["failures"]) == (
        str(bob.user_id),
        THRESHOLD,
    )
    right = client.post(
        "/api/v1/auth/login", json={"username": "bob", "password": bob.password}
    )
    body = assert_problem(right, 403, "account_locked")
    assert "locked until" in body["detail"]
    failures = audit_events(session_factory, "auth.login", outcome="failure")
    assert len(failures) == THRESHOLD


def test_a_success_resets_the_counter(
    client: TestClient, bob: Credentials, session_factory: sessionmaker[Session]
) -> None:
    for _ in range(THRESHOLD - 1):
        fail(client)
    login(client, bob)
    for _ in range(THRESHOLD - 1):
        fail(client)
    assert state(session_factory, bob).status == UserStatus.ACTIVE


def test_lock_expires_and_the_counter_restarts(
    client: TestClient, bob: Credentials, session_factory: sessionmaker[Session]
) -> None:
    for _ in range(THRESHOLD):
        fail(client)
    with session_factory.begin() as session:
        session.execute(
            update(User)
            .where(User.id == bob.user_id)
            .values(locked_until=utcnow() - timedelta(seconds=1))
        )
    # A wrong password after expiry counts from zero again: not re-locked.
    assert fail(client) == 401
    user = state(session_factory, bob)
    assert (user.status, user.failed_login_count) == (UserStatus.ACTIVE, 1)
    login(client, bob)
    [unlocked] = audit_events(session_factory, "user.unlocked")
    assert unlocked.details == {"reason": "lock_expired"}


def test_administrator_unlocks_and_the_tokens_of_a_locked_account_still_work(
    client: TestClient,
    bob: Credentials,
    admin_headers: dict[str, str],
    session_factory: sessionmaker[Session],
) -> None:
    tokens = login(client, bob)
    for _ in range(THRESHOLD):
        fail(client)
    assert (
        client.get(
            "/api/v1/auth/me", headers=bearer(tokens["access_token"])
        ).status_code
        == 200
    )
    assert_problem(
        client.post(
            "/api/v1/auth/refresh", json={"refresh_token": tokens["refresh_token"]}
        ),
        401,
        "invalid_refresh_token",
    )
    listed = client.get(
        "/api/v1/users", params={"status": "locked"}, headers=admin_headers
    ).json()
    assert [u["username"] for u in listed["data"]] == ["bob"]
    response = client.post(f"/api/v1/users/{bob.user_id}/unlock", headers=admin_headers)
    assert response.json()["status"] == "active"
    login(client, bob)
    [unlocked] = audit_events(session_factory, "user.unlocked")
    assert unlocked.details == {"reason": "by_administrator"}
    assert unlocked.actor_kind == "user"


def test_unknown_users_lock_nothing(
    client: TestClient, bob: Credentials, session_factory: sessionmaker[Session]
) -> None:
    for _ in range(THRESHOLD + 1):
        assert fail(client, "nobody") == 401
    assert audit_events(session_factory, "user.locked") == []


@pytest.fixture
def second_app(settings: Settings) -> Iterator[FastAPI]:
    """Another app instance on the same database: a second worker process's view."""
    other = create_app(settings)
    yield other
    other.state.engine.dispose()


def test_failures_counted_by_two_app_instances_lock_exactly_once_at_n(
    app: FastAPI,
    second_app: FastAPI,
    bob: Credentials,
    session_factory: sessionmaker[Session],
) -> None:
    attempts = 3 * THRESHOLD
    clients = [TestClient(app), TestClient(second_app)]
    # FastAPI builds its route table lazily, and not thread-safely: build it first.
    for warm in clients:
        assert fail(warm, "nobody") == 401

    def attempt(i: int) -> int:
        return fail(clients[i % 2])

    with ThreadPoolExecutor(max_workers=6) as pool:
        statuses = list(pool.map(attempt, range(attempts)))
    assert statuses == [401] * attempts
    user = state(session_factory, bob)
    assert (user.status, user.failed_login_count) == (UserStatus.LOCKED, attempts)
    [locked] = audit_events(session_factory, "user.locked")
    assert locked.details["failures"] == THRESHOLD


def test_right_password_after_the_lock_expired_logs_in(
    client: TestClient, bob: Credentials, session_factory: sessionmaker[Session]
) -> None:
    for _ in range(THRESHOLD):
        fail(client)
    with session_factory.begin() as session:
        session.execute(
            update(User)
            .where(User.id == bob.user_id)
            .values(locked_until=utcnow() - timedelta(seconds=1))
        )
    tokens = login(client, bob)
    me = client.get("/api/v1/auth/me", headers=bearer(tokens["access_token"])).json()
    assert me["roles"][0]["name"] == "signer"
    user = state(session_factory, bob)
    assert (user.status, user.failed_login_count) == (UserStatus.ACTIVE, 0)
    assert len(audit_events(session_factory, "user.unlocked")) == 1
