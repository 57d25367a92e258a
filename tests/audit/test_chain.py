"""The hash-chained audit log: atomic with the change, never forked, tamper-evident."""

import itertools
import multiprocessing
import threading
import uuid
from collections.abc import Generator
from types import SimpleNamespace
from typing import cast

import pytest
from sqlalchemy import text, update
from sqlalchemy.orm import Session, sessionmaker

from app.audit import service as audit_service
from app.audit.chain import GENESIS_HASH, event_hash
from app.audit.models import AuditEvent
from app.audit.service import SYSTEM, Actor, ActorKind
from app.core.db import get_session, make_engine, make_sessionmaker
from tests.factories import audit_events


def _record(session: Session, n: int) -> None:
    audit_service.record(
        session,
        actor=SYSTEM,
        action="test.event",
        resource_type="thing",
        resource_id=str(n),
        details={"n": n},
    )


def test_entries_link_into_one_chain(session_factory: sessionmaker[Session]) -> None:
    for n in range(5):
        with session_factory.begin() as session:
            _record(session, n)
    events = audit_events(session_factory, "test.event")
    assert [e.seq for e in events] == [1, 2, 3, 4, 5]
    assert events[0].prev_hash == GENESIS_HASH
    for previous, current in itertools.pairwise(events):
        assert current.prev_hash == previous.hash
    assert all(event_hash(e) == e.hash for e in events)
    with session_factory() as session:
        assert audit_service.verify_chain(session) is None


def test_entry_is_dropped_with_a_rolled_back_change(
    session_factory: sessionmaker[Session],
) -> None:
    def failing_change() -> None:
        with session_factory.begin() as session:
            _record(session, 1)
            raise RuntimeError("the change failed")

    with pytest.raises(RuntimeError):
        failing_change()
    with session_factory.begin() as session:
        _record(session, 2)
    assert [
        (e.seq, e.resource_id) for e in audit_events(session_factory, "test.event")
    ] == [(1, "2")]


def test_isolated_entry_survives_the_request_rollback(
    session_factory: sessionmaker[Session],
) -> None:
    request = SimpleNamespace(
        app=SimpleNamespace(state=SimpleNamespace(sessionmaker=session_factory))
    )
    dependency = cast(Generator[Session], get_session(request))  # type: ignore[arg-type]
    session = next(dependency)
    _record(session, 1)  # part of the failing transaction
    audit_service.record_isolated(
        session, actor=Actor(ActorKind.ANONYMOUS), action="test.denied"
    )
    with pytest.raises(RuntimeError):
        dependency.throw(RuntimeError("request failed"))
    assert [e.action for e in audit_events(session_factory)] == ["test.denied"]


def test_secrets_in_details_are_redacted(
    session_factory: sessionmaker[Session],
) -> None:
    with session_factory.begin() as session:
        audit_service.record(
            session,
            actor=SYSTEM,
            action="test.secret",
            details={
                "password": "hunter2",
                "nested": {"client_secret": "s3"},
                "name": "ok",
            },
        )
    [event] = audit_events(session_factory, "test.secret")
    assert event.details == {
        "password": "[redacted]",
        "nested": {"client_secret": "[redacted]"},
        "name": "ok",
    }


def _thread_writers(
    session_factory: sessionmaker[Session], count: int
) -> tuple[list[threading.Thread], list[BaseException]]:
    """`count` unstarted threads that each record 10 entries; errors land in the list."""
    errors: list[BaseException] = []

    def writer(worker: int) -> None:
        try:
            for n in range(10):
                with session_factory.begin() as session:
                    _record(session, worker * 100 + n)
        except BaseException as exc:  # surfaced by the caller
            errors.append(exc)

    return [threading.Thread(target=writer, args=(w,)) for w in range(count)], errors


def test_concurrent_threads_never_fork_the_chain(
    session_factory: sessionmaker[Session],
) -> None:
    threads, errors = _thread_writers(session_factory, 6)
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    events = audit_events(session_factory, "test.event")
    assert [e.seq for e in events] == list(range(1, 61))
    with session_factory() as session:
        assert audit_service.verify_chain(session) is None


def _process_writer(url: str, worker: int, count: int) -> None:
    engine = make_engine(url)
    factory = make_sessionmaker(engine)
    for n in range(count):
        with factory.begin() as session:
            _record(session, worker * 1000 + n)
    engine.dispose()


def test_concurrent_processes_never_fork_the_chain(
    database_url: str, session_factory: sessionmaker[Session]
) -> None:
    context = multiprocessing.get_context("spawn")
    processes = [
        context.Process(target=_process_writer, args=(database_url, w, 15))
        for w in range(3)
    ]
    for process in processes:
        process.start()
    for process in processes:
        process.join(timeout=120)
    assert [p.exitcode for p in processes] == [0, 0, 0]
    assert len(audit_events(session_factory, "test.event")) == 45
    with session_factory() as session:
        assert audit_service.verify_chain(session) is None


def _seed_chain(
    session_factory: sessionmaker[Session], count: int = 5
) -> list[AuditEvent]:
    for n in range(count):
        with session_factory.begin() as session:
            _record(session, n)
    return audit_events(session_factory, "test.event")


