"""`serve --workers 2` on a full disk: do the workers survive? (issue #17, fault 1)

Root only: mounts a tmpfs as the data dir, starts the server, fills the tmpfs,
then sends requests that each add label sets to the workers' Prometheus files
(every GET route answering 401, and uploads answering 507). Run once with the
metric files on the data dir (the layout before SIGNVAULT_METRICS_DIR), once with
the default (a memory filesystem), and report worker deaths and the answers.

    .venv/bin/python bench/full_disk.py [--rounds 3] [--size 16m]
"""

import argparse
import subprocess
import tempfile
import time
from collections import Counter
from pathlib import Path

import httpx

from tests.conftest import ADMIN_PASSWORD
from tests.pdfs import make_pdf
from tests.served import serve, signvault_env
from tests.system.test_full_disk import admin_token_and_routes, fill, worker_pids


def run(workdir: Path, size: str, rounds: int, metrics_on_data_dir: bool) -> None:
    disk = workdir / "disk"
    disk.mkdir()
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(disk)], check=True
    )
    try:
        data_dir = disk / "data"
        extra = {
            "SIGNVAULT_ADMIN_PASSWORD": ADMIN_PASSWORD,
            "SIGNVAULT_MIN_FREE_BYTES": "0",
        }
        if metrics_on_data_dir:
            extra["SIGNVAULT_METRICS_DIR"] = str(data_dir / "metrics")
        env = signvault_env(data_dir, f"sqlite:///{data_dir / 'signvault.db'}", **extra)
        with (
            serve(env, workdir, "--workers", "2") as served,
            httpx.Client(base_url=served.base_url, timeout=30) as http,
        ):
            token, routes = admin_token_and_routes(http)
            workers = worker_pids(served.pid)
            fill(disk)
            answers: Counter[str] = Counter()
            started = time.perf_counter()
            for _ in range(rounds):
                for path in routes:
                    try:
                        answers[str(http.get(path).status_code)] += 1
                    except httpx.TransportError as exc:
                        answers[type(exc).__name__] += 1
                for _ in range(10):
                    try:
                        answers[
                            str(
                                http.post(
                                    "/api/v1/documents",
                                    content=make_pdf(pages=1),
                                    headers={
                                        "content-type": "application/pdf",
                                        "authorization": f"Bearer {token}",
                                    },
                                ).status_code
                            )
                        ] += 1
                    except httpx.TransportError as exc:
                        answers[type(exc).__name__] += 1
            elapsed = time.perf_counter() - started
            time.sleep(1)
            survivors = worker_pids(served.pid) & workers
            deaths = served.log.count("died")
            layout = "data dir (old)" if metrics_on_data_dir else "memory fs (default)"
            print(
                f"| {layout} | {sum(answers.values())} | {dict(sorted(answers.items()))} "
                f"| {len(survivors)} of {len(workers)} | {deaths} | {elapsed:.1f} s |"
            )
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--size", default="16m")
    args = parser.parse_args()
    print(
        "| metric files on | requests | answers | first workers alive | 'died' in log | time |"
    )
    print("|---|---|---|---|---|---|")
    for metrics_on_data_dir in (True, False):
        with tempfile.TemporaryDirectory() as workdir:
            run(Path(workdir), args.size, args.rounds, metrics_on_data_dir)


if __name__ == "__main__":
    main()
