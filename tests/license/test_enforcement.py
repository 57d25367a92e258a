"""Enforcement: signatures per month and in total, users, features, expiry; with a controlled clock."""

from datetime import UTC, datetime, timedelta

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fastapi.testclient import TestClient
from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from app.access import service as access_service
from app.access.models import User, UserStatus
from app.audit.service import SYSTEM, Actor, ActorKind
from app.core.security import PasswordHasher
from app.license import service as license_service
from app.license.errors import (
    LicenseExpired,
    LicenseFeatureMissing,
    LicenseLimitReached,
)
from app.license.models import LicenseStateRow, LicenseUsage
from app.license.service import Feature, LicenseState
from tests.factories import Credentials, audit_events, login, make_user
from tests.license.conftest import make_license, request_transaction

SIGNER = Actor(ActorKind.USER, "00000000-0000-0000-0000-0000000000aa", "sam")
NOV_1 = datetime(2030, 11, 1, tzinfo=UTC)


def install(
    sessions: sessionmaker[Session],
    issuer: Ed25519PrivateKey,
    *,
    now: datetime = NOV_1,
    days: int = 365,
    **grant: object,
) -> None:
    content = make_license(
        issuer,
        valid_from=now - timedelta(days=1),
        valid_until=now + timedelta(days=days),
        **grant,  # type: ignore[arg-type]
    )
    with sessions.begin() as session:
        license_service.install_license(session, actor=SYSTEM, content=content, now=now)


def sign(sessions: sessionmaker[Session], now: datetime) -> int:
    """One signing transaction; the new monthly count."""
    with request_transaction(sessions) as session:
        return license_service.reserve_signature(
            session, actor=SIGNER, now=now
        ).signatures_this_month


def counters(sessions: sessionmaker[Session]) -> dict[str, int]:
    with sessions() as session:
        return {
            row.period: row.signatures for row in session.scalars(select(LicenseUsage))
        }


def test_monthly_limit_refuses_then_rolls_over_with_the_month(
    sessions: sessionmaker[Session], issuer: Ed25519PrivateKey
) -> None:
    install(sessions, issuer, signatures_per_month=3)
    end_of_november = datetime(2030, 11, 30, 23, 59, 59, tzinfo=UTC)
    assert [sign(sessions, end_of_november) for _ in range(3)] == [1, 2, 3]
    with pytest.raises(LicenseLimitReached, match="2030-11"):
        sign(sessions, end_of_november)
    december = datetime(2030, 12, 1, 0, 0, 1, tzinfo=UTC)
    assert sign(sessions, december) == 1
    assert counters(sessions) == {"total": 4, "2030-11": 3, "2030-12": 1}
    with sessions() as session:
        usage = license_service.usage(session, now=december)
    assert usage.period == "2030-12"
    assert (usage.signatures_this_month.used, usage.signatures_this_month.limit) == (
        1,
        3,
    )
    assert usage.signatures_total.used == 4
    assert usage.months == [("2030-12", 1), ("2030-11", 3)]
    [denied] = audit_events(sessions, "license.denied")
    assert denied.outcome == "denied"
    assert denied.actor_name == "sam"
    assert denied.details["code"] == "license_limit_reached"
    assert denied.details["limit"] == "signatures_per_month"


def test_total_limit_spans_months_and_undoes_the_monthly_count(
    sessions: sessionmaker[Session], issuer: Ed25519PrivateKey
) -> None:
    install(sessions, issuer, signatures_per_month=10, signatures_total=2)
    sign(sessions, NOV_1)
    sign(sessions, NOV_1 + timedelta(days=31))
    # A caller that catches the refusal and commits other work keeps counts exact.
    with sessions.begin() as session, pytest.raises(LicenseLimitReached):
        license_service.reserve_signature(
            session, actor=SIGNER, now=NOV_1 + timedelta(days=32)
        )
    assert counters(sessions) == {"total": 2, "2030-11": 1, "2030-12": 1}


def test_monthly_refusal_undoes_the_total_count_for_a_caller_that_commits(
    sessions: sessionmaker[Session], issuer: Ed25519PrivateKey
) -> None:
    # Both counters move in one statement: the month's refusal leaves the total counted.
    install(sessions, issuer, signatures_per_month=1, signatures_total=10)
    sign(sessions, NOV_1)
    with sessions.begin() as session, pytest.raises(LicenseLimitReached, match="month"):
        license_service.reserve_signature(session, actor=SIGNER, now=NOV_1)
    assert counters(sessions) == {"total": 1, "2030-11": 1}


@pytest.mark.parametrize(
    ("grant", "limit"),
    [
        ({"signatures_per_month": 0}, "signatures_per_month"),
        ({"signatures_per_month": 5, "signatures_total": 0}, "signatures_total"),
    ],
)
def test_a_zero_limit_refuses_the_first_signature_and_counts_nothing(
    sessions: sessionmaker[Session],
    issuer: Ed25519PrivateKey,
    grant: dict[str, int],
    limit: str,
) -> None:
    install(sessions, issuer, **grant)
    with pytest.raises(LicenseLimitReached):
        sign(sessions, NOV_1)
    assert not any(counters(sessions).values())
    [denied] = audit_events(sessions, "license.denied")
    assert denied.details["limit"] == limit


