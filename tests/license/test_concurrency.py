"""Exact counting under concurrency: N parallel signers against a limit L < N succeed L times.

The signing endpoint comes with the signing feature; these tests race the
service function it calls, in threads with their own sessions and in separate
processes, on SQLite and on PostgreSQL.
"""

import multiprocessing
import threading
import time
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from multiprocessing.synchronize import Barrier

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from app.access.models import User
from app.audit.service import SYSTEM, Actor, ActorKind
from app.core.config import Settings
from app.core.db import make_engine, make_sessionmaker
from app.core.security import PasswordHasher
from app.core.types import utcnow
from app.license import service as license_service
from app.license.errors import LicenseLimitReached
from app.license.models import LicenseUsage
from tests.factories import Credentials, make_user
from tests.license.conftest import make_license, public_key_text

SIGNER = Actor(ActorKind.USER, "00000000-0000-0000-0000-0000000000aa", "sam")
LIMIT = 10


class Abort(Exception):
    """The signing failed after the signature was reserved."""


def grant(
    sessions: sessionmaker[Session],
    issuer: Ed25519PrivateKey,
    *,
    users: int | None = None,
    signatures_per_month: int | None = None,
    signatures_total: int | None = None,
) -> None:
    content = make_license(
        issuer,
        users=users,
        signatures_per_month=signatures_per_month,
        signatures_total=signatures_total,
    )
    with sessions.begin() as session:
        license_service.install_license(session, actor=SYSTEM, content=content)


def attempt(factory: sessionmaker[Session], *, abort: bool = False) -> str:
    """One signing transaction: 'signed', 'refused' or 'aborted' (rolled back)."""
    try:
        with factory.begin() as session:
            license_service.reserve_signature(session, actor=SIGNER)
            time.sleep(0.003)  # the rest of the signing, counter rows still locked
            if abort:
                raise Abort
    except LicenseLimitReached:
        return "refused"
    except Abort:
        return "aborted"
    return "signed"


def counters(sessions: sessionmaker[Session]) -> dict[str, int]:
    with sessions() as session:
        return {
            row.period: row.signatures for row in session.scalars(select(LicenseUsage))
        }


def race(threads: int, work: Callable[[int], list[str]]) -> Counter[str]:
    barrier = threading.Barrier(threads)
    outcomes: Counter[str] = Counter()
    errors: list[BaseException] = []
    lock = threading.Lock()

    def run(number: int) -> None:
        try:
            barrier.wait()
            results = work(number)
            with lock:
                outcomes.update(results)
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    workers = [threading.Thread(target=run, args=(n,)) for n in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert errors == []
    return outcomes


def test_parallel_threads_sign_exactly_the_total_limit(
    sessions: sessionmaker[Session], issuer: Ed25519PrivateKey
) -> None:
    grant(sessions, issuer, signatures_total=LIMIT)
    outcomes = race(8, lambda _n: [attempt(sessions) for _ in range(6)])
    assert outcomes == {"signed": LIMIT, "refused": 48 - LIMIT}
    month = utcnow().strftime("%Y-%m")
    assert counters(sessions) == {"total": LIMIT, month: LIMIT}


def test_rolled_back_signatures_do_not_use_up_the_monthly_limit_under_concurrency(
    sessions: sessionmaker[Session], issuer: Ed25519PrivateKey
) -> None:
    grant(sessions, issuer, signatures_per_month=LIMIT)
    outcomes = race(
        6, lambda _n: [attempt(sessions, abort=i % 2 == 0) for i in range(8)]
    )
    assert outcomes["signed"] == LIMIT
    assert outcomes["aborted"] > 0
    assert outcomes.total() == 48
    month = utcnow().strftime("%Y-%m")
    assert counters(sessions) == {"total": LIMIT, month: LIMIT}


def _process_signer(
    url: str,
    public_key: str,
    attempts: int,
    start: Barrier,
    results: "multiprocessing.Queue[list[str]]",
) -> None:
    engine = make_engine(url)
    factory = make_sessionmaker(engine)
    license_service.bind_issuer_key(
        factory, Settings(_env_file=None, license_public_key=public_key)
    )
    start.wait(timeout=60)
    results.put([attempt(factory) for _ in range(attempts)])
    engine.dispose()


def test_two_processes_sign_exactly_the_limit_between_them(
    database_url: str,
    sessions: sessionmaker[Session],
    issuer: Ed25519PrivateKey,
) -> None:
    grant(sessions, issuer, signatures_per_month=LIMIT * 5, signatures_total=LIMIT)
    context = multiprocessing.get_context("spawn")
    start = context.Barrier(2)
    results: multiprocessing.Queue[list[str]] = context.Queue()
    processes = [
        context.Process(
            target=_process_signer,
            args=(database_url, public_key_text(issuer), 25, start, results),
        )
        for _ in range(2)
    ]
    for process in processes:
        process.start()
    per_process = [results.get(timeout=120) for _ in processes]
    for process in processes:
        process.join(timeout=60)
    assert [p.exitcode for p in processes] == [0, 0]
    outcomes = Counter(outcome for result in per_process for outcome in result)
    assert outcomes == {"signed": LIMIT, "refused": 50 - LIMIT}
    assert counters(sessions)["total"] == LIMIT


def test_parallel_user_creation_never_passes_the_user_limit(
    sessions: sessionmaker[Session],
    hasher: PasswordHasher,
    issuer: Ed25519PrivateKey,
    admin: Credentials,
) -> None:
    grant(sessions, issuer, users=5)

    def create(number: int) -> list[str]:
        try:
            make_user(sessions, hasher, username=f"user{number}")
        except LicenseLimitReached:
            return ["refused"]
        return ["created"]

    assert race(8, create) == {"created": 4, "refused": 4}
    with sessions() as session:
        assert len(session.scalars(select(User)).all()) == 5


def test_month_boundary_between_parallel_signers_keeps_both_months_exact(
    sessions: sessionmaker[Session], issuer: Ed25519PrivateKey
) -> None:
    now = datetime.now(UTC)
    grant(sessions, issuer, signatures_per_month=3)
    # Signers whose clocks straddle a month boundary (hosts a second apart).
    boundary = datetime(now.year + 1, 1, 1, tzinfo=UTC)

    def sign_at(number: int) -> list[str]:
        moment = boundary - timedelta(seconds=1) if number % 2 else boundary
        results = []
        for _ in range(4):
            try:
                with sessions.begin() as session:
                    license_service.reserve_signature(session, actor=SIGNER, now=moment)
                results.append("signed")
            except LicenseLimitReached:
                results.append("refused")
        return results

    outcomes = race(6, sign_at)
    counts = counters(sessions)
    january = counts[f"{boundary.year}-01"]
    december = counts.get(f"{boundary.year - 1}-12", 0)
    assert (january, outcomes["signed"]) == (3, counts["total"])
    assert december <= 3
    assert counts["total"] == january + december
