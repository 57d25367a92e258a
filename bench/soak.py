"""Load held over time (issue #17): errors, latency, memory and file descriptors over N minutes of mixed traffic.

    .venv/bin/python bench/soak.py [--minutes 10] [--load 0.8] [--rate R]
        [--database-url postgresql+psycopg://postgres@127.0.0.1:5432/test] [--jsonl FILE]

Creates a fresh PostgreSQL database (dropped at the end), issues the test PKI of
tests/pki.py and serves its TSA, OCSP and CRL responders from a child process,
then starts `signvault serve --workers 2` and one `signvault worker` (the servers
with SIGNVAULT_BACKGROUND_IN_PROCESS=false), all with production password hashing.

A calibration phase runs the mix from closed-loop clients (each sends its next
request when the last is answered) and takes their rate as the maximum; the soak
then sends the same mix open-loop, at `--load` (0.8) of that maximum, with
Poisson arrivals (fixed seed). A request's latency runs from its scheduled
arrival, so a server falling behind shows in it. Each minute prints one JSON
line; the end prints a table and the targets:

- 0 errors (any transport failure or unexpected non-2xx answer, a verification
  that is not all valid, a batch item that failed);
- the last minute's p99 within 1.5x the second minute's;
- RSS growth from minute 2 to the last minute under 20 MB, for each process;
- open file descriptors flat (at most 2 more in the last minute than in minute 2,
  for each process; a connection pool may still be filling up). The server's
  accepted client connections are counted apart: they follow the load.
"""

import argparse
import asyncio
import json
import os
import random
import re
import shutil
import statistics
import sys
import tempfile
import time
from collections import Counter, deque
from collections.abc import Awaitable, Callable
from contextlib import suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import make_url

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.sign import (  # noqa: E402
    admin_with_signer,
    cpu_seconds,
    drop_postgres_database,
    fresh_postgres_database,
    make_pdf,
    memory_kib,
    pki_in_a_process,
    unlimited_licence,
)
from tests.served import separate_worker, serve, signvault_env  # noqa: E402

ADMIN_PASSWORD = "Bench-Soak-Passw0rd!"
CONNECTIONS = 64
BATCH_FILES = (
    12  # above SIGNVAULT_BATCH_SYNC_MAX (10): answered 202, signed by the worker
)

# Requests per 100 of the mix. Uploads outnumber the signatures of stored documents,
# so there is always an unsigned document to sign.
MIX = {
    "login": 4,
    "upload": 22,
    "sign B-B": 14,
    "sign B-LT": 4,
    "sign one-shot": 4,
    "verify": 10,
    "download": 8,
    "list documents": 17,
    "audit search": 16,
    "batch": 1,
}
AUDIT_SEARCHES = (
    "action=document.signed",
    "action=document.",
    "resource_type=document&resource_id={document}",
    "outcome=failure",
    "actor_id={actor}",
)


UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


class Unexpected(Exception):
    """An answer the soak counts as an error."""


@dataclass
class Outcome:
    op: str
    scheduled: float  # seconds since the phase started
    latency_ms: float
    error: str | None