def test_rolled_back_signing_does_not_count(
    sessions: sessionmaker[Session], issuer: Ed25519PrivateKey
) -> None:
    install(sessions, issuer, signatures_total=1)

    def failing_signing() -> None:
        with sessions.begin() as session:
            license_service.reserve_signature(session, actor=SIGNER, now=NOV_1)
            raise RuntimeError("the PDF could not be signed")

    with pytest.raises(RuntimeError):
        failing_signing()
    assert counters(sessions)["total"] == 0
    assert sign(sessions, NOV_1) == 1


def test_reaching_a_limit_is_announced_once(
    sessions: sessionmaker[Session], issuer: Ed25519PrivateKey
) -> None:
    install(sessions, issuer, signatures_per_month=2, signatures_total=5)
    for _ in range(2):
        sign(sessions, NOV_1)
    with pytest.raises(LicenseLimitReached):
        sign(sessions, NOV_1)
    [event] = audit_events(sessions, "license.limit_reached")
    assert event.details == {
        "limit": "signatures_per_month",
        "allowed": 2,
        "used": 2,
        "period": "2030-11",
    }
    assert event.actor_kind == "system"


def test_signing_after_expiry_is_refused_even_with_the_clock_set_back(
    sessions: sessionmaker[Session], issuer: Ed25519PrivateKey
) -> None:
    install(sessions, issuer, days=10)
    valid_until = NOV_1 + timedelta(days=10)
    sign(sessions, valid_until - timedelta(minutes=1))
    with pytest.raises(LicenseExpired):
        sign(sessions, valid_until)
    # The latest moment the server counted or refused at is the earliest "now" it
    # believes in: setting the system clock back does not revive the licence.
    for earlier in (timedelta(minutes=2), timedelta(days=5)):
        with pytest.raises(LicenseExpired):
            sign(sessions, valid_until - earlier)
    with sessions() as session:
        status = license_service.current_status(session, now=NOV_1)
    assert (status.state, status.now) == (LicenseState.EXPIRED, valid_until)
    denied = audit_events(sessions, "license.denied")
    assert [e.details["code"] for e in denied] == ["license_expired"] * 3
    assert counters(sessions)["total"] == 1


def test_evaluation_allows_signing_until_it_ends_then_reads_missing(
    sessions: sessionmaker[Session],
) -> None:
    with sessions() as session:
        started = session.get_one(LicenseStateRow, 1).evaluation_started_at
    assert sign(sessions, started + timedelta(days=29)) == 1
    with sessions() as session:
        status = license_service.current_status(
            session, now=started + timedelta(days=30)
        )
    assert status.state is LicenseState.MISSING
    assert status.days_left == 0
    with pytest.raises(LicenseExpired, match="evaluation ended"):
        sign(sessions, started + timedelta(days=30))


def test_evaluation_total_signatures_are_limited(
    sessions: sessionmaker[Session],
) -> None:
    with sessions.begin() as session:
        session.execute(
            update(LicenseUsage)
            .where(LicenseUsage.period == "total")
            .values(signatures=499)
        )
        now = session.get_one(LicenseStateRow, 1).evaluation_started_at
    assert sign(sessions, now) == 1
    with pytest.raises(LicenseLimitReached, match="500"):
        sign(sessions, now)


def test_user_limit_counts_enabled_users_and_frees_a_seat_on_disable(
    sessions: sessionmaker[Session],
    hasher: PasswordHasher,
    issuer: Ed25519PrivateKey,
    admin: Credentials,
) -> None:
    install(sessions, issuer, now=datetime.now(UTC), users=3)
    make_user(sessions, hasher, username="u1")
    make_user(sessions, hasher, username="u2")
    with pytest.raises(LicenseLimitReached, match="allows 3 users"):
        make_user(sessions, hasher, username="u3")
    with sessions.begin() as session:
        session.execute(
            update(User).where(User.username == "u1").values(status=UserStatus.DISABLED)
        )
    make_user(sessions, hasher, username="u3")
    # Announced when the last seat is taken, each time it is.
    reached = audit_events(sessions, "license.limit_reached")
    assert [e.details for e in reached] == [
        {"limit": "users", "allowed": 3, "used": 3}
    ] * 2


def test_bootstrap_administrator_is_created_whatever_the_licence(
    sessions: sessionmaker[Session],
    hasher: PasswordHasher,
    issuer: Ed25519PrivateKey,
) -> None:
    install(sessions, issuer, now=datetime.now(UTC), users=0)
    with sessions.begin() as session:
        assert (
            access_service.bootstrap_admin(
                session, hasher, username="admin", password="Admin-Passw0rd!"
            )
            is not None
        )
    with pytest.raises(LicenseLimitReached):
        make_user(sessions, hasher, username="second")


