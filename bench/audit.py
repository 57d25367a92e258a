"""Audit-log benchmark: bulk-insert N chained events, time filtered searches and a full export.

    .venv/bin/python bench/audit.py                          # SQLite, 1,000,000 events
    .venv/bin/python bench/audit.py --database-url postgresql+psycopg://postgres@127.0.0.1:5432/test
    .venv/bin/python bench/audit.py --rows 100000 --repeat 10

Searches go through the real app (TestClient → router → service → database), as
`GET /api/v1/audit-logs?...` with the total count. The export runs the code path
of `GET /api/v1/audit-logs/export` (keyset batches → JSON Lines → 64 KB chunks)
in this process, so its peak memory can be read from /proc: the high-water mark
is reset just before (Linux `clear_refs`) and read after.
A PostgreSQL URL names a server: the benchmark creates and drops its own
database `sv_bench_audit` there.
"""

import argparse
import random
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy import create_engine, make_url, text

from app.access import service as access_service
from app.audit import service as audit_service
from app.audit.export import chunked, jsonl_lines
from app.audit.service import AuditFilters
from app.core.config import Settings
from app.core.db import make_engine, make_sessionmaker
from app.core.migrations import upgrade_to_head
from app.core.security import PasswordHasher
from app.main import create_app

AREAS = {
    "auth": ["login", "logout", "token_issued", "token_refreshed"],
    "document": ["uploaded", "signed", "downloaded", "verified", "deleted"],
    "certificate": ["imported", "assigned", "disabled", "revoked"],
    "user": ["created", "updated", "disabled"],
    "client": ["created", "secret_rotated"],
    "access": ["denied"],
}
ACTIONS = [f"{area}.{verb}" for area, verbs in AREAS.items() for verb in verbs]
RESOURCE_OF = {
    "auth": "user",
    "document": "document",
    "certificate": "certificate",
    "user": "user",
    "client": "api_client",
    "access": None,
}
ACTORS = [f"actor-{n:04d}" for n in range(500)]
START = datetime(2025, 11, 23, tzinfo=UTC)
SPAN = timedelta(days=365)


def memory_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(field)


def events(count: int, seed: int = 7) -> Iterator[dict[str, Any]]:
    rng = random.Random(seed)
    step = SPAN / count
    for n in range(count):
        action = rng.choice(ACTIONS)
        area = action.split(".")[0]
        resource_type = RESOURCE_OF[area]
        roll = rng.random()
        yield {
            "id": uuid.UUID(int=rng.getrandbits(128), version=4),
            "occurred_at": START + step * n,
            "actor_kind": "client" if roll < 0.2 else "user",
            "actor_id": rng.choice(ACTORS),
            "actor_name": None,
            "action": action,
            "resource_type": resource_type,
            "resource_id": f"{resource_type}-{rng.randrange(100_000)}"
            if resource_type
            else None,
            "outcome": "denied"
            if area == "access"
            else ("failure" if roll > 0.96 else "success"),
            "ip": f"10.{rng.randrange(4)}.{rng.randrange(256)}.{rng.randrange(1, 255)}",
            "user_agent": "bench/1.0",
            "request_id": f"{rng.getrandbits(128):032x}",
            "details": {"n": n, "size": rng.randrange(1, 10_000_000)},
        }


