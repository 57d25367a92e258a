"""Signing throughput over HTTP with one host and with two (issue #18), on PostgreSQL + S3.

    .venv/bin/python bench/multi_host.py [--seconds 20] [--clients 8]
        [--database-url postgresql+psycopg://postgres@127.0.0.1:5432/test]

Each host is a `signvault serve --workers 1` with its own data dir; the hosts
share only a fresh PostgreSQL database and a SeaweedFS S3 server (started here,
as the tests start it), and the token keys and the master key that live there
or in the environment. The clients, the hosts, PostgreSQL and SeaweedFS all
share this machine's cores, so two hosts cannot double the rate here: the
figure to read is the CPU per request on each host, and where the rest went.

Requests are one-shot `POST /api/v1/sign` (B-B, 20 KB) from raw asyncio
sockets, a connection each; with two hosts, the clients are split evenly.
"""

import argparse
import asyncio
import base64
import json
import secrets
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

import httpx
from cryptography.hazmat.primitives.serialization import (
    BestAvailableEncryption,
    pkcs12,
)
from sqlalchemy import make_url

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.sign import (  # noqa: E402
    _drive,
    admin_with_signer,
    cpu_seconds,
    drop_postgres_database,
    fresh_postgres_database,
    make_pdf,
    make_pki,
    sign_request,
    unlimited_licence,
)
from tests.s3server import SeaweedServer  # noqa: E402
from tests.served import Served, serve, signvault_env, worker_pids  # noqa: E402

PASSWORD = "Bench-Passw0rd!"


def tree_cpu(host: Served) -> float:
    """CPU seconds of a host: its supervisor and its uvicorn workers."""
    return sum(cpu_seconds(pid) for pid in [host.pid, *worker_pids(host.pid)])


def pids_of(name: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                command = (entry / "cmdline").read_bytes().split(b"\0")[0]
            except OSError:
                continue
            # Backends rename themselves ("postgres: user db …").
            if command.endswith(b"/" + name.encode()) or command.startswith(
                name.encode() + b":"
            ):
                found.append(int(entry.name))
    return found


def others_cpu(weed: int) -> dict[str, float]:
    postgres = 0.0
    for pid in pids_of("postgres"):
        try:
            postgres += cpu_seconds(pid)
        except OSError:
            continue
    return {"seaweedfs": cpu_seconds(weed), "postgresql": postgres}


async def _split(
    hosts: list[Served], requests: list[bytes], clients: int, seconds: float
) -> list[int]:
    return list(
        await asyncio.gather(
            *(
                _drive(host.base_url, request, clients // len(hosts), seconds)
                for host, request in zip(hosts, requests, strict=True)
            )
        )
    )


def measure(
    label: str,
    hosts: list[Served],
    requests: list[bytes],
    clients: int,
    seconds: float,
    weed: int,
) -> dict[str, object]:
    asyncio.run(_split(hosts, requests, clients, min(seconds, 3)))  # warm-up
    cpu_before = [tree_cpu(host) for host in hosts]
    others_before = others_cpu(weed)
    started = time.perf_counter()
    done = asyncio.run(_split(hosts, requests, clients, seconds))
    elapsed = time.perf_counter() - started
    cpu_after = [tree_cpu(host) for host in hosts]
    others_after = others_cpu(weed)
    row: dict[str, object] = {
        "setup": label,
        "clients": clients,
        "per_second": round(sum(done) / elapsed, 1),
        "per_host_per_second": [round(n / elapsed, 1) for n in done],
        "host_cpu_ms_per_request": [
            round((after - before) * 1000 / n, 2) if n else None
            for before, after, n in zip(cpu_before, cpu_after, done, strict=True)
        ],
        "host_cpu_pct": [
            round((after - before) * 100 / elapsed, 1)
            for before, after in zip(cpu_before, cpu_after, strict=True)
        ],
    }
    for name, before in others_before.items():
        row[f"{name}_cpu_ms_per_request"] = round(
            (others_after[name] - before) * 1000 / max(1, sum(done)), 2
        )
    print(json.dumps(row), flush=True)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument(
        "--database-url", default="postgresql+psycopg://postgres@127.0.0.1:5432/test"
    )
    args = parser.parse_args()

    ca, _ca_key, cert, key = make_pki()
    p12 = pkcs12.serialize_key_and_certificates(
        b"bench", key, cert, [ca], BestAvailableEncryption(b"pw")
    )
    licence, public_key = unlimited_licence()
    pdf = make_pdf()
    database_url = fresh_postgres_database(args.database_url)
    with tempfile.TemporaryDirectory() as work, ExitStack() as stack:
        root = Path(work)
        weed = SeaweedServer(root / "seaweedfs")
        stack.callback(weed.stop)
        stack.callback(drop_postgres_database, database_url)
        shared = {
            **weed.aws_environment(),
            "SIGNVAULT_BLOB_STORE": f"s3://{weed.new_bucket()}/bench",
            "SIGNVAULT_S3_ENDPOINT_URL": weed.endpoint_url,
            "SIGNVAULT_MASTER_KEY": base64.b64encode(secrets.token_bytes(32)).decode(),
            "SIGNVAULT_ADMIN_PASSWORD": PASSWORD,
            "SIGNVAULT_LICENSE_PUBLIC_KEY": public_key,
            "SIGNVAULT_RATE_LIMIT_PER_MINUTE": "0",  # measure signing, not the throttle
            # Production password hashing and logging as a host would run.
            "SIGNVAULT_ARGON2_MEMORY_KIB": "19456",
            "SIGNVAULT_ARGON2_TIME_COST": "2",
        }
        hosts = [
            stack.enter_context(
                serve(
                    signvault_env(root / name, database_url, **shared),
                    root,
                    "--workers",
                    "1",
                )
            )
            for name in ("a", "b")
        ]
        headers, certificate_id = admin_with_signer(
            hosts[0].base_url, PASSWORD, p12, licence
        )
        token = headers["Authorization"].removeprefix("Bearer ")
        options = json.dumps({"certificate_id": certificate_id})
        requests = [sign_request(host.base_url, token, options, pdf) for host in hosts]
        with httpx.Client(timeout=10) as http:  # the token from host A works on B
            assert (
                http.get(
                    f"{hosts[1].base_url}/api/v1/auth/me", headers=headers
                ).status_code
                == 200
            )
        print(
            f"# PostgreSQL {make_url(database_url).database}, SeaweedFS {weed.endpoint_url}, "
            f"{args.clients} clients, {args.seconds:.0f} s each",
            flush=True,
        )
        weed_pid = weed.process.pid
        measure(
            "one host", hosts[:1], requests[:1], args.clients, args.seconds, weed_pid
        )
        measure("two hosts", hosts, requests, args.clients, args.seconds, weed_pid)
        measure(
            "one host", hosts[:1], requests[:1], args.clients, args.seconds, weed_pid
        )
        measure("two hosts", hosts, requests, args.clients, args.seconds, weed_pid)


if __name__ == "__main__":
    main()
