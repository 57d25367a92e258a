"""Request rate limits in fixed one-minute windows, counted in the database.

Every worker process and host increments the same row with one atomic upsert
(`INSERT … ON CONFLICT DO UPDATE … RETURNING`), so N workers allow exactly the
configured number of requests per window, not N times it.
"""

from collections.abc import Callable, Collection
from datetime import datetime
from typing import Any

import anyio
from sqlalchemy import delete, event
from sqlalchemy.exc import OperationalError
from sqlalchemy.orm import Session, sessionmaker
from starlette.types import ASGIApp, Receive, Scope, Send

from app.access.models import RateLimitWindow
from app.core.config import Settings
from app.core.db import upsert_into
from app.core.errors import (
    TooManyRequests,
    app_error_response,
    database_unavailable_response,
)
from app.core.types import utcnow
from app.settings import service as settings_service
from app.settings.schemas import SecuritySettings

WINDOW_SECONDS = 60
_CONNECTED = "throttle_connected"


@event.listens_for(Session, "after_begin")
def _mark_connected(session: Session, _transaction: Any, _connection: Any) -> None:
    session.info[_CONNECTED] = True


def count_hit(
    session: Session, *, bucket: str, limit: int, now: datetime | None = None
) -> TooManyRequests | None:
    """Count one request against `bucket` in the current window.

    Returns the error to raise (with Retry-After) when the window already held
    `limit` requests; the caller raises it once the count is committed.
    """
    if limit <= 0:
        return None
    moment = int((now or utcnow()).timestamp())
    start = moment - moment % WINDOW_SECONDS
    statement = (
        upsert_into(session, RateLimitWindow)
        .values(bucket=bucket, window_start=start, count=1)
        .on_conflict_do_update(
            index_elements=["bucket", "window_start"],
            set_={"count": RateLimitWindow.count + 1},
        )
        .returning(RateLimitWindow.count)
    )
    count = session.execute(statement).scalar_one()
    if count == 1:
        # The first hit of a window sweeps windows that have ended, of every bucket.
        session.execute(
            delete(RateLimitWindow).where(RateLimitWindow.window_start < start)
        )
    if count > limit:
        retry_after = max(1, start + WINDOW_SECONDS - moment)
        return TooManyRequests(
            f"More than {limit} requests per minute; retry in {retry_after} s.",
            headers={"Retry-After": str(retry_after)},
        )
    return None


def limit_requests(
    session: Session,
    factory: sessionmaker[Session],
    settings: Settings,
    *,
    bucket: str,
    limit_of: Callable[[SecuritySettings, Settings], int],
) -> SecuritySettings:
    """Count a request in its own short transaction, so a refused or failed request still counts.

    The limit comes from the `security` settings section (or the server setting);
    with no limit nothing is counted. When the request's session was already in
    a transaction (on SQLite it may hold the database's write lock) a second
    transaction could wait for it, so the hit is counted in the request's own
    transaction instead. Returns the section, for the caller's other checks.

    Raises:
        TooManyRequests: over the limit.
    """
    connected = bool(session.info.get(_CONNECTED))
    section = settings_service.security(session)  # a read: no lock, not a hit
    limit = limit_of(section, settings)
    if limit <= 0:
        return section
    if connected:
        refused = count_hit(session, bucket=bucket, limit=limit)
    else:
        with factory.begin() as own:
            refused = count_hit(own, bucket=bucket, limit=limit)
    if refused is not None:
        raise refused
    return section


def principal_limit(section: SecuritySettings, settings: Settings) -> int:
    if section.rate_limit_per_minute is not None:
        return section.rate_limit_per_minute
    return settings.rate_limit_per_minute


def login_limit(section: SecuritySettings, settings: Settings) -> int:
    if section.login_attempts_per_minute_per_ip is not None:
        return section.login_attempts_per_minute_per_ip
    return settings.login_rate_limit_per_minute


class UnauthenticatedThrottleMiddleware:
    """Counts each request to a route that needs no token against its client address,
    before a byte of its body is read, and refuses it (429) over the limit.

    Anyone can call these routes, so the limit must bound the work an anonymous
    caller causes, parsing included: a check in the route would run only after
    FastAPI had read and validated the body. The window lives in the database
    like every other (the processes share it); the count runs in the
    threadpool, off the event loop.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        sessionmaker: sessionmaker[Session],
        settings: Settings,
        paths: Collection[str],
    ) -> None:
        self.app = app
        self.factory = sessionmaker
        self.settings = settings
        self.paths = frozenset(paths)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] not in self.paths:
            await self.app(scope, receive, send)
            return
        client = scope.get("client")
        bucket = f"login-ip:{client[0] if client else 'unknown'}"
        try:
            await anyio.to_thread.run_sync(self._count, bucket)
        except TooManyRequests as refused:
            # The body is never read: the connection is closed after the answer.
            refused.headers["Connection"] = "close"
            metrics = getattr(scope.get("app"), "state", None)
            response = app_error_response(
                refused, metrics=getattr(metrics, "metrics", None)
            )
            await response(scope, receive, send)
            return
        except OperationalError as exc:
            await database_unavailable_response(exc)(scope, receive, send)
            return
        await self.app(scope, receive, send)

    def _count(self, bucket: str) -> None:
        with self.factory() as session:
            limit_requests(
                session,
                self.factory,
                self.settings,
                bucket=bucket,
                limit_of=login_limit,
            )
