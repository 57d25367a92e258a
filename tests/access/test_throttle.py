from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from app.access import throttle
from app.access.models import RateLimitWindow
from app.core.config import Settings
from app.main import create_app
from app.settings.schemas import SecuritySettings
from tests.factories import Credentials, assert_problem, login, set_rate_limits


def test_requests_over_the_limit_are_429_with_retry_after(
    client: TestClient,
    admin_headers: dict[str, str],
    session_factory: sessionmaker[Session],
) -> None:
    set_rate_limits(session_factory, rate_limit_per_minute=3)
    for _ in range(3):
        assert client.get("/api/v1/auth/me", headers=admin_headers).status_code == 200
    response = client.get("/api/v1/auth/me", headers=admin_headers)
    body = assert_problem(response, 429, "too_many_requests")
    assert 1 <= int(response.headers["retry-after"]) <= 60
    assert "3 requests per minute" in body["detail"]


def test_limit_zero_is_off(
    client: TestClient,
    admin_headers: dict[str, str],
    session_factory: sessionmaker[Session],
) -> None:
    set_rate_limits(session_factory, rate_limit_per_minute=0)
    for _ in range(5):
        assert client.get("/api/v1/auth/me", headers=admin_headers).status_code == 200
    with session_factory() as session:
        principal_windows = select(func.count()).where(
            RateLimitWindow.bucket.startswith("user:")
        )
        assert session.scalar(principal_windows) == 0


def test_login_attempts_are_throttled_per_ip(
    client: TestClient, admin: Credentials, session_factory: sessionmaker[Session]
) -> None:
    set_rate_limits(session_factory, login_attempts_per_minute_per_ip=2)
    login(client, admin)
    bad = client.post("/api/v1/auth/login", json={"username": "x", "password": "y"})
    assert bad.status_code == 401
    response = client.post(
        "/api/v1/auth/login", json={"username": "admin", "password": admin.password}
    )
    assert_problem(response, 429, "too_many_requests")
    token = client.post(
        "/api/v1/auth/token",
        data={
            "grant_type": "password",
            "username": "admin",
            "password": admin.password,
        },
    )
    assert token.status_code == 429


@pytest.fixture
def second_app(settings: Settings) -> Iterator[FastAPI]:
    other = create_app(settings)
    yield other
    other.state.engine.dispose()


def test_the_window_is_shared_by_app_instances(
    client: TestClient,
    second_app: FastAPI,
    admin_headers: dict[str, str],
    session_factory: sessionmaker[Session],
) -> None:
    set_rate_limits(session_factory, rate_limit_per_minute=4)
    other = TestClient(second_app)
    statuses = [
        (client if i % 2 else other)
        .get("/api/v1/auth/me", headers=admin_headers)
        .status_code
        for i in range(6)
    ]
    assert statuses == [200, 200, 200, 200, 429, 429]


def test_a_new_window_starts_at_zero_and_sweeps_ended_ones(
    session_factory: sessionmaker[Session],
) -> None:
    minute = datetime(2026, 11, 23, 10, 0, 5, tzinfo=UTC)
    next_minute = datetime(2026, 11, 23, 10, 1, 1, tzinfo=UTC)
    with session_factory.begin() as session:
        assert throttle.count_hit(session, bucket="b", limit=1, now=minute) is None
        refused = throttle.count_hit(session, bucket="b", limit=1, now=minute)
        assert refused is not None
        assert refused.headers["Retry-After"] == "55"
        assert throttle.count_hit(session, bucket="b", limit=1, now=next_minute) is None
        windows = session.scalars(select(RateLimitWindow)).all()
        assert [(w.bucket, w.count) for w in windows] == [("b", 1)]


def test_refused_requests_count_too(
    client: TestClient,
    admin_headers: dict[str, str],
    session_factory: sessionmaker[Session],
) -> None:
    set_rate_limits(session_factory, rate_limit_per_minute=2)
    for _ in range(4):
        client.get("/api/v1/clients/not-a-uuid", headers=admin_headers)
    with session_factory() as session:
        [window] = session.scalars(
            select(RateLimitWindow).where(RateLimitWindow.bucket.startswith("user:"))
        ).all()
    assert window.count == 4


def test_the_environment_settings_apply_when_the_section_says_null() -> None:
    settings = Settings(_env_file=None)
    assert (settings.rate_limit_per_minute, settings.login_rate_limit_per_minute) == (
        100,
        20,
    )
    section = SecuritySettings()
    assert throttle.principal_limit(section, settings) == 100
    assert throttle.login_limit(section, settings) == 20
    overridden = SecuritySettings(rate_limit_per_minute=0)
    assert throttle.principal_limit(overridden, settings) == 0
