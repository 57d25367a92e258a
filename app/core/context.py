"""Per-request facts (request id, client IP, user agent) visible to services without FastAPI."""

from contextvars import ContextVar
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class RequestContext:
    request_id: str
    # The client: the peer, or whom a trusted proxy forwarded for.
    ip: str | None = None
    # The address the connection came from.
    peer_ip: str | None = None
    user_agent: str | None = None


_current: ContextVar[RequestContext | None] = ContextVar(
    "signvault_request", default=None
)


def current_request() -> RequestContext | None:
    return _current.get()


def set_current_request(context: RequestContext | None) -> object:
    return _current.set(context)


def reset_current_request(token: object) -> None:
    _current.reset(token)  # type: ignore[arg-type]