def test_editing_a_row_is_detected(session_factory: sessionmaker[Session]) -> None:
    events = _seed_chain(session_factory)
    with session_factory.begin() as session:
        session.execute(
            update(AuditEvent).where(AuditEvent.seq == 3).values(action="test.innocent")
        )
    with session_factory() as session:
        broken = audit_service.verify_chain(session)
    assert broken is not None
    assert (broken.seq, broken.event_id, broken.reason) == (
        3,
        str(events[2].id),
        "content does not match its hash",
    )


def test_deleting_a_row_is_detected(session_factory: sessionmaker[Session]) -> None:
    _seed_chain(session_factory)
    with session_factory.begin() as session:
        session.execute(text("DELETE FROM audit_events WHERE seq = 2"))
    with session_factory() as session:
        broken = audit_service.verify_chain(session)
    assert broken is not None
    assert broken.seq == 3


def test_rehashing_an_edited_row_still_breaks_the_next_link(
    session_factory: sessionmaker[Session],
) -> None:
    events = _seed_chain(session_factory)
    with session_factory.begin() as session:
        target = session.get_one(AuditEvent, events[1].id)
        target.details = {"n": 999}
        target.hash = event_hash(target)
    with session_factory() as session:
        broken = audit_service.verify_chain(session)
    assert broken is not None
    assert (broken.seq, broken.reason) == (
        3,
        "link to the previous entry does not match",
    )


def test_inserting_a_row_is_detected(session_factory: sessionmaker[Session]) -> None:
    events = _seed_chain(session_factory)
    forged = AuditEvent(
        id=uuid.uuid4(),
        seq=6,
        occurred_at=events[-1].occurred_at,
        actor_kind="system",
        action="test.forged",
        outcome="success",
        details={},
        prev_hash="f" * 64,
    )
    forged.hash = event_hash(forged)
    with session_factory.begin() as session:
        session.add(forged)
    with session_factory() as session:
        broken = audit_service.verify_chain(session)
    assert broken is not None
    assert (broken.seq, broken.reason) == (
        6,
        "link to the previous entry does not match",
    )


def test_reordering_rows_is_detected(session_factory: sessionmaker[Session]) -> None:
    events = _seed_chain(session_factory)
    with session_factory.begin() as session:
        for old, new in ((2, -2), (3, 2), (-2, 3)):
            session.execute(
                text("UPDATE audit_events SET seq = :new WHERE seq = :old"),
                {"old": old, "new": new},
            )
    with session_factory() as session:
        broken = audit_service.verify_chain(session)
    assert broken is not None
    assert (broken.seq, broken.event_id, broken.reason) == (
        2,
        str(events[2].id),
        "link to the previous entry does not match",
    )


def test_deleting_the_newest_rows_is_detected_against_the_head(
    session_factory: sessionmaker[Session],
) -> None:
    _seed_chain(session_factory)
    with session_factory.begin() as session:
        session.execute(text("DELETE FROM audit_events WHERE seq >= 4"))
    with session_factory() as session:
        broken = audit_service.verify_chain(session)
    assert broken is not None
    assert (broken.seq, broken.event_id) == (4, None)
    assert "missing" in broken.reason


def test_appending_a_well_linked_row_behind_the_log_is_detected(
    session_factory: sessionmaker[Session],
) -> None:
    events = _seed_chain(session_factory)
    forged = AuditEvent(
        id=uuid.uuid4(),
        seq=6,
        occurred_at=events[-1].occurred_at,
        actor_kind="system",
        action="test.forged",
        outcome="success",
        details={},
        prev_hash=events[-1].hash,
    )
    forged.hash = event_hash(forged)
    with session_factory.begin() as session:
        session.add(forged)
    with session_factory() as session:
        broken = audit_service.verify_chain(session)
    assert broken is not None
    assert (broken.seq, broken.event_id) == (6, str(forged.id))
    assert "beyond the chain head" in broken.reason


def _mixed_process_writer(url: str, worker: int, count: int) -> None:
    engine = make_engine(url)
    factory = make_sessionmaker(engine)
    for n in range(count):
        with factory.begin() as session:
            _record(session, 50_000 + worker * 1000 + n)
            _record(session, 60_000 + worker * 1000 + n)  # two entries per commit
    engine.dispose()


def test_eight_threads_and_two_processes_at_once_lose_nothing(
    database_url: str, session_factory: sessionmaker[Session]
) -> None:
    context = multiprocessing.get_context("spawn")
    processes = [
        context.Process(target=_mixed_process_writer, args=(database_url, w, 10))
        for w in range(2)
    ]
    threads, errors = _thread_writers(session_factory, 8)
    for process in processes:
        process.start()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for process in processes:
        process.join(timeout=120)
    assert errors == []
    assert [p.exitcode for p in processes] == [0, 0]
    events = audit_events(session_factory, "test.event")
    assert len(events) == 8 * 10 + 2 * 10 * 2
    assert len({e.resource_id for e in events}) == len(events)
    assert [e.seq for e in events] == list(range(1, len(events) + 1))
    with session_factory() as session:
        report = audit_service.verify(session)
    assert report.intact
    assert report.checked == report.head_seq == len(events)