@dataclass
class Traffic:
    """The mix's requests, sharing the documents they make (one event loop, no locks)."""

    client: httpx.AsyncClient
    password: str
    certificate_id: str
    actor_id: str
    pdf: bytes
    token: str
    rng: random.Random
    unsigned: deque[str] = field(default_factory=deque)
    signed: deque[str] = field(default_factory=lambda: deque(maxlen=500))
    batches: list[str] = field(default_factory=list)
    # Requests in flight, at most the client's connections. httpx's pool scans its
    # waiting requests on every release: with thousands queued inside it (a server
    # falling behind for a moment) the bench client itself spent a core and fell
    # further behind, which looked like a request left unanswered. An asyncio
    # semaphore queues the rest in constant time.
    in_flight: asyncio.Semaphore = field(
        default_factory=lambda: asyncio.Semaphore(CONNECTIONS)
    )

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}

    def pick(self, rng: random.Random | None = None) -> str:
        return (rng or self.rng).choices(list(MIX), weights=list(MIX.values()))[0]

    async def run(self, op: str) -> str:
        """Send one request of kind `op` (or what stands in for it); returns the kind sent."""
        if op.startswith("sign B-") and not self.unsigned:
            op = "upload"
        if op in ("verify", "download") and not self.signed:
            op = "list documents"
        handlers: dict[str, Callable[[], Awaitable[None]]] = {
            "login": self._login,
            "upload": self._upload,
            "sign B-B": lambda: self._sign("B-B"),
            "sign B-LT": lambda: self._sign("B-LT"),
            "sign one-shot": self._sign_one_shot,
            "verify": self._verify,
            "download": self._download,
            "list documents": self._list_documents,
            "audit search": self._audit_search,
            "batch": self._batch,
        }
        await handlers[op]()
        return op

    async def _call(
        self, method: str, path: str, *, expect: int = 200, **kwargs: Any
    ) -> httpx.Response:
        answer = await self.client.request(method, path, headers=self.headers, **kwargs)
        if answer.status_code != expect:
            where = UUID.sub("{id}", path.split("?")[0])
            raise Unexpected(
                f"{method} {where}: {answer.status_code} {answer.text[:300]}"
            )
        return answer

    async def _login(self) -> None:
        answer = await self.client.post(
            "/api/v1/auth/login", json={"username": "admin", "password": self.password}
        )
        if answer.status_code != 200:
            raise Unexpected(f"login: {answer.status_code} {answer.text[:300]}")
        self.token = answer.json()["access_token"]

    async def _upload(self) -> None:
        answer = await self._call(
            "POST", "/api/v1/documents", expect=201,
            files={"file": ("soak.pdf", self.pdf, "application/pdf")}, data={"title": "soak"},
        )  # fmt: skip
        self.unsigned.append(answer.json()["id"])

    async def _sign(self, level: str) -> None:
        document = self.unsigned.popleft()
        await self._call(
            "POST", f"/api/v1/documents/{document}/sign", expect=201,
            json={"certificate_id": self.certificate_id, "level": level, "reason": "soak"},
        )  # fmt: skip
        self.signed.append(document)

    async def _sign_one_shot(self) -> None:
        answer = await self._call(
            "POST", "/api/v1/sign",
            files={"file": ("soak.pdf", self.pdf, "application/pdf")},
            data={"certificate_id": self.certificate_id, "level": "B-B"},
        )  # fmt: skip
        if not answer.content.startswith(b"%PDF-"):
            raise Unexpected("sign one-shot: the answer is not a PDF")
        self.signed.append(answer.headers["X-Document-ID"])

    async def _verify(self) -> None:
        document = self.rng.choice(self.signed)
        report = (
            await self._call("POST", f"/api/v1/documents/{document}/verify")
        ).json()
        if not report["all_valid"]:
            problems = [s["problems"] for s in report["signatures"]]
            raise Unexpected(f"verify: not all valid: {problems}"[:400])

    async def _download(self) -> None:
        document = self.rng.choice(self.signed)
        answer = await self._call(
            "GET", f"/api/v1/documents/{document}/content?version=latest"
        )
        if not answer.content.startswith(b"%PDF-"):
            raise Unexpected("download: not a PDF")

    async def _list_documents(self) -> None:
        await self._call("GET", "/api/v1/documents?limit=50&status=signed")

    async def _audit_search(self) -> None:
        query = self.rng.choice(AUDIT_SEARCHES).format(
            document=self.rng.choice(self.signed) if self.signed else self.actor_id,
            actor=self.actor_id,
        )
        await self._call("GET", f"/api/v1/audit-logs?limit=50&{query}")

    async def _batch(self) -> None:
        answer = await self._call(
            "POST", "/api/v1/batches", expect=202,
            files=[("files", (f"b{i}.pdf", self.pdf, "application/pdf")) for i in range(BATCH_FILES)],
            data={"options": json.dumps({"certificate_id": self.certificate_id, "level": "B-B"})},
        )  # fmt: skip
        self.batches.append(answer.json()["id"])


REQUEST_DEADLINE_SECONDS = 180.0  # from the scheduled arrival, queueing included


