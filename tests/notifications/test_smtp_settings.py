"""SMTP settings: the password is sealed, write-only and never audited; the test email is real."""

import socket
import socketserver
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from app.notifications.models import DeliveryStatus
from app.notifications.outbox import Event, emit
from app.settings.models import SettingsSection
from tests.factories import assert_problem, audit_events
from tests.notifications.conftest import (
    FROM,
    SMTP,
    create_rule,
    put_smtp,
    wait_final,
)
from tests.notifications.servers import MailSink, ServerPki, smtp_server
from tests.served import free_port

PASSWORD = "smtp-Passw0rd-xyz"


def test_password_is_write_only_kept_cleared_and_never_audited(
    client: TestClient,
    admin_headers: dict[str, str],
    session_factory: sessionmaker[Session],
) -> None:
    assert client.get(SMTP, headers=admin_headers).json()["password_set"] is False
    stored = put_smtp(client, admin_headers, 2525, username="mailer", password=PASSWORD)
    assert stored["password_set"] is True
    assert "password" not in stored
    assert (
        put_smtp(client, admin_headers, 2526, username="mailer")["password_set"] is True
    )
    current = client.get(SMTP, headers=admin_headers)
    assert current.json()["port"] == 2526
    assert PASSWORD not in current.text
    with session_factory() as session:
        section = session.get_one(SettingsSection, "smtp")
        assert PASSWORD not in str(section.value)
    assert put_smtp(client, admin_headers, 2526, password=None)["password_set"] is False
    entries = audit_events(session_factory, "notifications.smtp_updated")
    assert [e.details["password_changed"] for e in entries] == [True, False, True]
    assert entries[1].details["after"] == {"port": 2526}
    assert all(PASSWORD not in str(e.details) for e in entries)


def test_test_email_is_sent_now(
    client: TestClient,
    admin_headers: dict[str, str],
    session_factory: sessionmaker[Session],
    mail: MailSink,
) -> None:
    put_smtp(client, admin_headers, mail.port)
    response = client.post(
        f"{SMTP}/test", json={"to": "me@example.com"}, headers=admin_headers
    )
    assert response.status_code == 200, response.text
    assert response.json()["delivered"] is True
    [received] = mail.wait_for(1)
    assert (received.mail_from, received.rcpt_tos) == (FROM, ["me@example.com"])
    assert received.message["Subject"] == "[SignVault] Test email"
    [entry] = audit_events(session_factory, "notifications.smtp_tested")
    assert entry.outcome == "success"


def test_test_email_failure_is_a_502_with_the_servers_answer(
    client: TestClient,
    admin_headers: dict[str, str],
    session_factory: sessionmaker[Session],
    smtp_pki: ServerPki,
) -> None:
    assert_problem(
        client.post(
            f"{SMTP}/test", json={"to": "me@example.com"}, headers=admin_headers
        ),
        409,
        "smtp_not_configured",
    )
    with smtp_server(
        tls_context=smtp_pki.server_context(), credentials=("mailer", "right")
    ) as sink:
        put_smtp(
            client,
            admin_headers,
            sink.port,
            security="starttls",
            username="mailer",
            password="wrong",
            tls_ca_pem=smtp_pki.ca_pem,
        )
        body = assert_problem(
            client.post(
                f"{SMTP}/test", json={"to": "me@example.com"}, headers=admin_headers
            ),
            502,
            "smtp_test_failed",
        )
    assert "535" in body["detail"]
    put_smtp(client, admin_headers, free_port())
    body = assert_problem(
        client.post(
            f"{SMTP}/test", json={"to": "me@example.com"}, headers=admin_headers
        ),
        502,
        "smtp_test_failed",
    )
    assert "ConnectionRefusedError" in body["detail"]
    entries = audit_events(session_factory, "notifications.smtp_tested")
    assert [e.outcome for e in entries] == ["failure", "failure"]


def test_smtp_settings_are_validated(
    client: TestClient, admin_headers: dict[str, str]
) -> None:
    for body in (
        {"host": "h", "from_address": "not-an-address"},
        {"host": "h", "from_address": FROM, "security": "ssl3"},
        {"host": "h", "from_address": FROM, "tls_ca_pem": "garbage"},
        {"host": "h", "from_address": FROM, "port": 0},
    ):
        assert_problem(
            client.put(SMTP, json=body, headers=admin_headers), 422, "validation_failed"
        )


@pytest.mark.parametrize("settings", [{"smtp_allowed_hosts": []}], indirect=True)
@pytest.mark.parametrize(
    "host", ["127.0.0.1", "localhost", "10.1.2.3", "169.254.169.254", "::1"]
)
def test_smtp_host_on_a_non_public_address_is_refused(
    client: TestClient, admin_headers: dict[str, str], host: str
) -> None:
    body = {"host": host, "port": 25, "security": "none", "from_address": FROM}
    problem = assert_problem(
        client.put(SMTP, json=body, headers=admin_headers), 422, "smtp_host_refused"
    )
    assert "SIGNVAULT_SMTP_ALLOWED_HOSTS" in problem["detail"]
    assert problem["invalid_params"][0]["name"] == "host"
    assert client.get(SMTP, headers=admin_headers).json()["host"] is None


