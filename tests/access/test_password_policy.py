from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import update
from sqlalchemy.orm import Session, sessionmaker

from app.access.models import User
from app.core.security import PasswordHasher
from app.core.types import utcnow
from tests.factories import assert_problem, audit_events, bearer, login, make_user

STRICT = {
    "min_length": 12,
    "require_uppercase": True,
    "require_lowercase": True,
    "require_digit": True,
    "require_symbol": True,
    "history": 3,
    "max_age_days": 0,
    "lockout_threshold": 5,
    "lockout_minutes": 15,
}


@pytest.fixture
def strict(client: TestClient, admin_headers: dict[str, str]) -> None:
    response = client.put(
        "/api/v1/settings/password-policy", json=STRICT, headers=admin_headers
    )
    assert response.status_code == 200, response.text


@pytest.mark.usefixtures("strict")
@pytest.mark.parametrize(
    ("password", "reason"),
    [
        ("Sh0rt!pass", "must be at least 12 characters long"),
        ("no-upper-case-1", "must contain an uppercase letter"),
        ("NO-LOWER-CASE-1", "must contain a lowercase letter"),
        ("No-Digits-Here!", "must contain a digit"),
        ("NoSymbolsHere1", "must contain a symbol"),
    ],
)
def test_each_rule_refuses_with_its_message(
    client: TestClient, admin_headers: dict[str, str], password: str, reason: str
) -> None:
    response = client.post(
        "/api/v1/users",
        json={"username": "bob", "password": password},
        headers=admin_headers,
    )
    body = assert_problem(response, 422, "password_policy_violation")
    assert body["invalid_params"] == [
        {"name": "password", "in": "body", "reason": reason}
    ]
    assert reason in body["detail"]


@pytest.mark.usefixtures("strict")
def test_every_broken_rule_is_named_at_once(
    client: TestClient, admin_headers: dict[str, str]
) -> None:
    response = client.post(
        "/api/v1/users",
        json={"username": "bob", "password": "abc"},
        headers=admin_headers,
    )
    body = assert_problem(response, 422, "password_policy_violation")
    assert len(body["invalid_params"]) == 4


@pytest.mark.usefixtures("strict")
def test_change_refuses_the_last_n_passwords(
    client: TestClient,
    session_factory: sessionmaker[Session],
    hasher: PasswordHasher,
) -> None:
    bob = make_user(session_factory, hasher, username="bob", password="First-Passw0rd!")
    headers = bearer(login(client, bob)["access_token"])

    def change(old: str, new: str) -> int:
        return client.post(
            "/api/v1/auth/password",
            json={"old_password": old, "new_password": new},
            headers=headers,
        ).status_code

    assert change("First-Passw0rd!", "Second-Passw0rd!") == 204
    assert change("Second-Passw0rd!", "Third-Passw0rd!") == 204
    response = client.post(
        "/api/v1/auth/password",
        json={"old_password": "Third-Passw0rd!", "new_password": "First-Passw0rd!"},
        headers=headers,
    )
    body = assert_problem(response, 422, "password_policy_violation")
    assert body["invalid_params"][0] == {
        "name": "new_password",
        "in": "body",
        "reason": "must not be one of the last 3 passwords",
    }
    # Three changes later the first one is out of the history.
    assert change("Third-Passw0rd!", "Fourth-Passw0rd!") == 204
    assert change("Fourth-Passw0rd!", "First-Passw0rd!") == 204


@pytest.mark.usefixtures("strict")
def test_change_checks_the_current_password_and_the_policy(
    client: TestClient,
    session_factory: sessionmaker[Session],
    hasher: PasswordHasher,
) -> None:
    bob = make_user(session_factory, hasher, username="bob", password="First-Passw0rd!")
    headers = bearer(login(client, bob)["access_token"])
    wrong = client.post(
        "/api/v1/auth/password",
        json={"old_password": "nope", "new_password": "Second-Passw0rd!"},
        headers=headers,
    )
    assert_problem(wrong, 403, "wrong_password")
    weak = client.post(
        "/api/v1/auth/password",
        json={"old_password": "First-Passw0rd!", "new_password": "weak"},
        headers=headers,
    )
    assert_problem(weak, 422, "password_policy_violation")
    [refused] = audit_events(session_factory, "user.password_changed")
    assert refused.outcome == "failure"


def test_expired_password_must_be_changed_before_anything_else(
    client: TestClient,
    admin_headers: dict[str, str],
    session_factory: sessionmaker[Session],
    hasher: PasswordHasher,
) -> None:
    client.put(
        "/api/v1/settings/password-policy",
        json={"max_age_days": 30},
        headers=admin_headers,
    )
    bob = make_user(
        session_factory, hasher, username="bob", roles=("certificate-manager",)
    )
    with session_factory.begin() as session:
        session.execute(
            update(User)
            .where(User.id == bob.user_id)
            .values(password_changed_at=utcnow() - timedelta(days=31))
        )
    headers = bearer(login(client, bob)["access_token"])
    assert_problem(
        client.get("/api/v1/users", headers=headers), 403, "password_change_required"
    )
    client.post(
        "/api/v1/auth/password",
        json={"old_password": bob.password, "new_password": "Renewed-Passw0rd"},
        headers=headers,
    )
    assert client.get("/api/v1/users", headers=headers).status_code == 200


def test_policy_is_read_and_replaced_with_an_audited_diff(
    client: TestClient,
    admin_headers: dict[str, str],
    session_factory: sessionmaker[Session],
) -> None:
    defaults = client.get("/api/v1/settings/password-policy", headers=admin_headers)
    assert defaults.json()["min_length"] == 10
    assert defaults.json()["lockout_threshold"] == 5
    client.put(
        "/api/v1/settings/password-policy",
        json={"min_length": 14},
        headers=admin_headers,
    )
    assert (
        client.get("/api/v1/settings/password-policy", headers=admin_headers).json()[
            "min_length"
        ]
        == 14
    )
    [event] = audit_events(session_factory, "settings.updated")
    assert (event.resource_id, event.details) == (
        "password-policy",
        {"before": {"min_length": 10}, "after": {"min_length": 14}},
    )
    invalid = client.put(
        "/api/v1/settings/password-policy",
        json={"min_length": 3},
        headers=admin_headers,
    )
    assert_problem(invalid, 422, "validation_failed")
    unknown = client.put(
        "/api/v1/settings/password-policy",
        json={"colour": "red"},
        headers=admin_headers,
    )
    assert_problem(unknown, 422, "validation_failed")
