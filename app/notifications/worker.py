"""The notification loop: dispatch emitted events, deliver what is due, run periodic jobs."""

import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import psycopg
from sqlalchemy.engine import URL, Engine
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

from app.core.config import Settings
from app.core.crypto import EnvelopeCipher
from app.core.types import utcnow
from app.notifications import outbox, queue, sqlite_wake

logger = logging.getLogger(__name__)

# Deliveries attempted before the loop looks at new events and periodic jobs again.
DELIVERIES_PER_ROUND = 50
# The shortest idle wait: a delivery falling due now is not polled for in a busy loop.
MIN_WAIT_SECONDS = 0.05
# Rounds woken by commits start at most this often: under a stream of signatures
# one round dispatches the events of many commits, instead of one round each
# (a round is a few transactions: at 0.05 s it took ~7 % of a serving process).
ROUND_INTERVAL_SECONDS = 0.25
# What a lost or refused database connection raises (not a bug: no traceback).
_DATABASE_AWAY = (OperationalError, InterfaceError)


@dataclass
class PeriodicJob:
    """Offered every `every_seconds`; the job itself decides (in the database) whether it is due."""

    name: str
    every_seconds: float
    run: Callable[[sessionmaker[Session]], object]
    next_at: float = field(default=0.0)


class Outage:
    """Logs a database outage in two lines: when `what` first fails, and when it works again.

    A retry loop that logged every failure (with its traceback) wrote one every
    few seconds for as long as the database was away.
    """

    def __init__(self, what: str, retrying: str) -> None:
        self.what = what
        self.retrying = retrying
        self._since: float | None = None

    def failed(self, exc: Exception) -> None:
        if self._since is not None:
            return
        self._since = time.monotonic()
        first_line = (str(exc).strip().splitlines() or [""])[0]
        logger.warning(
            "%s failed (%s: %s); %s",
            self.what,
            type(exc).__name__,
            first_line,
            self.retrying,
        )

    def recovered(self) -> None:
        if self._since is None:
            return
        # A warning like the first line, so that the two are seen together.
        logger.warning(
            "%s works again after %.0f s", self.what, time.monotonic() - self._since
        )
        self._since = None


def worker_id() -> str:
    """Names the claims of one loop: host, process, and a random part for threads."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class NotificationLoop:
    """Runs until stopped; woken at once when this process commits an emitted event.

    All state is in the database: any number of these, in any processes,
    share the work without delivering anything twice.
    """

    def __init__(
        self,
        factory: sessionmaker[Session],
        *,
        cipher: EnvelopeCipher | None,
        settings: Settings,
        periodic_jobs: Sequence[PeriodicJob] = (),
    ) -> None:
        self._factory = factory
        self._cipher = cipher
        self._settings = settings
        self._jobs = list(periodic_jobs)
        self.worker_id = worker_id()
        self.wake = threading.Event()
        self._outage = Outage(
            "notification dispatch", "retrying quietly until the database is back"
        )

    def run(self, stop: threading.Event) -> None:
        outbox.subscribe(self.wake)
        engine = self._factory.kw.get("bind")
        stop_listening = (
            self._listen_to_other_processes(engine, stop)
            if isinstance(engine, Engine)
            else None
        )
        try:
            while not stop.is_set():
                self._run_periodic_jobs()
                # Cleared before the round: an event committed during it sets the
                # flag again, and the wait below returns at once for it.
                self.wake.clear()
                started = time.monotonic()
                if self.run_once():
                    continue
                self.wake.wait(self._idle_seconds())
                stop.wait(ROUND_INTERVAL_SECONDS - (time.monotonic() - started))
        finally:
            outbox.unsubscribe(self.wake)
            if stop_listening is not None:
                stop_listening()

    def _listen_to_other_processes(
        self, engine: Engine, stop: threading.Event
    ) -> Callable[[], None] | None:
        """Be woken by other processes' commits too: PostgreSQL LISTEN, an SQLite wake socket.

        Returns what ends the SQLite listener once `stop` is set, so that its socket
        is removed before the process exits; the PostgreSQL listener holds nothing
        to remove and sees `stop` within a second.
        """
        if engine.dialect.name == "postgresql":
            threading.Thread(
                target=listen_for_events,
                args=(engine.url, self.wake, stop),
                name="signvault-notification-listener",
                daemon=True,
            ).start()
            return None
        folder = sqlite_wake.wake_folder(engine.url)
        if folder is None:
            return None
        wake_socket = sqlite_wake.WakeSocket(folder)
        thread = threading.Thread(
            target=wake_socket.listen,
            args=(self.wake, stop),
            name="signvault-notification-listener",
            daemon=True,
        )
        thread.start()

        def stop_listening() -> None:
            wake_socket.interrupt()
            thread.join(timeout=2 * sqlite_wake.STOP_CHECK_SECONDS)

        return stop_listening

    def run_once(self) -> bool:
        """One round: dispatch new events, attempt due deliveries; True when a batch was full.

        A full batch may have left work behind: the loop goes again at once.
        Otherwise it waits for the next wake (a commit that emitted) or due delivery.
        """
        try:
            dispatched = queue.dispatch_pending(self._factory)
            delivered = queue.deliver_due(
                self._factory,
                worker_id=self.worker_id,
                cipher=self._cipher,
                settings=self._settings,
                limit=DELIVERIES_PER_ROUND,
            )
        except _DATABASE_AWAY as exc:
            # The database may be briefly unreachable: wait, try again.
            self._outage.failed(exc)
            return False
        except Exception:
            logger.exception("notification dispatch or delivery failed")
            return False
        self._outage.recovered()
        return dispatched >= queue.DISPATCH_BATCH or delivered >= DELIVERIES_PER_ROUND

    def _idle_seconds(self) -> float:
        wait = self._settings.notification_poll_seconds
        try:
            with self._factory() as session:
                due = queue.next_due_at(session)
        except _DATABASE_AWAY as exc:
            self._outage.failed(exc)
            return wait
        except Exception:
            logger.exception("could not read the next due delivery")
            return wait
        if due is not None:
            wait = min(wait, (due - utcnow()).total_seconds())
        return max(wait, MIN_WAIT_SECONDS)

    def _run_periodic_jobs(self) -> None:
        now = time.monotonic()
        for job in self._jobs:
            if now < job.next_at:
                continue
            job.next_at = now + job.every_seconds
            try:
                job.run(self._factory)
            except _DATABASE_AWAY as exc:
                self._outage.failed(exc)
            except Exception:
                logger.exception("periodic job %s failed", job.name)


# After a lost connection the listener reconnects this much later; meanwhile the loop polls.
LISTEN_RETRY_SECONDS = 5.0


def listen_for_events(url: URL, wake: threading.Event, stop: threading.Event) -> None:
    """Set `wake` whenever any process commits an emitted event (PostgreSQL LISTEN), until `stop`.

    Without it a worker in another process than the API would see new events
    only at its next poll (`SIGNVAULT_NOTIFICATION_POLL_SECONDS`).
    """
    conninfo = url.set(drivername="postgresql").render_as_string(hide_password=False)
    outage = Outage("listening for notification events", "polling until it reconnects")
    while not stop.is_set():
        try:
            with psycopg.connect(conninfo, autocommit=True) as connection:
                connection.execute(f"LISTEN {outbox.NOTIFY_CHANNEL}")
                outage.recovered()
                wake.set()  # what was committed while nobody listened
                while not stop.is_set():
                    for _notice in connection.notifies(timeout=1.0, stop_after=1):
                        wake.set()
        except psycopg.Error as exc:
            outage.failed(exc)
            stop.wait(LISTEN_RETRY_SECONDS)