def test_features_missing_from_the_licence_are_refused(
    sessions: sessionmaker[Session], issuer: Ed25519PrivateKey
) -> None:
    with sessions() as session:
        for feature in Feature:  # evaluation: everything may be tried
            license_service.require_feature(session, feature, actor=SIGNER)
    install(sessions, issuer, now=datetime.now(UTC), features=("batch",))
    with request_transaction(sessions) as session:
        license_service.require_feature(session, Feature.BATCH, actor=SIGNER)
    with (
        pytest.raises(LicenseFeatureMissing, match="pkcs11"),
        request_transaction(sessions) as session,
    ):
        license_service.require_feature(session, Feature.PKCS11, actor=SIGNER)
    [denied] = audit_events(sessions, "license.denied")
    assert denied.details["feature"] == "pkcs11"


def test_expiry_is_announced_once_per_threshold(
    sessions: sessionmaker[Session], issuer: Ed25519PrivateKey
) -> None:
    install(sessions, issuer, days=60)
    until = NOV_1 + timedelta(days=60)

    def scan(days_before: float) -> int | None:
        with sessions.begin() as session:
            return license_service.scan_expiry(
                session, now=until - timedelta(days=days_before)
            )

    assert [scan(d) for d in (40, 30.5, 29.5, 20, 29, 6.5, 6, 0.5, 0.25)] == [
        None,
        30,
        None,
        None,
        None,
        7,
        None,
        1,
        None,
    ]
    events = audit_events(sessions, "license.expiring")
    assert [(e.details["threshold_days"], e.details["days_left"]) for e in events] == [
        (30, 30),
        (7, 6),
        (1, 0),
    ]
    # A new licence starts its own warnings.
    install(sessions, issuer, now=until - timedelta(hours=1), days=5)
    with sessions.begin() as session:
        assert license_service.scan_expiry(session, now=until) == 7


def test_signing_announces_an_approaching_expiry_too(
    sessions: sessionmaker[Session], issuer: Ed25519PrivateKey
) -> None:
    install(sessions, issuer, days=10)
    sign(sessions, NOV_1)
    sign(sessions, NOV_1 + timedelta(hours=1))
    [event] = audit_events(sessions, "license.expiring")
    assert event.details["threshold_days"] == 30


def test_limits_reached_leave_reading_and_administration_working(
    client: TestClient,
    admin_headers: dict[str, str],
    sessions: sessionmaker[Session],
    hasher: PasswordHasher,
    issuer: Ed25519PrivateKey,
    admin: Credentials,
) -> None:
    now = datetime.now(UTC)
    install(sessions, issuer, now=now, users=1, signatures_total=1, features=())
    sign(sessions, now)
    with pytest.raises(LicenseLimitReached):
        sign(sessions, now)
    with pytest.raises(LicenseLimitReached):
        make_user(sessions, hasher, username="over")
    for path in (
        "/api/v1/license",
        "/api/v1/license/usage",
        "/api/v1/license/file",
        "/api/v1/auth/me",
        "/api/v1/clients",
    ):
        assert client.get(path, headers=admin_headers).status_code == 200, path
    created = client.post(
        "/api/v1/clients",
        json={"name": "erp", "entitlements": ["documents:read"]},
        headers=admin_headers,
    )
    assert created.status_code == 201, created.text
    assert client.get("/ready").status_code == 200
    assert login(client, admin)["access_token"]
    usage = client.get("/api/v1/license/usage", headers=admin_headers).json()
    assert usage["signatures_total"] == {"used": 1, "limit": 1, "remaining": 0}
    assert usage["users"] == {"used": 1, "limit": 1, "remaining": 0}


def test_expired_licence_leaves_reading_and_administration_working(
    client: TestClient,
    admin_headers: dict[str, str],
    sessions: sessionmaker[Session],
    issuer: Ed25519PrivateKey,
) -> None:
    long_ago = datetime.now(UTC) - timedelta(days=400)
    install(sessions, issuer, now=long_ago, days=30, license_id="old")
    status = client.get("/api/v1/license", headers=admin_headers).json()
    assert (status["state"], status["license_id"], status["days_left"]) == (
        "expired",
        "old",
        0,
    )
    with pytest.raises(LicenseExpired):
        sign(sessions, datetime.now(UTC))
    assert client.get("/api/v1/license/usage", headers=admin_headers).status_code == 200
    created = client.post(
        "/api/v1/clients",
        json={"name": "erp", "entitlements": ["documents:read"]},
        headers=admin_headers,
    )
    assert created.status_code == 201
    # A valid licence brings signing back at once.
    new = make_license(issuer, license_id="renewed")
    response = client.post(
        "/api/v1/license",
        content=new,
        headers={**admin_headers, "Content-Type": "application/octet-stream"},
    )
    assert response.json()["state"] == "valid"
    assert sign(sessions, datetime.now(UTC)) == 1
