"""The senders: one email through the configured SMTP server, one signed webhook POST.

Each raises `SendFailed` with a one-line reason (the server's own words where
it gave some); the queue turns that into a retry or a final failure.
"""

import hashlib
import hmac
import smtplib
import ssl
import time
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from typing import Any

import httpx

import app
from app.core.types import utcnow
from app.notifications.destinations import (
    AllowList,
    Destination,
    DestinationRefused,
    IPAddress,
    resolve_host,
)
from app.notifications.schemas import SmtpSecurity, SmtpSettings

# The longest part of a receiver's error answer kept as `last_error`.
ERROR_EXCERPT = 300


class SendFailed(Exception):
    """The message did not go out; the message is why."""


def tls_context(config: SmtpSettings) -> ssl.SSLContext:
    context = ssl.create_default_context()
    if config.tls_ca_pem:
        context.load_verify_locations(cadata=config.tls_ca_pem)
    if not config.tls_verify:
        # Only when the administrator turned verification off explicitly (a test server).
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


class _PinnedSMTP(smtplib.SMTP):
    """Connects to the address that was checked, not to a new DNS answer.

    The host name given to the constructor stays the one STARTTLS and implicit
    TLS use for SNI and the certificate check.
    """

    def __init__(self, address: IPAddress, host: str, port: int, **kwargs: Any) -> None:
        self._address = str(address)  # before connecting, which __init__ does
        super().__init__(host, port, **kwargs)

    def connect(
        self,
        host: str = "localhost",
        port: int = 0,
        source_address: Any = None,
    ) -> tuple[int, bytes]:
        return super().connect(self._address, port, source_address)


class _PinnedSMTPSSL(_PinnedSMTP, smtplib.SMTP_SSL):
    """Implicit TLS (port 465) to the checked address."""


def _smtp_error(exc: Exception, server: str) -> str:
    if isinstance(exc, smtplib.SMTPConnectError):
        # No 220 greeting: whatever answered is not an SMTP server (an SSH or
        # HTTP service on an internal address); its words are not repeated.
        return f"{server} did not answer as an SMTP server (no 220 greeting)"
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        refused = "; ".join(
            f"{address}: {code} {_text(reply)}"
            for address, (code, reply) in exc.recipients.items()
        )
        return f"recipient refused: {refused}"
    if isinstance(exc, smtplib.SMTPResponseException):
        return f"SMTP {exc.smtp_code}: {_text(exc.smtp_error)}"
    if isinstance(exc, TimeoutError):
        return "SMTP server did not answer in time"
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def _text(reply: bytes | str) -> str:
    text = reply.decode(errors="replace") if isinstance(reply, bytes) else reply
    return " ".join(text.split())


def send_email(
    config: SmtpSettings,
    password: str | None,
    *,
    to: list[str],
    subject: str,
    body: str,
    allowed: AllowList,
) -> None:
    """Send one plain-text email to `to` through the configured server.

    The server's host is checked like a webhook's (`allowed` lists the private
    ones permitted) and the connection goes to the address checked. Its replies
    are quoted in the error only once it greeted as an SMTP server.

    Raises: SendFailed.
    """
    if not config.host or not config.from_address:
        raise SendFailed("SMTP is not configured (PUT /api/v1/notifications/smtp)")
    try:
        address = resolve_host(
            config.host, config.port, allowed, setting="SIGNVAULT_SMTP_ALLOWED_HOSTS"
        )
    except DestinationRefused as exc:
        raise SendFailed(str(exc)) from None
    message = EmailMessage()
    message["From"] = config.from_address
    message["To"] = ", ".join(to)
    message["Subject"] = subject
    message["Date"] = format_datetime(utcnow())
    message["Message-ID"] = make_msgid(domain=config.from_address.rsplit("@", 1)[-1])
    message["Auto-Submitted"] = "auto-generated"
    message.set_content(body)
    try:
        if config.security == SmtpSecurity.TLS:
            client: smtplib.SMTP = _PinnedSMTPSSL(
                address,
                config.host,
                config.port,
                timeout=config.timeout_seconds,
                context=tls_context(config),
            )
        else:
            client = _PinnedSMTP(
                address, config.host, config.port, timeout=config.timeout_seconds
            )
        with client:
            if config.security == SmtpSecurity.STARTTLS:
                client.starttls(context=tls_context(config))
            if config.username:
                client.login(config.username, password or "")
            client.send_message(message, to_addrs=to)
    except (smtplib.SMTPException, OSError, ValueError) as exc:
        raise SendFailed(_smtp_error(exc, f"{config.host}:{config.port}")) from None


def signature(secret: str, timestamp: int, body: bytes) -> str:
    """The `X-SignVault-Signature` value: HMAC-SHA256 over `<timestamp>.<body>`."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"sha256={mac.hexdigest()}"


def send_webhook(
    destination: Destination,
    *,
    secret: str,
    event: str,
    delivery_id: str,
    body: bytes,
    timeout: float,
) -> None:
    """POST `body` to the checked destination, signed; any 2xx answer is success.

    The connection goes to the address that was checked (not a new DNS
    answer), with the URL's host name for `Host`, SNI and certificate checks.
    Redirects are not followed: they could lead anywhere.

    Raises: SendFailed.
    """
    timestamp = int(time.time())
    host = destination.host
    url = httpx.URL(destination.url)
    pinned = url.copy_with(host=str(destination.address))
    default_port = 443 if destination.scheme == "https" else 80
    headers = {
        "Host": host
        if destination.port == default_port
        else f"{host}:{destination.port}",
        "Content-Type": "application/json",
        "User-Agent": f"SignVault/{app.__version__}",
        "X-SignVault-Event": event,
        "X-SignVault-Delivery": delivery_id,
        "X-SignVault-Timestamp": str(timestamp),
        "X-SignVault-Signature": signature(secret, timestamp, body),
    }
    try:
        with httpx.Client(timeout=timeout, follow_redirects=False) as client:
            response = client.post(
                pinned,
                content=body,
                headers=headers,
                extensions={"sni_hostname": host},
            )
    except httpx.TimeoutException:
        raise SendFailed(f"no answer within {timeout:g} s") from None
    except httpx.HTTPError as exc:
        raise SendFailed(f"{type(exc).__name__}: {exc}") from None
    if response.is_success:
        return
    if response.is_redirect:
        raise SendFailed(
            f"HTTP {response.status_code} redirect to {response.headers.get('location', '?')} (not followed)"
        )
    excerpt = " ".join(response.text[:ERROR_EXCERPT].split())
    raise SendFailed(f"HTTP {response.status_code}: {excerpt}".rstrip(": "))
