"""Real `signvault worker` processes sharing the queue: every delivery exactly once."""

import collections
import signal
import subprocess
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from datetime import timedelta
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, make_url, select
from sqlalchemy.orm import Session, sessionmaker

from app.core.config import Settings
from app.core.types import utcnow
from app.notifications import sqlite_wake
from app.notifications.models import Delivery, DeliveryStatus
from app.notifications.outbox import Event, emit
from tests.certificates.conftest import import_signer
from tests.certificates.pki import make_ca, make_signer
from tests.notifications.conftest import create_rule, wait_until
from tests.notifications.servers import WebhookReceiver
from tests.served import BIN_DIR, signvault_env

EVENTS = 500


@pytest.fixture
def batches_webhook(
    client: TestClient, admin_headers: dict[str, str], receiver: WebhookReceiver
) -> WebhookReceiver:
    """The receiver, subscribed by a webhook rule to `batch.completed`."""
    create_rule(
        client,
        admin_headers,
        event="batch.completed",
        channel="webhook",
        url=receiver.url,
    )
    return receiver


@contextmanager
def worker_process(
    settings: Settings, workdir: Path, name: str, *, poll_seconds: float = 0.2
) -> Iterator[Path]:
    log_path = workdir / f"{name}.log"
    env = signvault_env(
        settings.data_dir,
        settings.effective_database_url,
        SIGNVAULT_WEBHOOK_ALLOWED_HOSTS="127.0.0.1",
        SIGNVAULT_NOTIFICATION_POLL_SECONDS=str(poll_seconds),
        SIGNVAULT_ADMIN_BOOTSTRAP="false",
    )
    with log_path.open("w") as log:
        process = subprocess.Popen(  # noqa: S603 (our own console script)
            [str(BIN_DIR / "signvault"), "worker"],
            env=env,
            cwd=workdir,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_until(
            lambda: "running" in log_path.read_text() or process.poll() is not None,
            timeout=60,
            what=f"{name} to start",
        )
        assert process.poll() is None, log_path.read_text()
        yield log_path
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            returncode = process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
            raise
    assert returncode == 0, log_path.read_text()
    assert "worker stopped" in log_path.read_text()


@pytest.mark.parametrize("settings", [{"background_in_process": False}], indirect=True)
def test_two_workers_deliver_every_event_exactly_once(
    session_factory: sessionmaker[Session],
    settings: Settings,
    batches_webhook: WebhookReceiver,
    tmp_path: Path,
) -> None:
    receiver = batches_webhook
    with ExitStack() as stack:
        for name in ("worker-a", "worker-b"):
            stack.enter_context(worker_process(settings, tmp_path, name))
        started = time.monotonic()
        with session_factory.begin() as session:
            for number in range(EVENTS):
                emit(session, Event.BATCH_COMPLETED, {"batch": number})
        receiver.wait_for(lambda hits: len(hits) >= EVENTS, timeout=240)

        def all_delivered() -> bool:
            with session_factory() as session:
                return (
                    session.scalar(
                        select(func.count())
                        .select_from(Delivery)
                        .where(Delivery.status == DeliveryStatus.DELIVERED)
                    )
                    == EVENTS
                )

        wait_until(all_delivered, timeout=60, what="every delivery recorded")
        elapsed = time.monotonic() - started
    per_delivery = collections.Counter(
        hit.headers["x-signvault-delivery"] for hit in receiver.hits
    )
    assert len(per_delivery) == EVENTS
    assert set(per_delivery.values()) == {1}
    assert sorted(hit.json()["data"]["batch"] for hit in receiver.hits) == list(
        range(EVENTS)
    )
    with session_factory() as session:
        by_worker = collections.Counter(session.scalars(select(Delivery.claimed_by)))
    assert len(by_worker) == 2, by_worker  # both took part
    print(f"{EVENTS} deliveries by two workers in {elapsed:.1f} s: {dict(by_worker)}")  # noqa: T201


@pytest.mark.parametrize("settings", [{"background_in_process": False}], indirect=True)
def test_a_separate_worker_hears_of_events_at_once(
    session_factory: sessionmaker[Session],
    settings: Settings,
    batches_webhook: WebhookReceiver,
    tmp_path: Path,
) -> None:
    """PostgreSQL's LISTEN/NOTIFY, or on SQLite the wake socket beside the database file."""
    receiver = batches_webhook
    # A poll far longer than the wait below: only the wake-up can wake it.
    with worker_process(settings, tmp_path, "listener", poll_seconds=300):
        time.sleep(1)  # its first round has run and found nothing
        for number in range(3):
            with session_factory.begin() as session:
                emit(session, Event.BATCH_COMPLETED, {"batch": number})
            receiver.wait_for(lambda hits, n=number: len(hits) > n, timeout=10)
    assert [hit.json()["data"]["batch"] for hit in receiver.hits] == [0, 1, 2]
    folder = sqlite_wake.wake_folder(make_url(settings.effective_database_url))
    if folder is not None:
        assert list(folder.iterdir()) == []  # the stopped worker removed its socket


@pytest.mark.parametrize("settings", [{"background_in_process": False}], indirect=True)
def test_worker_runs_the_expiry_scan_once_a_day(
    client: TestClient,
    admin_headers: dict[str, str],
    settings: Settings,
    receiver: WebhookReceiver,
    tmp_path: Path,
) -> None:
    ca = make_ca()
    certificate = import_signer(
        client,
        admin_headers,
        make_signer(ca, cn="Seal of Sales", not_after=utcnow() + timedelta(days=5)),
        ca,
    )
    create_rule(
        client,
        admin_headers,
        event="certificate.expiring",
        channel="webhook",
        url=receiver.url,
    )
    with worker_process(settings, tmp_path, "worker-a"):
        receiver.wait_for(lambda hits: len(hits) >= 1, timeout=60)
    with worker_process(settings, tmp_path, "worker-b"):
        # The day is claimed: a second worker starting now scans nothing.
        time.sleep(2)
    [hit] = receiver.hits
    body = hit.json()
    assert body["event"] == "certificate.expiring"
    assert body["data"]["certificate_id"] == certificate["id"]
    assert body["data"]["days_before"] == 7
    assert body["data"]["days_left"] == 4