async def timed(
    traffic: Traffic, op: str, scheduled: float, started_at: float
) -> Outcome:
    error = None
    try:
        # httpx's own timeouts bound each phase of a request, not the whole: this
        # bounds the whole, so a request that never ends is an error, not a hang.
        async with asyncio.timeout(REQUEST_DEADLINE_SECONDS), traffic.in_flight:
            op = await traffic.run(op)
    except Unexpected as exc:
        error = str(exc)
    except TimeoutError:
        error = f"{op}: no answer in {REQUEST_DEADLINE_SECONDS:.0f} s"
    except Exception as exc:  # an error of the soak's, not only of the transport
        error = f"{op}: {type(exc).__name__} {exc}"
    latency = (time.monotonic() - started_at - scheduled) * 1000
    return Outcome(op, scheduled, latency, error)


async def closed_loop(traffic: Traffic, clients: int, seconds: float) -> list[Outcome]:
    """`clients` loops, each sending the mix's next request once the last is answered."""
    started = time.monotonic()
    outcomes: list[Outcome] = []

    async def loop() -> None:
        while (now := time.monotonic() - started) < seconds:
            outcomes.append(await timed(traffic, traffic.pick(), now, started))

    await asyncio.gather(*(loop() for _ in range(clients)))
    return outcomes


async def open_loop(
    traffic: Traffic,
    rate: float,
    minutes: int,
    on_minute: Callable[[int, list[Outcome]], None],
    seed: int,
) -> list[Outcome]:
    """Poisson arrivals at `rate` a second for `minutes`, whatever the answers take.

    Arrivals and kinds come from their own generator: the same seed and rate send
    the same sequence. A minute is reported once its own requests are answered.
    """
    schedule = random.Random(seed)
    started = time.monotonic()
    by_minute: list[list[asyncio.Task[Outcome]]] = [[] for _ in range(minutes)]

    async def report(minute: int) -> list[Outcome]:
        outcomes = list(await asyncio.gather(*by_minute[minute - 1]))
        on_minute(minute, outcomes)
        return outcomes

    reports = []
    arrival = schedule.expovariate(rate)
    for minute in range(1, minutes + 1):
        while arrival < minute * 60:
            delay = arrival - (time.monotonic() - started)
            if delay > 0:
                await asyncio.sleep(delay)
            by_minute[minute - 1].append(
                asyncio.create_task(
                    timed(traffic, traffic.pick(schedule), arrival, started)
                )
            )
            arrival += schedule.expovariate(rate)
        reports.append(asyncio.create_task(report(minute)))
        waiting = {
            earlier + 1: unanswered
            for earlier in range(minute)
            if (unanswered := sum(not t.done() for t in by_minute[earlier]))
        }
        print(f"# {minute} min sent; unanswered by minute: {waiting}", flush=True)
    return [o for outcomes in await asyncio.gather(*reports) for o in outcomes]


def percentile(values: list[float], fraction: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * fraction))]


# --- processes ----------------------------------------------------------------


def children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return sorted(found)


def sockets_by_inode() -> dict[str, tuple[int, int, str]]:
    """Every TCP socket's inode → (local port, remote port, state), from /proc/net/tcp{,6}."""
    found = {}
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            parts = line.split()
            local, remote, state, inode = parts[1], parts[2], parts[3], parts[9]
            found[inode] = (
                int(local.rsplit(":", 1)[1], 16),
                int(remote.rsplit(":", 1)[1], 16),
                state,
            )
    return found


@dataclass
class Sample:
    rss_mb: float
    fds: int  # without the accepted client connections
    clients: int  # accepted client connections
    database: int  # connections to PostgreSQL
    outbound: int  # connections to the PKI's TSA, OCSP responder and CRLs
    cpu_s: float


def sample(
    pid: int,
    server_port: int,
    database_port: int,
    pki_port: int,
    sockets: dict[str, tuple[int, int, str]],
) -> Sample:
    fds = clients = database = outbound = 0
    fd_dir = Path(f"/proc/{pid}/fd")
    for fd in fd_dir.iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            local, remote, state = sockets.get(target[8:-1], (0, 0, ""))
            if local == server_port and state != "0A":  # 0A: LISTEN
                clients += 1
                continue
            database += remote == database_port
            outbound += remote == pki_port
        fds += 1
    return Sample(
        memory_kib(pid, "VmRSS") / 1024,
        fds,
        clients,
        database,
        outbound,
        cpu_seconds(pid),
    )


