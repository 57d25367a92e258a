"""SMTP settings: the password is sealed, write-only and never audited; the test email is real."""

from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from app.settings.models import SettingsSection
from tests.factories import assert_problem, audit_events
from tests.notifications.conftest import FROM, SMTP, put_smtp
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
