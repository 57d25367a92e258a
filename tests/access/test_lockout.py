"""Failed logins lock an address out of an account, never the account itself (issue #15, 3)."""

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta

import httpx2
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from app.access.lockout import ACCOUNT_WIDE
from app.access.models import LoginFailure, User, UserStatus
from app.core.config import Settings
from app.core.security import PasswordHasher
from app.main import create_app
from app.notifications.outbox import Event
from app.settings.models import SettingsSection
from tests.factories import (
    Credentials,
    assert_problem,
    audit_events,
    bearer,
    login,
    make_user,
)
from tests.notifications.outbox import outbox_payloads

THRESHOLD = 5
MINUTES = 10
ATTACKER = "203.0.113.7"
OWNER = "198.51.100.20"


@pytest.fixture
def bob(
    session_factory: sessionmaker[Session], hasher: PasswordHasher, admin: Credentials
) -> Credentials:
    # (The administrator first: bootstrap only happens on an empty user table.)
    with session_factory.begin() as session:
        session.add(
            SettingsSection(
                name="password-policy",
                value={"lockout_threshold": THRESHOLD, "lockout_minutes": MINUTES},
            )
        )
        session.add(
            SettingsSection(
                name="security", value={"login_attempts_per_minute_per_ip": 0}
            )
        )
    return make_user(session_factory, hasher, username="bob")


class _Clients(dict[str, TestClient]):
    def __init__(self, app: FastAPI) -> None:
        super().__init__()
        self.app = app

    def __missing__(self, ip: str) -> TestClient:
        made = self[ip] = TestClient(self.app, client=(ip, 40000))
        return made


@pytest.fixture
def from_address(app: FastAPI, client: TestClient) -> dict[str, TestClient]:
    """Clients of the app by source address (TestClient sets the connection's peer)."""
    return _Clients(app)


def fail(client: TestClient, username: str = "bob") -> int:
    return client.post(
        "/api/v1/auth/login", json={"username": username, "password": "wrong-one"}
    ).status_code


def attempt(client: TestClient, credentials: Credentials) -> httpx2.Response:
    return client.post(
        "/api/v1/auth/login",
        json={"username": credentials.username, "password": credentials.password},
    )


def rows(
    session_factory: sessionmaker[Session], account: str
) -> dict[str, LoginFailure]:
    with session_factory() as session:
        return {
            row.source: row
            for row in session.scalars(
                select(LoginFailure).where(LoginFailure.account == account)
            )
        }


def test_an_attacker_locks_out_only_their_own_address_not_the_administrator(
    from_address: dict[str, TestClient],
    admin: Credentials,
    bob: Credentials,
    session_factory: sessionmaker[Session],
) -> None:
    attacker = from_address[ATTACKER]
    for _ in range(THRESHOLD):
        assert fail(attacker, "admin") == 401
    # The attacker's address is locked out, even with the right password...
    body = assert_problem(attempt(attacker, admin), 429, "login_locked_out")
    assert "try again in" in body["detail"]
    retry = attempt(attacker, admin).headers["Retry-After"]
    assert MINUTES * 60 - 5 <= int(retry) <= MINUTES * 60
    # ...the owner, from another address, logs in.
    tokens = login(from_address[OWNER], admin)
    me = from_address[OWNER].get(
        "/api/v1/auth/me", headers=bearer(tokens["access_token"])
    )
    assert me.json()["username"] == "admin"
    with session_factory() as session:
        assert session.get_one(User, admin.user_id).status == UserStatus.ACTIVE
    [locked] = audit_events(session_factory, "user.locked")
    assert (locked.resource_id, locked.details["ip"], locked.details["failures"]) == (
        str(admin.user_id),
        ATTACKER,
        THRESHOLD,
    )
    [payload] = outbox_payloads(session_factory, Event.USER_LOCKED)
    assert (payload["username"], payload["ip"]) == ("admin", ATTACKER)
    # Refused attempts were neither checked nor counted.
    assert (
        len(audit_events(session_factory, "auth.login", outcome="failure")) == THRESHOLD
    )
    refused = audit_events(session_factory, "auth.login", outcome="denied")
    assert [e.details["reason"] for e in refused] == ["login_locked_out"] * 2
    assert rows(session_factory, "admin")[ATTACKER].count == THRESHOLD


