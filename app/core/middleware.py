"""Pure ASGI middleware: forwarded headers, request id and context, body size limit, last-resort 500."""

import ipaddress
import logging
import re
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from fastapi import HTTPException
from starlette.datastructures import Headers
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.core.context import RequestContext, reset_current_request, set_current_request
from app.core.errors import (
    problem_response,
    unexpected_error_response,
)
from app.core.routing import is_json_media_type

logger = logging.getLogger("signvault.http")

_SAFE_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:\-]{1,128}$")
# Where ForwardedMiddleware keeps the connection's peer once `client` is the forwarded one.
PEER_KEY = "signvault.peer"

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class ForwardedMiddleware:
    """Believes X-Forwarded-For and X-Forwarded-Proto only from a trusted proxy.

    From a peer in `trusted`, `scope["client"]` becomes the right-most address
    of X-Forwarded-For that is not itself a trusted proxy: each proxy appends
    the address it saw, so everything left of the last untrusted hop may have
    been written by the client. `scope["scheme"]` becomes the right-most
    X-Forwarded-Proto. From any other peer both headers are ignored. The peer
    is kept in the scope under `PEER_KEY` for the audit log. RFC 7239
    `Forwarded` is not read: a proxy that writes only X-Forwarded-For passes a
    client's `Forwarded` header through untouched.
    """

    def __init__(self, app: ASGIApp, *, trusted: Sequence[IPNetwork]) -> None:
        self.app = app
        self.trusted = tuple(trusted)

    def _trusts(self, address: IPAddress) -> bool:
        return any(address in network for network in self.trusted)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        client = scope.get("client")
        if scope["type"] in ("http", "websocket") and client:
            scope[PEER_KEY] = client[0]
            peer = _parse_address(client[0])
            if peer is not None and self._trusts(peer):
                headers = Headers(scope=scope)
                forwarded = self._client(peer, headers.getlist("x-forwarded-for"))
                scope["client"] = (forwarded, 0)
                proto = headers.getlist("x-forwarded-proto")
                scheme = ",".join(proto).split(",")[-1].strip().lower()
                if scheme in ("http", "https"):
                    if scope["type"] == "websocket":
                        scheme = "wss" if scheme == "https" else "ws"
                    scope["scheme"] = scheme
        await self.app(scope, receive, send)

    def _client(self, peer: IPAddress, values: list[str]) -> str:
        hops = [hop.strip() for value in values for hop in value.split(",")]
        current = peer
        for hop in reversed(hops):
            address = _parse_address(hop)
            if address is None:
                # A trusted proxy wrote something that is not an address: stop at that proxy.
                break
            current = address
            if not self._trusts(address):
                break
        return str(current)


def _parse_address(text: str) -> IPAddress | None:
    """An IP address, also as `1.2.3.4:port` or `[v6]:port` (some proxies add the port)."""
    candidate = text.strip()
    if candidate.startswith("["):
        candidate = candidate[1 : candidate.find("]")] if "]" in candidate else ""
    elif candidate.count(":") == 1:
        candidate = candidate.split(":")[0]
    try:
        address = ipaddress.ip_address(candidate)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        return address.ipv4_mapped
    return address


class RequestContextMiddleware:
    """Echoes a sane `X-Request-ID` (or makes one) and turns uncaught errors into a 500 problem."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        offered = headers.get("x-request-id", "")
        request_id = offered if _SAFE_REQUEST_ID.match(offered) else uuid.uuid4().hex
        client = scope.get("client")
        ip = client[0] if client else None
        context = RequestContext(
            request_id=request_id,
            ip=ip,
            peer_ip=scope.get(PEER_KEY, ip),
            user_agent=(headers.get("user-agent") or "")[:512] or None,
        )
        token = set_current_request(context)
        started = False

        async def send_with_id(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                message.setdefault("headers", [])
                message["headers"] = [
                    *message["headers"],
                    (b"x-request-id", request_id.encode()),
                ]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        except Exception as exc:
            if started:
                logger.exception("unhandled error (trace_id=%s)", request_id)
                raise
            # A full disk met outside the routes' handlers is a 507 too.
            await unexpected_error_response(exc)(scope, receive, send_with_id)
        finally:
            reset_current_request(token)


@dataclass(frozen=True, slots=True)
class BodyLimit:
    """A body size limit and the setting (or reason) an operator reads in the 413."""

    max_bytes: int
    setting: str


_STRUCTURED_TYPES = ("application/x-www-form-urlencoded",)


def _is_structured(content_type: str | None) -> bool:
    """A body parsed whole in memory: JSON, a urlencoded form, or untyped (parsed as JSON)."""
    if not content_type:
        return True
    return (
        is_json_media_type(content_type)
        or content_type.split(";")[0].strip().lower() in _STRUCTURED_TYPES
    )


class BodySizeLimitMiddleware:
    """Refuses bodies over the limit with 413, by Content-Length or while streaming.

    Files (multipart, a raw PDF) are held to `upload`, or a path's own limit in
    `upload_paths`. Bodies parsed whole in memory (JSON, urlencoded forms,
    untyped) are held to the far smaller `structured` limit, before a byte is
    parsed; `structured_paths` (regexes) allow more to routes whose JSON carries
    a file in base64.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        upload: BodyLimit,
        structured: BodyLimit,
        upload_paths: Mapping[str, BodyLimit] | None = None,
        structured_paths: Mapping[str, BodyLimit] | None = None,
    ) -> None:
        self.app = app
        self.upload = upload
        self.structured = structured
        self.upload_paths = dict(upload_paths or {})
        self.structured_paths = [
            (re.compile(pattern), limit)
            for pattern, limit in (structured_paths or {}).items()
        ]

    def limit_for(self, path: str, content_type: str | None) -> BodyLimit:
        if _is_structured(content_type):
            for pattern, limit in self.structured_paths:
                if pattern.fullmatch(path):
                    return limit
            return self.structured
        return self.upload_paths.get(path, self.upload)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        limit = self.limit_for(scope["path"], headers.get("content-type"))
        max_bytes = limit.max_bytes
        declared = headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > max_bytes:
            await self._refuse(scope, receive, send, _BodyTooLarge(limit))
            return
        received = 0
        response_started = False

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > max_bytes:
                    raise _BodyTooLarge(limit)
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal response_started
            if message["type"] == "http.response.start":
                response_started = True
            await send(message)

        try:
            await self.app(scope, limited_receive, tracking_send)
        except _BodyTooLarge as error:
            if response_started:
                raise
            await self._refuse(scope, receive, send, error)

    async def _refuse(
        self, scope: Scope, receive: Receive, send: Send, error: "_BodyTooLarge"
    ) -> None:
        response = problem_response(
            413,
            "payload_too_large",
            "Request body too large",
            error.detail,
            headers=error.headers,
            extra={"max_bytes": error.limit.max_bytes},
        )
        await response(scope, receive, send)


class _BodyTooLarge(HTTPException):
    # An HTTPException, so FastAPI's body reader re-raises it instead of answering 400.
    def __init__(self, limit: BodyLimit) -> None:
        self.limit = limit
        super().__init__(
            413,
            f"The request body exceeds the limit of {limit.max_bytes} bytes ({limit.setting}).",
            headers={"Connection": "close"},
        )
