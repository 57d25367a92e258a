"""Prometheus metrics; per-app registry, or multiprocess mode under `serve --workers N`."""

import os
import time

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.multiprocess import MultiProcessCollector
from starlette.types import ASGIApp, Message, Receive, Scope, Send

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


class Metrics:
    def __init__(self) -> None:
        self.multiprocess = bool(os.environ.get(MULTIPROC_ENV))
        # In multiprocess mode values live in shared files, read by the collector at scrape time.
        self._own_registry = CollectorRegistry()
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