@dataclass
class IdleFds:
    fds: int  # client connections apart, as in `Sample`
    database: int
    outbound: int

    @property
    def own(self) -> int:
        """Descriptors but the pooled connections (their pools keep up to a bound)."""
        return self.fds - self.database - self.outbound

    kinds: Counter[str]  # what they are: a file's folder, socket, pipe, anon_inode:…


def open_files(pid: int) -> Counter[str]:
    kinds: Counter[str] = Counter()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        with suppress(OSError):
            target = os.readlink(fd)
            if target.startswith("anon_inode:"):
                kinds[target] += 1  # anon_inode:[eventfd], [eventpoll]…
            elif ":[" in target:
                kinds[target.split(":[")[0]] += 1  # socket, pipe
            else:
                kinds[str(Path(target).parent)] += 1
    return kinds


@dataclass
class Processes:
    """The supervisor, its uvicorn workers (found as its children) and the separate worker."""

    supervisor: int
    worker: int
    server_port: int
    database_port: int
    pki_port: int
    names: dict[int, str] = field(default_factory=dict)
    samples: dict[str, list[tuple[float, Sample]]] = field(default_factory=dict)
    replaced: list[str] = field(default_factory=list)

    def sample(self, pid: int, sockets: dict[str, tuple[int, int, str]]) -> Sample:
        return sample(pid, self.server_port, self.database_port, self.pki_port, sockets)

    def uvicorn_workers(self) -> list[int]:
        found = []
        for pid in children(self.supervisor):
            try:
                command = Path(f"/proc/{pid}/cmdline").read_bytes()
            except OSError:
                continue  # exited since the listing
            if b"resource_tracker" not in command:
                found.append(pid)
        return found

    def name_all(self) -> None:
        self.names = {self.supervisor: "supervisor", self.worker: "worker"}
        for number, pid in enumerate(self.uvicorn_workers(), 1):
            self.names[pid] = f"uvicorn-{number}"

    def take(self, at: float) -> None:
        sockets = sockets_by_inode()
        for pid in [self.supervisor, *self.uvicorn_workers(), self.worker]:
            if pid not in self.names:
                # A uvicorn worker that died was replaced: a finding in itself.
                self.names[pid] = f"uvicorn-new-{pid}"
                self.replaced.append(f"{at:.0f} s: new uvicorn worker {pid}")
            try:
                taken = self.sample(pid, sockets)
            except (OSError, KeyError):
                continue  # exited between the listing and the reading
            self.samples.setdefault(self.names[pid], []).append((at, taken))

    def idle(self) -> dict[str, IdleFds]:
        """Per process, with nothing in flight: the fewest fds of three readings a second apart."""
        readings: dict[str, list[IdleFds]] = {}
        for _ in range(3):
            sockets = sockets_by_inode()
            for pid, name in self.names.items():
                with suppress(OSError, KeyError):
                    taken = self.sample(pid, sockets)
                    readings.setdefault(name, []).append(
                        IdleFds(
                            taken.fds, taken.database, taken.outbound, open_files(pid)
                        )
                    )
            time.sleep(1)
        return {
            name: min(taken, key=lambda r: r.fds) for name, taken in readings.items()
        }

    def minute(self, minute: int) -> dict[str, dict[str, float]]:
        """Per process: median RSS, fewest fds (the floor under requests in flight), CPU %."""
        row = {}
        for name, taken in self.samples.items():
            inside = [(at, s) for at, s in taken if minute - 1 <= at / 60 < minute]
            if not inside:
                continue
            before = [(at, s) for at, s in taken if at / 60 < minute - 1]
            (first_at, first), (last_at, last) = (before or inside)[-1], inside[-1]
            if not before:
                first_at, first = inside[0]
            row[name] = {
                "rss_mb": round(statistics.median(s.rss_mb for _, s in inside), 1),
                "fds": min(s.fds for _, s in inside),
                "fds_max": max(s.fds for _, s in inside),
                "db_connections": max(s.database for _, s in inside),
                "client_connections": max(s.clients for _, s in inside),
                "cpu_pct": round(
                    (last.cpu_s - first.cpu_s) * 100 / max(1.0, last_at - first_at), 1
                ),
            }
        return row


