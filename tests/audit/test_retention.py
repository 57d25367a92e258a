"""Retention: purge a prefix of the chain in batches, leave a checkpoint the rest verifies from."""

import threading
import uuid
from datetime import timedelta

from fastapi.testclient import TestClient
from sqlalchemy import select, text
from sqlalchemy.orm import Session, sessionmaker

from app.audit import service as audit_service
from app.audit.models import AuditCheckpoint
from app.core.types import utcnow
from tests.factories import audit_events


def seed_ages(session_factory: sessionmaker[Session], ages_in_days: list[int]) -> None:
    now = utcnow()
    with session_factory.begin() as session:
        audit_service.append_many(
            session,
            (
                {
                    "id": uuid.uuid4(),
                    "occurred_at": now - timedelta(days=age, minutes=n),
                    "actor_kind": "system",
                    "action": "test.aged",
                    "resource_type": "thing",
                    "resource_id": str(n),
                    "outcome": "success",
                    "details": {"age": age},
                }
                for n, age in enumerate(ages_in_days)
            ),
        )


def set_retention(session_factory: sessionmaker[Session], days: int | None) -> None:
    with session_factory.begin() as session:
        audit_service.update_settings(
            session, actor=audit_service.SYSTEM, changes={"retention_days": days}
        )


def test_purge_removes_old_entries_in_batches_and_the_rest_verifies(
    session_factory: sessionmaker[Session],
) -> None:
    seed_ages(session_factory, [40] * 10 + [5] * 5)
    set_retention(session_factory, 30)
    result = audit_service.purge_expired(session_factory, batch_size=3)
    assert (result.purged, result.batches, result.through_seq) == (10, 4, 10)
    kept = audit_events(session_factory, "test.aged")
    assert [e.seq for e in kept] == [11, 12, 13, 14, 15]
    purges = audit_events(session_factory, "audit.purged")
    assert [p.details["through_seq"] for p in purges] == [3, 6, 9, 10]
    assert [p.details["purged"] for p in purges] == [3, 3, 3, 1]
    assert purges[-1].details["total_purged"] == 10
    with session_factory() as session:
        report = audit_service.verify(session)
        checkpoints = session.scalars(
            select(AuditCheckpoint).order_by(AuditCheckpoint.through_seq)
        ).all()
    assert report.intact, report.broken
    assert report.checkpoint is not None
    assert report.checkpoint.through_seq == 10
    assert report.first_seq == 11
    assert [c.through_seq for c in checkpoints] == [3, 6, 9, 10]
    # a second run finds nothing more to purge
    assert audit_service.purge_expired(session_factory).purged == 0


def test_purge_stops_at_the_first_entry_within_retention(
    session_factory: sessionmaker[Session],
) -> None:
    seed_ages(session_factory, [40, 40, 1, 40, 40])
    set_retention(session_factory, 30)
    result = audit_service.purge_expired(session_factory)
    assert result.purged == 2
    assert [e.seq for e in audit_events(session_factory, "test.aged")] == [3, 4, 5]
    with session_factory() as session:
        assert audit_service.verify_chain(session) is None


def test_no_retention_purges_nothing(session_factory: sessionmaker[Session]) -> None:
    seed_ages(session_factory, [4000, 4000])
    result = audit_service.purge_expired(session_factory)
    assert (result.purged, result.cutoff) == (0, None)
    assert len(audit_events(session_factory, "test.aged")) == 2


def test_a_forged_checkpoint_is_detected(
    session_factory: sessionmaker[Session],
) -> None:
    seed_ages(session_factory, [1] * 6)
    third = audit_events(session_factory, "test.aged")[2]
    with session_factory.begin() as session:
        session.execute(text("DELETE FROM audit_events WHERE seq <= 3"))
        session.add(
            AuditCheckpoint(
                through_seq=3,
                through_hash=third.hash,
                purged_count=3,
                total_purged=3,
                cutoff=utcnow(),
            )
        )
    with session_factory() as session:
        broken = audit_service.verify_chain(session)
    assert broken is not None
    assert broken.seq == 3
    assert "vouches" in broken.reason


def test_deleting_the_checkpoint_is_detected(
    session_factory: sessionmaker[Session],
) -> None:
    seed_ages(session_factory, [40, 40, 1])
    set_retention(session_factory, 30)
    audit_service.purge_expired(session_factory)
    with session_factory.begin() as session:
        session.execute(text("DELETE FROM audit_checkpoints"))
    with session_factory() as session:
        broken = audit_service.verify_chain(session)
    assert broken is not None
    assert (broken.seq, broken.reason) == (3, "sequence gap: expected 1")


def test_verify_endpoint_starts_from_the_checkpoint(
    client: TestClient,
    admin_headers: dict[str, str],
    session_factory: sessionmaker[Session],
) -> None:
    # The admin's log-in is already in the chain: purge as if a month from now.
    seed_ages(session_factory, [40, 40, 40])
    head = audit_events(session_factory)[-1].seq
    set_retention(session_factory, 30)
    result = audit_service.purge_expired(
        session_factory, now=utcnow() + timedelta(days=31), batch_size=2
    )
    assert result.purged == head + 1  # and the settings change
    body = client.get("/api/v1/audit-logs/verify", headers=admin_headers).json()
    assert body["intact"] is True
    assert body["checkpoint"]["through_seq"] == head + 1
    assert body["checkpoint"]["total_purged"] == head + 1
    assert body["first_seq"] == head + 2
    assert [e.action for e in audit_events(session_factory)][:2] == [
        "audit.purged",
        "audit.purged",
    ]


def test_daily_retention_runs_once_a_day_however_many_claim_it(
    session_factory: sessionmaker[Session],
) -> None:
    seed_ages(session_factory, [40, 35, 1])
    set_retention(session_factory, 30)
    now = utcnow()
    claims = []

    def claim() -> None:
        claims.append(audit_service.run_retention_if_due(session_factory, now=now))

    threads = [threading.Thread(target=claim) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    ran = [result for result in claims if result is not None]
    assert len(ran) == 1
    assert ran[0].purged >= 2
    # not due again within the day, due again a day later
    assert (
        audit_service.run_retention_if_due(
            session_factory, now=now + timedelta(hours=23)
        )
        is None
    )
    assert (
        audit_service.run_retention_if_due(session_factory, now=now + timedelta(days=1))
        is not None
    )
    with session_factory() as session:
        assert audit_service.verify(session).intact
