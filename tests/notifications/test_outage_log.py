"""A database outage is two log lines from the notification loop: one when it starts, one when it ends."""

import logging
import threading
import time
from pathlib import Path

import pytest
from sqlalchemy import make_url, text
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.orm import Session, sessionmaker

from app.core.config import Settings
from app.core.db import make_engine
from app.notifications import worker
from app.notifications.worker import NotificationLoop
from tests.conftest import POSTGRES_URL

LOGGER = worker.logger.name


def loop_lines(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == LOGGER]


def test_failed_rounds_log_one_line_per_outage_and_one_on_recovery(
    tmp_path: Path,
    settings: Settings,
    session_factory: sessionmaker[Session],
    caplog: pytest.LogCaptureFixture,
) -> None:
    away = make_engine(f"sqlite:///{tmp_path / 'absent'}/signvault.db")
    factory = sessionmaker(away)
    loop = NotificationLoop(factory, cipher=None, settings=settings)
    with caplog.at_level(logging.INFO, logger=LOGGER):
        for _ in range(5):
            loop.run_once()
        factory.configure(bind=session_factory.kw["bind"])
        loop.run_once()
        loop.run_once()
    first, last = loop_lines(caplog)
    assert first.getMessage().startswith(
        "notification dispatch failed (OperationalError: "
    )
    assert first.exc_info is None
    assert last.getMessage().startswith("notification dispatch works again after ")


@pytest.mark.skipif(not POSTGRES_URL, reason="LISTEN/NOTIFY is PostgreSQL's")
def test_a_lost_listen_connection_logs_one_line_per_outage_and_one_on_recovery(
    engine: Engine,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setattr(worker, "LISTEN_RETRY_SECONDS", 0.05)
    assert POSTGRES_URL
    admin = make_engine(POSTGRES_URL).execution_options(isolation_level="AUTOCOMMIT")
    database = make_url(engine.url).database
    stop = threading.Event()
    listener = threading.Thread(
        target=worker.listen_for_events,
        args=(engine.url, threading.Event(), stop),
    )
    with caplog.at_level(logging.INFO, logger=LOGGER), admin.connect() as sql:
        listener.start()
        try:
            assert _listener_backends(sql, database, wait=True)
            # The database refuses connections for a while: the listener retries ~20 times.
            sql.execute(text(f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS false'))
            for pid in _listener_backends(sql, database):
                sql.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
            time.sleep(1.0)
            sql.execute(text(f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS true'))
            assert _listener_backends(sql, database, wait=True)
        finally:
            sql.execute(text(f'ALTER DATABASE "{database}" ALLOW_CONNECTIONS true'))
            stop.set()
            listener.join()
    admin.dispose()
    first, last = loop_lines(caplog)
    assert first.getMessage().startswith("listening for notification events failed (")
    assert first.getMessage().endswith("; polling until it reconnects")
    assert first.exc_info is None
    assert last.getMessage().startswith(
        "listening for notification events works again after "
    )


def _listener_backends(
    sql: Connection, database: str | None, *, wait: bool = False
) -> list[int]:
    deadline = time.monotonic() + 10
    while True:
        pids = [
            row.pid
            for row in sql.execute(
                text(
                    "SELECT pid FROM pg_stat_activity WHERE datname = :db AND query LIKE 'LISTEN%'"
                ),
                {"db": database},
            )
        ]
        if pids or not wait or time.monotonic() > deadline:
            return pids
        time.sleep(0.05)