SAMPLE_SECONDS = 5.0
FDS_TARGET = "open file descriptors flat (<= +2, idle before and after, pooled connections apart)"
THREAD_IDLE_SECONDS = 11.0  # anyio's WorkerThread.MAX_IDLE_TIME is 10 s


async def sampler(processes: Processes, started: float, stop: asyncio.Event) -> None:
    while not stop.is_set():
        processes.take(time.monotonic() - started)
        with suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), SAMPLE_SECONDS)


# --- set-up -------------------------------------------------------------------


def problems_in_log(path: Path) -> list[str]:
    lines = path.read_text(errors="replace").splitlines()
    return [
        line
        for line in lines
        if "Traceback" in line or " ERROR" in line or "ERROR:" in line
    ]


# --- report -------------------------------------------------------------------


def minute_row(
    minute: int, outcomes: list[Outcome], processes: Processes
) -> dict[str, Any]:
    latencies = [o.latency_ms for o in outcomes]
    by_op: dict[str, dict[str, float]] = {}
    for op in MIX:
        mine = [o for o in outcomes if o.op == op]
        if mine:
            by_op[op] = {
                "n": len(mine),
                "errors": sum(o.error is not None for o in mine),
                "p50_ms": round(percentile([o.latency_ms for o in mine], 0.5), 1),
                "p99_ms": round(percentile([o.latency_ms for o in mine], 0.99), 1),
            }
    return {
        "minute": minute,
        "requests": len(outcomes),
        "per_second": round(len(outcomes) / 60, 2),
        "errors": sum(o.error is not None for o in outcomes),
        "p50_ms": round(percentile(latencies, 0.5), 1),
        "p99_ms": round(percentile(latencies, 0.99), 1),
        "processes": processes.minute(minute),
        "ops": by_op,
    }


def print_table(rows: list[dict[str, Any]]) -> None:
    names = list(rows[0]["processes"]) if rows else []
    head = f"{'min':>3} {'req':>5} {'req/s':>6} {'err':>4} {'p50 ms':>7} {'p99 ms':>8}"
    head += "".join(f" | {name + ' MB/fd/db':>24}" for name in names)
    print(head)
    for row in rows:
        line = (
            f"{row['minute']:>3} {row['requests']:>5} {row['per_second']:>6.1f} {row['errors']:>4}"
            f" {row['p50_ms']:>7.0f} {row['p99_ms']:>8.0f}"
        )
        for name in names:
            proc = row["processes"].get(name)
            cell = (
                f"{proc['rss_mb']:.1f}/{proc['fds']}/{proc['db_connections']}"
                if proc
                else "-"
            )
            line += f" | {cell:>24}"
        print(line)


