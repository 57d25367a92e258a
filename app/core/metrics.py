"""Prometheus metrics; per-app registry, or multiprocess mode under `serve --workers N`."""

import hashlib
import os
import stat
import time
from collections.abc import Iterator
from pathlib import Path

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.core.config import Settings
from app.core.freespace import WatchedFilesystems

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
# Memory filesystems, tried in this order, for the multiprocess files (see multiprocess_dir).
# The folder made there is checked to be this user's own (prepare_multiprocess_dir).
_MEMORY_FILESYSTEMS = ("XDG_RUNTIME_DIR", "/dev/shm")  # noqa: S108


def multiprocess_dir(settings: Settings) -> Path:
    """Where `serve --workers N` keeps the workers' shared metric files.

    prometheus_client grows a file with ftruncate and writes to it through
    mmap: on a full filesystem the write is a SIGBUS, and the worker dies. On a
    memory filesystem (not the data dir's) a full data disk cannot reach them.
    One folder per data dir: two installations on a host keep their own.
    """
    if settings.metrics_dir is not None:
        return settings.metrics_dir
    data_dir = settings.data_dir.resolve()
    tag = hashlib.sha256(str(data_dir).encode()).hexdigest()[:16]
    for candidate in _MEMORY_FILESYSTEMS:
        base = Path(os.environ.get(candidate, "") if candidate.isupper() else candidate)
        if base.is_absolute() and base.is_dir() and os.access(base, os.W_OK | os.X_OK):
            return base / f"signvault-metrics-{os.geteuid()}-{tag}"
    return data_dir / "metrics"


def prepare_multiprocess_dir(folder: Path) -> None:
    """Make `folder` (0700) and clear the metric files a previous run left in it.

    Raises:
        ValueError: it is not a folder of this user (in a shared /dev/shm, someone
            else's folder or link could read or feed the files).
        OSError: it cannot be made.
    """
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    status = folder.lstat()
    if not stat.S_ISDIR(status.st_mode) or status.st_uid != os.geteuid():
        raise ValueError(f"{folder} is not a folder owned by this user")
    folder.chmod(0o700)
    clear_multiprocess_dir(folder)


def clear_multiprocess_dir(folder: Path) -> None:
    """Remove prometheus_client's files (`<kind>_<pid>.db`), nothing else."""
    for path in folder.glob("*.db"):
        path.unlink(missing_ok=True)


class FreeSpaceCollector(Collector):
    """`signvault_storage_free_bytes{store=...}`, read from the filesystems at scrape time."""

    def __init__(self, filesystems: WatchedFilesystems) -> None:
        self.filesystems = filesystems

    def collect(self) -> Iterator[Metric]:
        gauge = GaugeMetricFamily(
            "signvault_storage_free_bytes",
            "Free bytes on the filesystem of each store (blobs; database when SQLite).",
            labels=["store"],
        )
        for store, free in self.filesystems.free_bytes().items():
            gauge.add_metric([store], free)
        yield gauge


class Metrics:
    def __init__(self, filesystems: WatchedFilesystems | None = None) -> None:
        self.multiprocess = bool(os.environ.get(MULTIPROC_ENV))
        # In multiprocess mode values live in shared files, read by the collector at scrape time.
        self._own_registry = CollectorRegistry()
        self._free_space = FreeSpaceCollector(filesystems) if filesystems else None
        if self._free_space and not self.multiprocess:
            self._own_registry.register(self._free_space)
        target: CollectorRegistry | None = (
            None if self.multiprocess else self._own_registry
        )
        self.requests = Counter(
            "signvault_http_requests_total",
            "HTTP requests handled.",
            ["method", "route", "status"],
            registry=target,
        )
        self.latency = Histogram(
            "signvault_http_request_duration_seconds",
            "Time to answer HTTP requests.",
            ["method", "route"],
            registry=target,
        )
        self.problems = Counter(
            "signvault_problems_total",
            "Error responses by stable problem code (invalid_credentials, invalid_token, forbidden, ...).",
            ["code"],
            registry=target,
        )

        self.swept = Counter(
            "signvault_blob_sweep_removed_total",
            "Files the blob sweeper removed: spool_file (a write cut short), orphan_blob (no document version refers to it).",
            ["kind"],
            registry=target,
        )

    def exposition(self) -> bytes:
        if self.multiprocess:
            registry = CollectorRegistry()
            MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
            if self._free_space:
                registry.register(self._free_space)
            return generate_latest(registry)
        return generate_latest(self._own_registry)


class MetricsMiddleware:
    """Counts requests by route template (not raw path, to keep label cardinality bounded)."""

    def __init__(self, app: ASGIApp, *, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status_code = 500

        async def record_status(message: Message) -> None:
            nonlocal status_code
            if message["type"] == "http.response.start":
                status_code = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, record_status)
        finally:
            route = _route_template(scope)
            self.metrics.requests.labels(scope["method"], route, str(status_code)).inc()
            self.metrics.latency.labels(scope["method"], route).observe(
                time.perf_counter() - started
            )


def _route_template(scope: Scope) -> str:
    route = scope.get("route")
    path = getattr(route, "path", None)
    return str(path) if path else "unmatched"