def fresh_database(url: str | None, workdir: Path) -> tuple[str, str]:
    if not url or url.startswith("sqlite"):
        path = workdir / "audit-bench.db"
        return f"sqlite:///{path}", "SQLite"
    admin = create_engine(url, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(
            text('DROP DATABASE IF EXISTS "sv_bench_audit" WITH (FORCE)')
        )
        connection.execute(text('CREATE DATABASE "sv_bench_audit"'))
        version = connection.scalar(text("SHOW server_version"))
    admin.dispose()
    bench_url = (
        make_url(url)
        .set(database="sv_bench_audit")
        .render_as_string(hide_password=False)
    )
    return bench_url, f"PostgreSQL {version}"


def percentile(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", default=None)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=20, help="runs per search")
    parser.add_argument(
        "--existing",
        action="store_true",
        help="use a database this script filled before (no insert, kept afterwards)",
    )
    parser.add_argument("--searches-only", action="store_true")
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="sv-bench-audit-"))
    if args.existing:
        url, label = args.database_url, "existing database"
    else:
        url, label = fresh_database(args.database_url, workdir)
    engine = make_engine(url)
    upgrade_to_head(engine)
    factory = make_sessionmaker(engine)
    if not args.existing:
        print(f"{label}: inserting {args.rows:,} chained events …", flush=True)
        began = time.perf_counter()
        source = events(args.rows)
        while True:
            batch = [row for _, row in zip(range(50_000), source, strict=False)]
            if not batch:
                break
            with factory.begin() as session:
                audit_service.append_many(session, batch)
        insert_s = time.perf_counter() - began
        print(f"  insert: {insert_s:.0f} s ({args.rows / insert_s:,.0f} events/s)")
    if engine.dialect.name == "postgresql" and not args.existing:
        # What autovacuum does after a bulk insert: statistics, and the visibility
        # map that lets counts be index-only scans.
        with engine.connect().execution_options(
            isolation_level="AUTOCOMMIT"
        ) as connection:
            connection.execute(text("VACUUM ANALYZE audit_events"))

    settings = Settings(
        _env_file=None,
        data_dir=workdir / "data",
        database_url=url,
        argon2_time_cost=1,
        argon2_memory_kib=64,
    )
    app = create_app(settings)
    with factory.begin() as session:  # no-op when the admin exists (--existing)
        access_service.bootstrap_admin(
            session,
            PasswordHasher(time_cost=1, memory_kib=64),
            username="admin",
            password="Bench-Passw0rd!",
        )
    rng = random.Random(11)
    day = timedelta(days=1)

    def moment() -> datetime:
        return START + SPAN * rng.random()

    def iso(value: datetime) -> str:
        return value.isoformat().replace("+00:00", "Z")

    def failures_in_30_days() -> str:
        t = moment()
        return f"outcome=failure&from={iso(t)}&to={iso(t + 30 * day)}"

    def actor_in_7_days() -> str:
        t = moment()
        return f"actor_id={rng.choice(ACTORS)}&from={iso(t)}&to={iso(t + 7 * day)}"

    def one_day_by_action() -> str:
        t = moment()
        return f"from={iso(t)}&to={iso(t + day)}&sort=action"

    searches: dict[str, Callable[[], str]] = {
        "actor": lambda: f"actor_id={rng.choice(ACTORS)}",
        "action (exact)": lambda: f"action={rng.choice(ACTIONS)}",
        "action prefix `certificate.`": lambda: "action=certificate.",
        "resource type + id": lambda: (
            f"resource_type=document&resource_id=document-{rng.randrange(100_000)}"
        ),
        "outcome=failure, 30 days": failures_in_30_days,
        "ip": lambda: (
            f"ip=10.{rng.randrange(4)}.{rng.randrange(256)}.{rng.randrange(1, 255)}"
        ),
        "actor + 7 days": actor_in_7_days,
        "one day, sorted by action": one_day_by_action,
        "no filter, page 10": lambda: "offset=900",
    }
    results: dict[str, list[float]] = {}
    with TestClient(app) as client:
        token = client.post(
            "/api/v1/auth/login",
            json={"username": "admin", "password": "Bench-Passw0rd!"},
        ).json()["access_token"]
        headers = {"Authorization": f"Bearer {token}"}
        for name, make_query in searches.items():
            client.get(f"/api/v1/audit-logs?{make_query()}", headers=headers)  # warm
            timings = []
            for _ in range(args.repeat):
                query = make_query()
                t0 = time.perf_counter()
                response = client.get(f"/api/v1/audit-logs?{query}", headers=headers)
                timings.append((time.perf_counter() - t0) * 1000)
                assert response.status_code == 200, response.text
            results[name] = timings
            body = response.json()
            print(
                f"  {name:32} p50 {statistics.median(timings):7.1f} ms  "
                f"p95 {percentile(timings, 0.95):7.1f} ms  (last: {body['count']} of {body['total']:,})",
                flush=True,
            )
    everything = [t for timings in results.values() for t in timings]
    print(
        f"  {'all searches':32} p50 {statistics.median(everything):7.1f} ms  "
        f"p95 {percentile(everything, 0.95):7.1f} ms"
    )
    if args.searches_only:
        return

    with factory() as session:
        through_seq, _ = audit_service.chain_head(session)
    idle = memory_kib("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")
    t0 = time.perf_counter()
    size = lines = 0
    with Path("/dev/null").open("wb") as sink:
        for chunk in chunked(
            jsonl_lines(
                audit_service.iter_export(
                    factory, filters=AuditFilters(), through_seq=through_seq
                )
            )
        ):
            sink.write(chunk)
            size += len(chunk)
            lines += chunk.count(b"\n")
    export_s = time.perf_counter() - t0
    peak = memory_kib("VmHWM")
    print(
        f"  export: {lines:,} rows, {size / 1e6:,.0f} MB JSONL in {export_s:.0f} s "
        f"({lines / export_s:,.0f} rows/s); RSS {idle / 1024:.0f} MB before, "
        f"peak {peak / 1024:.0f} MB (+{(peak - idle) / 1024:.1f} MB)"
    )
    t0 = time.perf_counter()
    with factory() as session:
        report = audit_service.verify(session)
    print(
        f"  verify: {report.checked:,} entries in {time.perf_counter() - t0:.0f} s, intact={report.intact}"
    )
    app.state.engine.dispose()
    engine.dispose()
    if args.existing:
        return
    if url.startswith("postgresql"):
        admin = create_engine(args.database_url, isolation_level="AUTOCOMMIT")
        with admin.connect() as connection:
            connection.execute(
                text('DROP DATABASE IF EXISTS "sv_bench_audit" WITH (FORCE)')
            )
        admin.dispose()
    else:
        Path(url.removeprefix("sqlite:///")).unlink()


if __name__ == "__main__":
    main()