def test_a_locked_out_address_answers_the_same_for_names_that_do_not_exist(
    from_address: dict[str, TestClient],
    bob: Credentials,
    session_factory: sessionmaker[Session],
) -> None:
    attacker = from_address[ATTACKER]
    for name in ("bob", "nobody"):
        for _ in range(THRESHOLD):
            assert fail(attacker, name) == 401
        assert_problem(
            attacker.post(
                "/api/v1/auth/login", json={"username": name, "password": "x"}
            ),
            429,
            "login_locked_out",
        )
    # Only the real account is announced.
    [locked] = audit_events(session_factory, "user.locked")
    assert locked.details["username"] == "bob"


def test_a_success_clears_its_address_counter(
    from_address: dict[str, TestClient], bob: Credentials
) -> None:
    owner = from_address[OWNER]
    for _ in range(THRESHOLD - 1):
        assert fail(owner) == 401
    login(owner, bob)
    for _ in range(THRESHOLD - 1):
        assert fail(owner) == 401
    login(owner, bob)


def test_the_lockout_ends_and_the_address_counts_from_zero(
    from_address: dict[str, TestClient],
    bob: Credentials,
    session_factory: sessionmaker[Session],
) -> None:
    attacker = from_address[ATTACKER]
    for _ in range(THRESHOLD):
        fail(attacker)
    # The lockout's minutes pass.
    earlier = timedelta(minutes=MINUTES, seconds=1)
    with session_factory.begin() as session:
        for row in session.scalars(select(LoginFailure)):
            row.last_failed_at -= earlier
            if row.locked_until is not None:
                row.locked_until -= earlier
    assert fail(attacker) == 401
    row = rows(session_factory, "bob")[ATTACKER]
    assert (row.count, row.locked_until) == (1, None)
    login(attacker, bob)
    assert ATTACKER not in rows(session_factory, "bob")


def test_failures_spread_over_addresses_grow_the_wait_without_locking_the_owner_out(
    from_address: dict[str, TestClient],
    bob: Credentials,
    session_factory: sessionmaker[Session],
) -> None:
    first = from_address["10.9.0.1"]
    for n in range(1, 11):  # ten addresses, one guess each: none is locked out
        assert fail(from_address[f"10.9.0.{n}"]) == 401
    # 10 recent failures, threshold 5: an address that failed waits 2^5 s.
    waited = first.post("/api/v1/auth/login", json={"username": "bob", "password": "x"})
    assert_problem(waited, 429, "login_delayed")
    first_wait = int(waited.headers["Retry-After"])
    assert 25 <= first_wait <= 32
    for n in range(11, 13):
        assert fail(from_address[f"10.9.0.{n}"]) == 401
    waited = first.post("/api/v1/auth/login", json={"username": "bob", "password": "x"})
    assert_problem(waited, 429, "login_delayed")
    assert 120 <= int(waited.headers["Retry-After"]) <= 128
    # The right password from a delayed address is refused unchecked, like a wrong one.
    assert_problem(attempt(first, bob), 429, "login_delayed")
    # The owner, from an address with no failure, is not held back; no lock anywhere.
    login(from_address[OWNER], bob)
    with session_factory() as session:
        assert session.get_one(User, bob.user_id).status == UserStatus.ACTIVE
    assert rows(session_factory, "bob")[ACCOUNT_WIDE].count == 12
    assert audit_events(session_factory, "user.locked") == []
    # Twice the threshold from all addresses raised the alarm, once.
    [suspected] = outbox_payloads(session_factory, Event.LOGIN_ATTACK_SUSPECTED)
    assert {k: suspected[k] for k in ("username", "failures", "addresses")} == {
        "username": "bob",
        "failures": 2 * THRESHOLD,
        "addresses": 2 * THRESHOLD,
    }
    [audited] = audit_events(session_factory, "login.attack_suspected")
    assert audited.resource_id == str(bob.user_id)


