from collections.abc import Callable
from datetime import datetime, timedelta

import pyotp
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from app.access.models import User
from app.auth import totp as totp_module
from app.core.security import PasswordHasher
from app.core.types import utcnow
from tests.factories import (
    Credentials,
    assert_problem,
    audit_events,
    bearer,
    login,
    make_user,
)

Clock = Callable[[int], None]


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> Clock:
    """Move the server's TOTP clock by whole 30-second steps."""
    start = utcnow()

    def move_to(step: int) -> None:
        moment: datetime = start + timedelta(seconds=30 * step)
        monkeypatch.setattr(totp_module, "utcnow", lambda: moment)

    move_to(0)
    return move_to


def code_at(secret: str, step: int) -> str:
    totp = pyotp.TOTP(secret)
    return totp.generate_otp(totp.timecode(utcnow()) + step)


def enrol(client: TestClient, headers: dict[str, str]) -> str:
    setup = client.post("/api/v1/auth/2fa/setup", headers=headers)
    assert setup.status_code == 200, setup.text
    secret: str = setup.json()["secret"]
    assert setup.json()["otpauth_uri"].startswith("otpauth://totp/SignVault:")
    enabled = client.post(
        "/api/v1/auth/2fa/enable", json={"code": code_at(secret, 0)}, headers=headers
    )
    assert enabled.status_code == 204, enabled.text
    return secret


@pytest.fixture
def bob(
    session_factory: sessionmaker[Session], hasher: PasswordHasher, admin: Credentials
) -> Credentials:
    # (The administrator first: bootstrap only happens on an empty user table.)
    return make_user(session_factory, hasher, username="bob")


def totp_login(
    client: TestClient, user: Credentials, code: str | None
) -> tuple[int, dict[str, str]]:
    body = {"username": user.username, "password": user.password}
    if code is not None:
        body["totp"] = code
    response = client.post("/api/v1/auth/login", json=body)
    answer: dict[str, str] = response.json()
    return response.status_code, answer


@pytest.mark.usefixtures("clock")
def test_enrolment_needs_confirmation_before_login_asks_for_a_code(
    client: TestClient, bob: Credentials
) -> None:
    headers = bearer(login(client, bob)["access_token"])
    client.post("/api/v1/auth/2fa/setup", headers=headers)
    # Pending only: the password alone still logs in.
    login(client, bob)
    assert not client.get("/api/v1/auth/me", headers=headers).json()[
        "two_factor_enabled"
    ]


def test_login_with_2fa_needs_a_fresh_right_code(
    client: TestClient,
    bob: Credentials,
    clock: Clock,
    session_factory: sessionmaker[Session],
) -> None:
    secret = enrol(client, bearer(login(client, bob)["access_token"]))
    status, body = totp_login(client, bob, None)
    assert (status, body["code"]) == (401, "totp_required")
    status, body = totp_login(
        client, bob, "000000" if code_at(secret, 1) != "000000" else "111111"
    )
    assert (status, body["code"]) == (401, "invalid_totp")
    clock(1)
    status, body = totp_login(client, bob, code_at(secret, 1))
    assert status == 200, body
    # The same code again (a replay) is refused, though still within its window.
    status, body = totp_login(client, bob, code_at(secret, 1))
    assert (status, body["code"]) == (401, "invalid_totp")
    reasons = [
        e.details["reason"]
        for e in audit_events(session_factory, "auth.login", outcome="failure")
    ]
    assert reasons == ["totp_missing", "wrong_totp", "wrong_totp"]


def test_wrong_codes_lock_out_their_address_and_the_owner_logs_in_from_another(
    app: FastAPI,
    client: TestClient,
    bob: Credentials,
    clock: Clock,
    session_factory: sessionmaker[Session],
) -> None:
    secret = enrol(client, bearer(login(client, bob)["access_token"]))
    # Someone who has the password but not the second factor.
    attacker = TestClient(app, client=("203.0.113.7", 40000))
    wrong = "000000" if code_at(secret, 1) != "000000" else "111111"
    for _ in range(5):
        assert totp_login(attacker, bob, wrong)[0] == 401
    [locked] = audit_events(session_factory, "user.locked")
    assert locked.details["ip"] == "203.0.113.7"
    status, body = totp_login(attacker, bob, wrong)
    assert (status, body["code"]) == (429, "login_locked_out")
    clock(1)
    owner = TestClient(app, client=("198.51.100.20", 40000))
    status, body = totp_login(owner, bob, code_at(secret, 1))
    assert status == 200, body


