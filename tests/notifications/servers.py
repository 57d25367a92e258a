"""Real receivers on loopback: an SMTP server (aiosmtpd) and a webhook HTTP server."""

import gc
import ipaddress
import json
import ssl
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from email import message_from_bytes, policy
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from app.core.types import utcnow
from tests.served import free_port


@dataclass(frozen=True)
class ServerPki:
    ca_pem: str
    cert_file: Path
    key_file: Path

    def server_context(self) -> ssl.SSLContext:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(self.cert_file, self.key_file)
        return context


def make_server_pki(directory: Path) -> ServerPki:
    """A test CA and a certificate for 127.0.0.1 / localhost issued by it."""
    now = utcnow()
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Test SMTP CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    leaf = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=30))
        .add_extension(
            x509.SubjectAlternativeName(
                [
                    x509.DNSName("localhost"),
                    x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                ]
            ),
            critical=False,
        )
        .add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    cert_file = directory / "smtp-cert.pem"
    key_file = directory / "smtp-key.pem"
    cert_file.write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return ServerPki(
        ca.public_bytes(serialization.Encoding.PEM).decode(), cert_file, key_file
    )


@dataclass
class Received:
    mail_from: str
    rcpt_tos: list[str]
    message: EmailMessage


@dataclass
class MailSink:
    """What the SMTP server accepted, with a condition to wait on."""

    port: int
    messages: list[Received] = field(default_factory=list)
    auth_attempts: int = 0
    changed: threading.Condition = field(default_factory=threading.Condition)

    async def handle_DATA(  # noqa: N802 (aiosmtpd's hook name)
        self, _server: SMTP, _session: Session, envelope: Envelope
    ) -> str:
        content = envelope.original_content or b""
        message = message_from_bytes(content, policy=policy.default)
        assert isinstance(message, EmailMessage)
        with self.changed:
            self.messages.append(
                Received(str(envelope.mail_from), list(envelope.rcpt_tos), message)
            )
            self.changed.notify_all()
        return "250 OK"

    def wait_for(self, count: int, timeout: float = 15) -> list[Received]:
        with self.changed:
            assert self.changed.wait_for(
                lambda: len(self.messages) >= count, timeout
            ), f"{len(self.messages)} of {count} messages arrived"
            return list(self.messages)


class Authenticator:
    def __init__(self, sink: MailSink, username: str, password: str) -> None:
        self.sink = sink
        self.expected = (username.encode(), password.encode())

    def __call__(
        self,
        _server: SMTP,
        _session: Session,
        _envelope: Envelope,
        _mechanism: str,
        data: Any,
    ) -> AuthResult:
        with self.sink.changed:
            self.sink.auth_attempts += 1
            self.sink.changed.notify_all()
        ok = isinstance(data, LoginPassword) and (data.login, data.password) == (
            self.expected
        )
        return AuthResult(success=ok, handled=False)


@contextmanager
def smtp_server(
    *,
    tls_context: ssl.SSLContext | None = None,
    implicit_tls_context: ssl.SSLContext | None = None,
    credentials: tuple[str, str] | None = None,
) -> Iterator[MailSink]:
    """An SMTP server on 127.0.0.1: STARTTLS or TLS from the first byte (SMTPS) when
    given a context, AUTH when given credentials."""
    sink = MailSink(port=free_port())
    kwargs: dict[str, Any] = {}
    if tls_context is not None:
        kwargs.update(tls_context=tls_context, require_starttls=True)
    if implicit_tls_context is not None:
        # aiosmtpd only knows of STARTTLS's TLS: here the whole session is TLS.
        kwargs.update(ssl_context=implicit_tls_context, auth_require_tls=False)
    if credentials is not None:
        kwargs.update(authenticator=Authenticator(sink, *credentials))
    controller = Controller(sink, hostname="127.0.0.1", port=sink.port, **kwargs)
    controller.start()
    try:
        yield sink
    finally:
        controller.stop()
        # aiosmtpd leaves the plain transport under a STARTTLS (or an aborted
        # handshake) unclosed: collect it here, quietly, not in a later test.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ResourceWarning)
            gc.collect()


@dataclass
class Hit:
    at: float
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class WebhookReceiver:
    """Answers each POST with the next planned status (200 once the plan is used up).

    A planned status of 0 means: never answer (until the test ends).
    """

    url: str
    plan: list[int]
    hits: list[Hit] = field(default_factory=list)
    changed: threading.Condition = field(default_factory=threading.Condition)
    released: threading.Event = field(default_factory=threading.Event)

    def wait_for(
        self, predicate: Callable[[list[Hit]], bool], timeout: float = 30
    ) -> list[Hit]:
        with self.changed:
            assert self.changed.wait_for(lambda: predicate(self.hits), timeout), (
                f"{len(self.hits)} hits"
            )
            return list(self.hits)


@contextmanager
def webhook_receiver(plan: list[int] | None = None) -> Iterator[WebhookReceiver]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), BaseHTTPRequestHandler)
    receiver = WebhookReceiver(
        f"http://127.0.0.1:{server.server_port}/hook", list(plan or [])
    )

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            with receiver.changed:
                receiver.hits.append(
                    Hit(
                        time.monotonic(),
                        {k.lower(): v for k, v in self.headers.items()},
                        body,
                    )
                )
                status = receiver.plan.pop(0) if receiver.plan else 200
                receiver.changed.notify_all()
            if status == 0:
                receiver.released.wait(60)
                return
            self.send_response(status)
            if 300 <= status < 400:
                self.send_header("Location", "http://169.254.169.254/latest")
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"ok" if status < 300 else b"no")

        def log_message(self, *_args: Any) -> None:
            pass

    server.RequestHandlerClass = Handler
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        receiver.released.set()
        server.shutdown()
        server.server_close()
