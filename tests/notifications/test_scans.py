"""The daily expiry scans: once per certificate and threshold, once a day cluster-wide."""

import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fastapi.testclient import TestClient
from sqlalchemy import select, text
from sqlalchemy.orm import Session, sessionmaker

from app.audit.models import AuditEvent
from app.core.config import Settings
from app.core.types import utcnow
from app.notifications import scans
from app.notifications.models import (
    Channel,
    NotificationMark,
    NotificationRule,
    ScheduledJob,
)
from app.notifications.outbox import Event
from tests.certificates.conftest import import_signer
from tests.certificates.pki import Issued, make_ca, make_signer
from tests.license.conftest import issuer, public_key_text
from tests.notifications.outbox import outbox_counts, outbox_payloads
from tests.signing.test_sign_api import licensed

__all__ = ["issuer", "licensed"]  # shared fixtures


@pytest.fixture(scope="module")
def ca() -> Issued:
    return make_ca()


@pytest.fixture
def settings(settings: Settings, issuer: Ed25519PrivateKey) -> Settings:
    # No in-process worker: it would claim the day's scan before the test does.
    return settings.model_copy(
        update={
            "license_public_key": public_key_text(issuer),
            "background_in_process": False,
        }
    )


@pytest.fixture
def expiring(
    client: TestClient, admin_headers: dict[str, str], ca: Issued
) -> Callable[..., dict[str, Any]]:
    """Import a certificate valid for `days` more; its API body."""

    def make(days: float, name: str = "Jane Signer") -> dict[str, Any]:
        issued = make_signer(ca, cn=name, not_after=utcnow() + timedelta(days=days))
        return import_signer(client, admin_headers, issued, ca)

    return make