def test_seed_is_stored_sealed(
    client: TestClient, bob: Credentials, session_factory: sessionmaker[Session]
) -> None:
    secret = enrol(client, bearer(login(client, bob)["access_token"]))
    with session_factory() as session:
        user = session.get_one(User, bob.user_id)
        assert user.totp_seed is not None
        assert user.totp_pending_seed is None
        assert secret.encode() not in user.totp_seed
        assert user.totp_seed.startswith(b"SV1")
    events = audit_events(session_factory)
    assert all(secret not in str(e.details) for e in events)


def test_enable_with_a_wrong_code_keeps_2fa_off(
    client: TestClient, bob: Credentials, session_factory: sessionmaker[Session]
) -> None:
    headers = bearer(login(client, bob)["access_token"])
    secret = client.post("/api/v1/auth/2fa/setup", headers=headers).json()["secret"]
    wrong = "123456" if code_at(secret, 0) != "123456" else "654321"
    response = client.post(
        "/api/v1/auth/2fa/enable", json={"code": wrong}, headers=headers
    )
    assert_problem(response, 422, "invalid_totp_code")
    assert audit_events(session_factory, "user.2fa_refused")
    login(client, bob)


def test_disable_needs_a_fresh_code(
    client: TestClient, bob: Credentials, clock: Clock
) -> None:
    headers = bearer(login(client, bob)["access_token"])
    secret = enrol(client, headers)
    replayed = client.post(
        "/api/v1/auth/2fa/disable", json={"code": code_at(secret, 0)}, headers=headers
    )
    assert_problem(replayed, 422, "invalid_totp_code")
    clock(1)
    response = client.post(
        "/api/v1/auth/2fa/disable", json={"code": code_at(secret, 1)}, headers=headers
    )
    assert response.status_code == 204, response.text
    login(client, bob)
    assert_problem(
        client.post(
            "/api/v1/auth/2fa/disable", json={"code": "123456"}, headers=headers
        ),
        409,
        "totp_not_enabled",
    )


@pytest.mark.usefixtures("clock")
def test_administrator_removes_a_users_2fa(
    client: TestClient,
    bob: Credentials,
    admin_headers: dict[str, str],
    session_factory: sessionmaker[Session],
) -> None:
    enrol(client, bearer(login(client, bob)["access_token"]))
    response = client.post(
        f"/api/v1/users/{bob.user_id}/2fa/disable", headers=admin_headers
    )
    assert response.json()["two_factor_enabled"] is False
    login(client, bob)
    [event] = audit_events(session_factory, "user.2fa_disabled")
    assert event.details == {"by": "administrator"}


@pytest.mark.usefixtures("clock")
def test_password_grant_of_a_2fa_account_is_refused(
    client: TestClient, bob: Credentials
) -> None:
    enrol(client, bearer(login(client, bob)["access_token"]))
    response = client.post(
        "/api/v1/auth/token",
        data={"grant_type": "password", "username": "bob", "password": bob.password},
    )
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_grant"


@pytest.mark.usefixtures("clock")
def test_administrators_must_enrol_when_the_security_settings_say_so(
    client: TestClient, admin_headers: dict[str, str]
) -> None:
    client.put(
        "/api/v1/settings/security",
        json={"require_2fa_for_administrators": True},
        headers=admin_headers,
    )
    assert_problem(
        client.get("/api/v1/users", headers=admin_headers),
        403,
        "two_factor_enrolment_required",
    )
    enrol(client, admin_headers)
    assert client.get("/api/v1/users", headers=admin_headers).status_code == 200


def test_2fa_without_a_master_key_is_503(
    client: TestClient, bob: Credentials, app: object
) -> None:
    app.state.cipher = None  # type: ignore[attr-defined]
    headers = bearer(login(client, bob)["access_token"])
    assert_problem(
        client.post("/api/v1/auth/2fa/setup", headers=headers),
        503,
        "service_unavailable",
    )