def targets(
    rows: list[dict[str, Any]],
    errors: int,
    idle: tuple[dict[str, IdleFds], dict[str, IdleFds]],
) -> list[tuple[str, bool | None, str]]:
    """(target, passed or None when the run is too short to tell, what was measured)."""
    checks: list[tuple[str, bool | None, str]] = [
        ("0 errors", errors == 0, f"{errors} errors")
    ]
    if len(rows) < 3:
        why = "needs at least 3 minutes"
        checks += [
            ("last minute's p99 within 1.5x minute 2's", None, why),
            ("RSS growth minute 2 -> end < 20 MB per process", None, why),
            (
                FDS_TARGET,
                None,
                why,
            ),
        ]
        return checks
    second, last = rows[1], rows[-1]
    ratio = last["p99_ms"] / second["p99_ms"] if second["p99_ms"] else float("inf")
    checks.append(
        (
            "last minute's p99 within 1.5x minute 2's",
            ratio <= 1.5,
            f"{last['p99_ms']:.0f} / {second['p99_ms']:.0f} ms = {ratio:.2f}x",
        )
    )
    growth = {}
    for name, proc in last["processes"].items():
        if name in second["processes"]:
            growth[name] = proc["rss_mb"] - second["processes"][name]["rss_mb"]
    checks.append(
        (
            "RSS growth minute 2 -> end < 20 MB per process",
            all(g < 20 for g in growth.values()),
            ", ".join(f"{n} {g:+.1f} MB" for n, g in growth.items()),
        )
    )
    before, after = idle
    fd_growth = {n: after[n].own - before[n].own for n in after if n in before}
    checks.append(
        (
            FDS_TARGET,
            all(g <= 2 for g in fd_growth.values()),
            ", ".join(
                f"{n} {before[n].own}->{after[n].own} ({g:+d}; pooled to PostgreSQL"
                f" {before[n].database}->{after[n].database}, to the PKI"
                f" {before[n].outbound}->{after[n].outbound})"
                for n, g in fd_growth.items()
            ),
        )
    )
    return checks


# --- main ---------------------------------------------------------------------


async def soak(
    args: argparse.Namespace,
    base: str,
    processes: Processes,
    setup: dict[str, str],
    out: Any,
) -> dict[str, Any]:
    rng = random.Random(args.seed)
    # A new connection per request: on kept-alive ones the pool sends most requests
    # down its first connections, which pins them to one uvicorn worker (first try:
    # one worker at 44 % CPU, the other at 3 %). Client connections are counted apart.
    limits = httpx.Limits(max_connections=CONNECTIONS, max_keepalive_connections=0)
    timeout = httpx.Timeout(120, pool=300)
    async with httpx.AsyncClient(
        base_url=base,
        limits=limits,
        timeout=timeout,
        headers={"Connection": "close"},
    ) as client:
        traffic = Traffic(
            client, ADMIN_PASSWORD, setup["certificate_id"], setup["actor_id"],
            make_pdf(), setup["token"], rng,
        )  # fmt: skip
        errors: list[str] = []

        rate = args.rate
        if rate is None:
            print(
                f"# calibration: {args.clients} closed-loop clients, {args.warmup_seconds:.0f} s warm-up + {args.calibrate_seconds:.0f} s",
                flush=True,
            )
            warm = await closed_loop(traffic, args.clients, args.warmup_seconds)
            errors += [o.error for o in warm if o.error]
            measured = await closed_loop(traffic, args.clients, args.calibrate_seconds)
            errors += [o.error for o in measured if o.error]
            rate = len(measured) / args.calibrate_seconds
            calibration = {
                "phase": "calibration",
                "max_per_second": round(rate, 2),
                "p50_ms": round(percentile([o.latency_ms for o in measured], 0.5), 1),
                "p99_ms": round(percentile([o.latency_ms for o in measured], 0.99), 1),
                "errors": sum(o.error is not None for o in measured)
                + sum(o.error is not None for o in warm),
            }
            print(json.dumps(calibration), file=out, flush=True)
            rate *= args.load
        print(
            f"# soak: {args.minutes} min open-loop at {rate:.2f} requests/s", flush=True
        )

        # Open descriptors with nothing in flight, before and after: the per-minute
        # floors move with the requests in flight (their spool files, sockets).
        processes.name_all()
        await finished_batches(client, traffic, list(traffic.batches))
        idle_before = await quiet_fds(client, traffic, processes)

        rows: list[dict[str, Any]] = []
        started = time.monotonic()
        stop = asyncio.Event()
        sampling = asyncio.create_task(sampler(processes, started, stop))
        cpu_before = time.process_time()

        def on_minute(minute: int, outcomes: list[Outcome]) -> None:
            row = minute_row(minute, outcomes, processes)
            rows.append(row)
            print(json.dumps(row), file=out, flush=True)

        outcomes = await open_loop(traffic, rate, args.minutes, on_minute, args.seed)
        stop.set()
        await sampling
        rows.sort(key=lambda r: r["minute"])
        errors += [o.error for o in outcomes if o.error]
        bench_cpu = (time.process_time() - cpu_before) / (args.minutes * 60) * 100

        # The batches' documents are signed by the separate worker: wait for them.
        failed_items = 0
        for batch, read in await finished_batches(client, traffic, traffic.batches):
            if read["status"] != "completed":
                errors.append(
                    f"batch: {batch} still {read['status']} 120 s after the soak"
                )
            for item in read["items"]:
                if item["status"] == "failed":
                    failed_items += 1
                    errors.append(
                        f"batch: {batch} item {item['position']}: {item['error_code']} {item['error_detail']}"
                    )
        idle_after = await quiet_fds(client, traffic, processes)
        return {
            "rate": rate,
            "rows": rows,
            "errors": errors,
            "batches": len(traffic.batches),
            "batch_items_failed": failed_items,
            "bench_cpu_pct": round(bench_cpu, 1),
            "idle_fds": (idle_before, idle_after),
        }


