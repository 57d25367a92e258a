"""A uvicorn worker killed with SIGKILL is replaced and serving again within seconds."""

import os
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import httpx
import pytest

from tests.conftest import POSTGRES_URL
from tests.served import serve, signvault_env, worker_pids

pytestmark = pytest.mark.skipif(
    bool(POSTGRES_URL),
    reason="process supervision does not depend on the database: run once, on SQLite",
)

REPLACED_WITHIN_SECONDS = 5.0
T = TypeVar("T")


def test_a_killed_worker_is_replaced_and_serving_within_5_seconds(
    tmp_path: Path, database_url: str
) -> None:
    env = signvault_env(tmp_path / "data", database_url)
    with serve(env, tmp_path, "--workers", "2") as served:
        old = _wait_for(lambda: w if len(w := worker_pids(served.pid)) == 2 else None)
        victim, survivor = sorted(old)
        stop_burst = threading.Event()
        burst = threading.Thread(
            target=_get_ready_until, args=(served.base_url, stop_burst)
        )
        burst.start()
        try:
            # Stopped first, the victim leaves the supervisor's health check
            # outstanding when it dies: the case that waited out the 60 s timeout.
            os.kill(victim, signal.SIGSTOP)
            time.sleep(1.0)
            os.kill(victim, signal.SIGKILL)
            killed_at = time.monotonic()
            replacement = _wait_for(
                lambda: next(iter(worker_pids(served.pid) - old), None),
                timeout=REPLACED_WITHIN_SECONDS,
            )
        finally:
            stop_burst.set()
            burst.join()
        # Only the replacement may take connections now: /ready answering proves it serves.
        os.kill(survivor, signal.SIGSTOP)
        try:
            answered = _wait_for(
                lambda: _ready(served.base_url),
                timeout=REPLACED_WITHIN_SECONDS - (time.monotonic() - killed_at),
            )
            serving_after = time.monotonic() - killed_at
        finally:
            os.kill(survivor, signal.SIGCONT)
        print(f"\nreplacement serving {serving_after:.2f} s after the kill")  # noqa: T201
        assert answered
        assert replacement not in old
        assert serving_after < REPLACED_WITHIN_SECONDS
        assert f"Child process [{victim}] died" in served.log


def _ready(base_url: str) -> bool | None:
    try:
        status = httpx.get(f"{base_url}/ready", timeout=0.5).status_code
    except httpx.TransportError:
        return None
    return True if status == 200 else None


def _get_ready_until(base_url: str, stop: threading.Event) -> None:
    """Requests in flight while the worker dies (what they answer is not the point here)."""
    while not stop.is_set():
        _ready(base_url)


def _wait_for(probe: Callable[[], T | None], timeout: float = 30.0) -> T:
    deadline = time.monotonic() + timeout
    while True:
        if (value := probe()) is not None:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout:.1f} s")
        time.sleep(0.05)