def test_smtp_host_is_checked_again_when_connecting(
    client: TestClient,
    admin_headers: dict[str, str],
    session_factory: sessionmaker[Session],
    mail: MailSink,
) -> None:
    put_smtp(client, admin_headers, mail.port)
    # The allow-list shrinks (as DNS may change): the test email is refused unsent.
    client.app.state.settings.smtp_allowed_hosts.clear()  # type: ignore[attr-defined]
    body = assert_problem(
        client.post(
            f"{SMTP}/test", json={"to": "me@example.com"}, headers=admin_headers
        ),
        502,
        "smtp_test_failed",
    )
    assert "SIGNVAULT_SMTP_ALLOWED_HOSTS" in body["detail"]
    assert mail.messages == []
    # And so is a notification email, by the background worker.
    create_rule(
        client,
        admin_headers,
        event="certificate.expiring",
        channel="email",
        recipients=["ops@example.com"],
    )
    with session_factory.begin() as session:
        emit(session, Event.CERTIFICATE_EXPIRING, {"certificate_name": "Seal"})
    [delivery] = wait_final(session_factory)
    assert delivery.status == DeliveryStatus.FAILED
    assert "SIGNVAULT_SMTP_ALLOWED_HOSTS" in (delivery.last_error or "")
    assert mail.messages == []


def test_connection_goes_to_the_address_that_was_checked(
    client: TestClient,
    admin_headers: dict[str, str],
    mail: MailSink,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """DNS rebinding: the name's second answer (where nothing listens) is never used."""
    resolve = socket.getaddrinfo
    answers: list[str] = []

    def rebinding(host: Any, *args: Any, **kwargs: Any) -> Any:
        if host == "mail.rebind.test":
            answers.append("127.0.0.1" if not answers else "127.0.0.3")
            host = answers[-1]
        return resolve(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", rebinding)
    monkeypatch.setattr(
        client.app.state.settings,  # type: ignore[attr-defined]
        "smtp_allowed_hosts",
        ["127.0.0.0/8"],
    )
    put_smtp(client, admin_headers, mail.port, host="mail.rebind.test")
    answers.clear()
    response = client.post(
        f"{SMTP}/test", json={"to": "me@example.com"}, headers=admin_headers
    )
    assert response.status_code == 200, response.text
    assert answers == ["127.0.0.1"]
    assert len(mail.wait_for(1)) == 1


@contextmanager
def banner_service(banner: bytes) -> Iterator[int]:
    """A loopback TCP service that greets with `banner`, as SSH or some HTTP servers do."""

    class Greeter(socketserver.BaseRequestHandler):
        def handle(self) -> None:
            self.request.sendall(banner)
            self.request.settimeout(2)
            with suppress(OSError):
                self.request.recv(1024)

    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Greeter)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


@pytest.mark.parametrize(
    "banner",
    [
        b"SSH-2.0-OpenSSH_9.6p1 internal-build-server\r\n",
        b"HTTP/1.1 400 Bad Request\r\nServer: internal-build-server\r\n\r\n",
        b"* OK [CAPABILITY IMAP4rev1] internal-build-server ready\r\n",
        b"554 internal-build-server no service\r\n",
    ],
)
def test_test_email_to_a_non_smtp_service_does_not_repeat_its_answer(
    client: TestClient,
    admin_headers: dict[str, str],
    session_factory: sessionmaker[Session],
    banner: bytes,
) -> None:
    with banner_service(banner) as port:
        put_smtp(client, admin_headers, port, timeout_seconds=2)
        body = assert_problem(
            client.post(
                f"{SMTP}/test", json={"to": "me@example.com"}, headers=admin_headers
            ),
            502,
            "smtp_test_failed",
        )
    assert "internal-build-server" not in body["detail"]
    assert "did not answer as an SMTP server" in body["detail"]
    [entry] = audit_events(session_factory, "notifications.smtp_tested")
    assert "internal-build-server" not in str(entry.details)


@pytest.mark.parametrize(
    "fields",
    [
        {"host": "mail.example.com\r\nRCPT TO:<x@evil.test>"},
        {"host": "mail\n.example.com"},
        {"host": "mail.example.com\x00"},
        {"host": "mail example.com"},
        {"username": "mailer\r\nQUIT"},
        {"username": "mailer\x1b[2J"},
        {"username": "mailer\u2028x"},
    ],
)
def test_control_characters_in_host_or_username_are_refused(
    client: TestClient, admin_headers: dict[str, str], fields: dict[str, str]
) -> None:
    body = {"host": "mail.example.com", "from_address": FROM, **fields}
    problem = assert_problem(
        client.put(SMTP, json=body, headers=admin_headers), 422, "validation_failed"
    )
    [field] = fields
    assert [p["name"] for p in problem["invalid_params"]] == [field]