def test_unlock_lets_every_locked_out_address_try_again(
    from_address: dict[str, TestClient],
    bob: Credentials,
    admin_headers: dict[str, str],
    session_factory: sessionmaker[Session],
) -> None:
    attacker = from_address[ATTACKER]
    for _ in range(THRESHOLD):
        fail(attacker)
    assert_problem(attempt(attacker, bob), 429, "login_locked_out")
    unlocked = from_address[OWNER].post(
        f"/api/v1/users/{bob.user_id}/unlock", headers=admin_headers
    )
    assert unlocked.json()["status"] == "active"
    assert rows(session_factory, "bob") == {}
    login(attacker, bob)
    [event] = audit_events(session_factory, "user.unlocked")
    assert event.details == {"reason": "by_administrator", "addresses": 1}
    assert event.actor_kind == "user"


def test_zero_threshold_counts_nothing(
    from_address: dict[str, TestClient],
    bob: Credentials,
    session_factory: sessionmaker[Session],
) -> None:
    with session_factory.begin() as session:
        session.get_one(SettingsSection, "password-policy").value = {
            "lockout_threshold": 0
        }
    for _ in range(THRESHOLD + 1):
        assert fail(from_address[ATTACKER]) == 401
    login(from_address[ATTACKER], bob)
    assert rows(session_factory, "bob") == {}


@pytest.fixture
def second_app(settings: Settings) -> Iterator[FastAPI]:
    """Another app instance on the same database: a second worker process's view."""
    other = create_app(settings)
    yield other
    other.state.engine.dispose()


def test_failures_counted_by_two_app_instances_lock_the_address_exactly_once_at_n(
    app: FastAPI,
    second_app: FastAPI,
    bob: Credentials,
    session_factory: sessionmaker[Session],
) -> None:
    attempts = 3 * THRESHOLD
    clients = [
        TestClient(app, client=(ATTACKER, 1)),
        TestClient(second_app, client=(ATTACKER, 2)),
    ]
    # FastAPI builds its route table lazily, and not thread-safely: build it first.
    for warm in clients:
        assert fail(warm, "nobody") == 401

    def guess(i: int) -> int:
        return fail(clients[i % 2])

    with ThreadPoolExecutor(max_workers=6) as pool:
        statuses = list(pool.map(guess, range(attempts)))
    assert set(statuses) <= {401, 429}
    assert statuses.count(401) >= THRESHOLD
    row = rows(session_factory, "bob")[ATTACKER]
    assert row.count == statuses.count(401)
    assert row.locked_until is not None
    [locked] = audit_events(session_factory, "user.locked")
    assert locked.details["failures"] == THRESHOLD


def test_only_an_administrator_locks_a_user_and_unlock_lifts_it(
    client: TestClient,
    bob: Credentials,
    admin: Credentials,
    admin_headers: dict[str, str],
    session_factory: sessionmaker[Session],
) -> None:
    tokens = login(client, bob)
    locked = client.post(f"/api/v1/users/{bob.user_id}/lock", headers=admin_headers)
    assert locked.json()["status"] == "locked"
    body = assert_problem(attempt(client, bob), 403, "account_locked")
    assert "administrator unlocks" in body["detail"]
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
    # The last active administrator cannot be locked.
    assert_problem(
        client.post(f"/api/v1/users/{admin.user_id}/lock", headers=admin_headers),
        409,
        "last_administrator",
    )
    client.post(f"/api/v1/users/{bob.user_id}/unlock", headers=admin_headers)
    login(client, bob)
    [event] = audit_events(session_factory, "user.locked")
    assert (event.actor_kind, event.details) == ("user", {"reason": "by_administrator"})