def not_after(certificate: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(certificate["not_after"])


def scan(session_factory: sessionmaker[Session], now: datetime) -> int:
    with session_factory.begin() as session:
        return scans.scan_certificate_expiry(session, now=now)


def expiring_days(session_factory: sessionmaker[Session]) -> list[tuple[str, int]]:
    return [
        (p["certificate_id"], p["days_before"])
        for p in outbox_payloads(session_factory, Event.CERTIFICATE_EXPIRING)
    ]


def test_scans_announce_each_threshold_once_and_expiry_once(
    session_factory: sessionmaker[Session], expiring: Callable[..., dict[str, Any]]
) -> None:
    certificate = expiring(40)
    end = not_after(certificate)
    assert [scan(session_factory, end - timedelta(days=31)) for _ in range(3)] == [
        0,
        0,
        0,
    ]
    assert [scan(session_factory, end - timedelta(days=20)) for _ in range(3)] == [
        1,
        0,
        0,
    ]
    [announced] = outbox_payloads(session_factory, Event.CERTIFICATE_EXPIRING)
    assert announced == {
        "certificate_id": certificate["id"],
        "certificate_name": certificate["name"],
        "subject": certificate["subject"],
        "fingerprint": certificate["fingerprint_sha256"],
        "not_after": announced["not_after"],
        "days_left": 20,
        "days_before": 30,
    }
    assert datetime.fromisoformat(announced["not_after"]) == end
    # Across the next threshold: exactly one more; then the last; then expiry.
    for moment in (timedelta(days=7), timedelta(hours=23), -timedelta(hours=1)):
        for _ in range(3):
            scan(session_factory, end - moment)
    assert expiring_days(session_factory) == [
        (certificate["id"], 30),
        (certificate["id"], 7),
        (certificate["id"], 1),
    ]
    [expired] = outbox_payloads(session_factory, Event.CERTIFICATE_EXPIRED)
    assert (
        expired["certificate_id"],
        expired["days_left"],
        expired["days_before"],
    ) == (
        certificate["id"],
        0,
        None,
    )
    assert scan(session_factory, end + timedelta(days=3)) == 0
    # Each announcement is audited once, by the system, with the event.
    with session_factory() as session:
        entries = session.execute(
            select(
                AuditEvent.action,
                AuditEvent.actor_kind,
                AuditEvent.resource_id,
                AuditEvent.details,
            )
            .where(AuditEvent.action.like("certificate.expir%"))
            .order_by(AuditEvent.seq)
        ).all()
    assert [(e.action, e.actor_kind, e.resource_id) for e in entries] == [
        ("certificate.expiring", "system", certificate["id"])
    ] * 3 + [("certificate.expired", "system", certificate["id"])]
    assert [e.details["days_before"] for e in entries] == [30, 7, 1, None]
    assert entries[0].details["fingerprint"] == certificate["fingerprint_sha256"]


def test_first_scan_past_several_thresholds_announces_the_smallest_only(
    session_factory: sessionmaker[Session], expiring: Callable[..., dict[str, Any]]
) -> None:
    certificate = expiring(5)
    now = not_after(certificate) - timedelta(days=5)
    assert scan(session_factory, now) == 1
    assert expiring_days(session_factory) == [(certificate["id"], 7)]
    with session_factory() as session:
        marks = set(session.scalars(select(NotificationMark.key)))
    assert marks == {
        f"certificate.expiring:{certificate['id']}:30",
        f"certificate.expiring:{certificate['id']}:7",
    }
    # Never "30 days" after "7 days"; the next is the 1-day warning.
    assert scan(session_factory, now + timedelta(days=1)) == 0
    assert scan(session_factory, now + timedelta(days=4, hours=12)) == 1
    assert expiring_days(session_factory)[-1] == (certificate["id"], 1)


def test_thresholds_come_from_enabled_rules(
    session_factory: sessionmaker[Session], expiring: Callable[..., dict[str, Any]]
) -> None:
    with session_factory.begin() as session:
        assert scans.certificate_thresholds(session) == (30, 7, 1)
        for name, days, enabled in (
            ("ops", [14, 3], True),
            ("security", [14, 60], True),
            ("old", [90], False),
            ("every", None, True),
        ):
            session.add(
                NotificationRule(
                    name=name,
                    event=Event.CERTIFICATE_EXPIRING.value,
                    channel=Channel.WEBHOOK,
                    url="http://127.0.0.1:9/hook",
                    days_before=days,
                    enabled=enabled,
                )
            )
    with session_factory() as session:
        assert scans.certificate_thresholds(session) == (60, 14, 3)
    certificate = expiring(45)
    end = not_after(certificate)
    for days_left in (40, 29, 13, 6, 2):
        scan(session_factory, end - timedelta(days=days_left))
    assert expiring_days(session_factory) == [
        (certificate["id"], 60),
        (certificate["id"], 14),
        (certificate["id"], 3),
    ]


def test_deleted_and_revoked_certificates_are_not_announced(
    client: TestClient,
    admin_headers: dict[str, str],
    session_factory: sessionmaker[Session],
    expiring: Callable[..., dict[str, Any]],
) -> None:
    deleted, revoked, kept = (
        expiring(10, "Deleted"),
        expiring(10, "Revoked"),
        expiring(10, "Kept"),
    )
    assert (
        client.delete(
            f"/api/v1/certificates/{deleted['id']}", headers=admin_headers
        ).status_code
        == 204
    )
    assert (
        client.post(
            f"/api/v1/certificates/{revoked['id']}/revoke",
            json={},
            headers=admin_headers,
        ).status_code
        == 200
    )
    end = not_after(kept)
    assert scan(session_factory, end - timedelta(days=5)) == 1
    assert scan(session_factory, end + timedelta(days=1)) == 1
    assert [
        p["certificate_id"]
        for event in (Event.CERTIFICATE_EXPIRING, Event.CERTIFICATE_EXPIRED)
        for p in outbox_payloads(session_factory, event)
    ] == [kept["id"], kept["id"]]


def test_run_due_scans_runs_once_a_day_and_scans_the_licence_too(
    session_factory: sessionmaker[Session],
    licensed: Callable[..., None],
    expiring: Callable[..., dict[str, Any]],
) -> None:
    licensed(valid_until=utcnow() + timedelta(days=10))
    expiring(20)
    now = utcnow()
    assert scans.run_due_scans(session_factory, now=now) == 2
    [licence] = outbox_payloads(session_factory, Event.LICENSE_EXPIRING)
    assert (licence["days_before"], licence["threshold_days"]) == (30, 30)
    assert licence["days_left"] in (9, 10)
    # Not due again within the day, whatever happens meanwhile.
    expiring(10, "Later")
    assert scans.run_due_scans(session_factory, now=now + timedelta(hours=23)) == 0
    with session_factory() as session:
        job = session.get_one(ScheduledJob, scans.EXPIRY_SCAN_JOB)
        assert job.last_run_at == now
    # Four days on: "Later" and the licence are within 7 days, the first still within 30.
    assert scans.run_due_scans(session_factory, now=now + timedelta(days=4)) == 2
    assert [
        p["days_before"]
        for p in outbox_payloads(session_factory, Event.LICENSE_EXPIRING)
    ] == [30, 7]
    assert sorted(
        (p["certificate_name"], p["days_before"])
        for p in outbox_payloads(session_factory, Event.CERTIFICATE_EXPIRING)
    ) == [("Jane Signer", 30), ("Later", 7)]


def test_concurrent_workers_run_the_scan_once(
    session_factory: sessionmaker[Session], expiring: Callable[..., dict[str, Any]]
) -> None:
    for n in range(3):
        expiring(20, f"Signer {n}")
    now = utcnow()
    start = threading.Barrier(4)

    def worker() -> int:
        start.wait()
        return scans.run_due_scans(session_factory, now=now)

    with ThreadPoolExecutor(4) as pool:
        results = sorted(pool.map(lambda _: worker(), range(4)))
    # One worker ran it all: three certificates and the evaluation licence's end.
    assert results == [0, 0, 0, 4]
    assert outbox_counts(session_factory) == {
        Event.CERTIFICATE_EXPIRING.value: 3,
        Event.LICENSE_EXPIRING.value: 1,
    }


def test_a_claim_in_progress_makes_a_second_worker_wait_then_skip(
    database_url: str,
    session_factory: sessionmaker[Session],
    expiring: Callable[..., dict[str, Any]],
) -> None:
    """PostgreSQL: the second claimer blocks on the first's row, then sees it taken."""
    if not database_url.startswith("postgresql"):
        pytest.skip("row locks: PostgreSQL (SQLite serialises writers outright)")
    expiring(20)
    now = utcnow()
    first = session_factory()
    try:
        first.begin()
        # The first worker's claim, not yet committed (its scan is still running).
        first.execute(
            text(
                "INSERT INTO scheduled_jobs (name, last_run_at, claimed_by) "
                "VALUES (:name, :now, 'first')"
            ),
            {"name": scans.EXPIRY_SCAN_JOB, "now": now},
        )
        with ThreadPoolExecutor(1) as pool:
            second = pool.submit(scans.run_due_scans, session_factory, now=now)
            try:
                wait_for_a_lock_waiter(session_factory)
                assert not second.done()
            finally:
                first.commit()  # never leave the second claimer blocked behind a failure
            assert second.result(timeout=30) == 0
    finally:
        first.close()
    assert outbox_payloads(session_factory, Event.CERTIFICATE_EXPIRING) == []


def wait_for_a_lock_waiter(factory: sessionmaker[Session], timeout: float = 30) -> None:
    """Until another backend waits on a lock (PostgreSQL's view of it, no guessing).

    Each look is its own transaction: pg_stat_activity is a snapshot per transaction.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with factory() as session:
            waiting = session.scalar(
                text(
                    "SELECT count(*) FROM pg_stat_activity "
                    "WHERE wait_event_type = 'Lock' AND datname = current_database()"
                )
            )
        if waiting:
            return
        time.sleep(0.01)
    raise AssertionError("no session ever waited on the claim")