async def quiet_fds(
    client: httpx.AsyncClient, traffic: Traffic, processes: Processes
) -> dict[str, IdleFds]:
    """Open descriptors of each process with nothing in flight.

    A request thread that signed keeps an event loop (3 descriptors) and an HTTP
    session for as long as it lives, and anyio ends threads idle for 10 s only
    when the next request comes: let them idle out, then send a few requests.
    """
    await asyncio.sleep(THREAD_IDLE_SECONDS)
    for _ in range(16):  # a new connection each: both uvicorn workers get some
        await client.get("/api/v1/auth/me", headers=traffic.headers)
    await asyncio.sleep(1)
    return await asyncio.to_thread(processes.idle)


async def finished_batches(
    client: httpx.AsyncClient, traffic: Traffic, batches: list[str]
) -> list[tuple[str, dict[str, Any]]]:
    """Each batch as read once it completed, or as it stood 120 s from now."""
    deadline = time.monotonic() + 120
    reads = []
    for batch in batches:
        while True:
            read = (
                await client.get(f"/api/v1/batches/{batch}", headers=traffic.headers)
            ).json()
            if read["status"] == "completed" or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.5)
        reads.append((batch, read))
    return reads


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--minutes", type=int, default=10)
    parser.add_argument(
        "--load", type=float, default=0.8, help="fraction of the calibrated maximum"
    )
    parser.add_argument(
        "--rate",
        type=float,
        default=None,
        help="requests/s to soak at, without calibrating",
    )
    parser.add_argument(
        "--clients", type=int, default=8, help="closed-loop clients while calibrating"
    )
    parser.add_argument("--warmup-seconds", type=float, default=15)
    parser.add_argument("--calibrate-seconds", type=float, default=30)
    parser.add_argument("--seed", type=int, default=17)
    parser.add_argument(
        "--database-url", default="postgresql+psycopg://postgres@127.0.0.1:5432/test"
    )
    parser.add_argument(
        "--jsonl", type=Path, default=None, help="also write the JSON lines here"
    )
    parser.add_argument(
        "--keep", action="store_true", help="keep the data dir and logs (path printed)"
    )
    args = parser.parse_args()

    licence, public_key = unlimited_licence()
    database_url = fresh_postgres_database(args.database_url)
    work = Path(tempfile.mkdtemp(prefix="signvault-soak-"))
    out = sys.stdout if args.jsonl is None else Tee(args.jsonl)
    try:
        with pki_in_a_process(stock_certomancer=False) as pki:
            roots = work / "roots.pem"
            roots.write_bytes(pki.root_pem)
            env = signvault_env(
                work / "data", database_url,
                SIGNVAULT_ADMIN_PASSWORD=ADMIN_PASSWORD,
                SIGNVAULT_LICENSE_PUBLIC_KEY=public_key,
                SIGNVAULT_BACKGROUND_IN_PROCESS="false",
                SIGNVAULT_TSA_URL=pki.tsa_url,
                SIGNVAULT_TRUST_ROOTS_FILE=str(roots),
                # The production password hash (tests/served.py makes it cheap).
                SIGNVAULT_ARGON2_MEMORY_KIB="19456",
                SIGNVAULT_ARGON2_TIME_COST="2",
                # One client from one address: measure the work, not the throttles.
                SIGNVAULT_RATE_LIMIT_PER_MINUTE="0",
                SIGNVAULT_LOGIN_RATE_LIMIT_PER_MINUTE="0",
            )  # fmt: skip
            with serve(env, work, "--workers", "2") as served:
                headers, certificate_id = admin_with_signer(
                    served.base_url, ADMIN_PASSWORD, pki.pkcs12("alice", b"pw"), licence
                )
                me = httpx.get(
                    f"{served.base_url}/api/v1/auth/me", headers=headers
                ).json()
                setup = {
                    "token": headers["Authorization"].removeprefix("Bearer "),
                    "certificate_id": certificate_id,
                    "actor_id": me["id"],
                }
                with separate_worker(env, work) as worker:
                    processes = Processes(
                        served.pid, worker.pid,
                        int(served.base_url.rsplit(":", 1)[1]),
                        make_url(database_url).port or 5432,
                        httpx.URL(pki.url).port or 80,
                    )  # fmt: skip
                    result = asyncio.run(
                        soak(args, served.base_url, processes, setup, out)
                    )
                    result["worker_log_problems"] = problems_in_log(work / "worker.log")
                result["server_log_problems"] = problems_in_log(served.log_path)
        report(result, processes, out)
    finally:
        drop_postgres_database(database_url)
        if args.keep:
            print(f"# data dir and logs kept in {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


class Tee:
    """stdout, and a JSON Lines file for every line written."""

    def __init__(self, path: Path) -> None:
        self.file = path.open("w")

    def write(self, text: str) -> None:
        sys.stdout.write(text)
        self.file.write(text)

    def flush(self) -> None:
        sys.stdout.flush()
        self.file.flush()


def report(result: dict[str, Any], processes: Processes, out: Any) -> None:
    rows = result["rows"]
    errors = result["errors"]
    print()
    print_table(rows)
    print(
        f"(MB/fd/db: median RSS, fewest open file descriptors without client connections, most PostgreSQL connections; bench client CPU {result['bench_cpu_pct']} % of a core)"
    )
    print(
        f"{result['batches']} batches of {BATCH_FILES}, {result['batch_items_failed']} items failed"
    )
    for line in processes.replaced:
        print(f"worker replaced: {line}")
    kinds = Counter(UUID.sub("{id}", error).split(":")[0] for error in errors)
    for kind, count in kinds.most_common():
        example = next(e for e in errors if UUID.sub("{id}", e).startswith(kind))
        print(f"error x{count}: {example[:300]}")
    for where in ("server", "worker"):
        problems = result[f"{where}_log_problems"]
        if problems:
            print(
                f"{where} log: {len(problems)} error lines, first: {problems[0][:300]}"
            )
    # A traceback in a log (a background job, say) is an error the client never saw.
    logged = len(result["server_log_problems"]) + len(result["worker_log_problems"])
    checks = targets(
        rows, len(errors) + len(processes.replaced) + logged, result["idle_fds"]
    )
    before, after = result["idle_fds"]
    for name in after:
        if name in before and after[name].kinds != before[name].kinds:
            changed = {
                kind: after[name].kinds[kind] - before[name].kinds[kind]
                for kind in after[name].kinds | before[name].kinds
                if after[name].kinds[kind] != before[name].kinds[kind]
            }
            print(f"idle fds of {name} changed: {changed}")
    print()
    for name, passed, measured in checks:
        verdict = "n/a " if passed is None else ("PASS" if passed else "FAIL")
        print(f"{verdict}  {name}: {measured}")
    summary = {
        "phase": "summary",
        "rate_per_second": round(result["rate"], 2),
        "errors": len(errors),
        "workers_replaced": len(processes.replaced),
        "batches": result["batches"],
        "batch_items_failed": result["batch_items_failed"],
        "server_log_error_lines": len(result["server_log_problems"]),
        "worker_log_error_lines": len(result["worker_log_problems"]),
        "targets": {name: passed for name, passed, _ in checks},
    }
    print(json.dumps(summary), file=out, flush=True)


if __name__ == "__main__":
    main()
