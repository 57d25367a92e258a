"""Email to a real SMTP server on loopback (aiosmtpd): plain, STARTTLS, authentication."""

import uuid

from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from app.access.models import User
from app.core.security import PasswordHasher
from app.notifications.models import DeliveryStatus
from app.notifications.outbox import Event, emit
from tests.certificates.conftest import import_signer
from tests.certificates.pki import make_ca, make_signer
from tests.factories import audit_events, make_role, make_user
from tests.notifications.conftest import FROM, create_rule, put_smtp, wait_final
from tests.notifications.servers import MailSink, ServerPki, smtp_server

EXPIRING = {
    "certificate_id": "00000000-0000-0000-0000-000000000001",
    "certificate_name": "Sales seal",
    "subject": "CN=Sales, O=Example",
    "fingerprint": "ab" * 32,
    "not_after": "2027-01-31T00:00:00Z",
    "days_before": 7,
    "days_left": 7,
}


def emit_expiring(factory: sessionmaker[Session], **changes: object) -> None:
    with factory.begin() as session:
        emit(session, Event.CERTIFICATE_EXPIRING, {**EXPIRING, **changes})


def set_email(factory: sessionmaker[Session], username: str, email: str) -> None:
    with factory.begin() as session:
        user = session.query(User).filter_by(username=username).one()
        user.email = email


def test_email_reaches_each_recipient_with_the_rendered_template(
    client: TestClient,
    admin_headers: dict[str, str],
    session_factory: sessionmaker[Session],
    hasher: PasswordHasher,
    mail: MailSink,
) -> None:
    make_role(session_factory, name="pki-officers", entitlements=[])
    make_user(session_factory, hasher, username="olga", roles=("pki-officers",))
    set_email(session_factory, "olga", "olga@example.com")
    put_smtp(client, admin_headers, mail.port)
    create_rule(
        client,
        admin_headers,
        event="certificate.expiring",
        channel="email",
        recipients=["ops@example.com", "role:pki-officers", "OPS@example.com"],
        days_before=[30, 7],
        subject_template="${certificate_name} expires in ${days_left} days",
        body_template="Renew ${subject} before ${not_after} ($$0 cost).",
    )
    emit_expiring(session_factory, days_before=1)  # a threshold the rule does not hear
    emit_expiring(session_factory)

    received = mail.wait_for(2)
    rows = wait_final(session_factory, 2)
    assert {row.status for row in rows} == {DeliveryStatus.DELIVERED}
    assert sorted(row.target for row in rows) == ["olga@example.com", "ops@example.com"]
    assert sorted(tuple(m.rcpt_tos) for m in received) == [
        ("olga@example.com",),
        ("ops@example.com",),
    ]
    for message in received:
        assert message.mail_from == FROM
        assert message.message["Subject"] == "Sales seal expires in 7 days"
        assert message.message["From"] == FROM
        assert message.message.get_content().strip() == (
            "Renew CN=Sales, O=Example before 2027-01-31T00:00:00Z ($0 cost)."
        )
    assert len(audit_events(session_factory, "notification.delivered")) == 2


def test_assignees_are_the_certificates_users_and_department_members(
    client: TestClient,
    admin_headers: dict[str, str],
    session_factory: sessionmaker[Session],
    hasher: PasswordHasher,
    mail: MailSink,
) -> None:
    ca = make_ca()
    certificate = import_signer(client, admin_headers, make_signer(ca), ca)
    department = client.post(
        "/api/v1/departments", json={"name": "Legal"}, headers=admin_headers
    ).json()
    for name in ("ann", "ben", "cid"):
        make_user(session_factory, hasher, username=name)
        set_email(session_factory, name, f"{name}@example.com")
    with session_factory.begin() as session:
        ben = session.query(User).filter_by(username="ben").one()
        ben.department_id = uuid.UUID(department["id"])
    users = {
        u["username"]: u["id"]
        for u in client.get("/api/v1/users", headers=admin_headers).json()["data"]
    }
    base = f"/api/v1/certificates/{certificate['id']}/assignments"
    assert (
        client.post(
            base, json={"user_id": users["ann"]}, headers=admin_headers
        ).status_code
        == 201
    )
    assert (
        client.post(
            base, json={"department_id": department["id"]}, headers=admin_headers
        ).status_code
        == 201
    )
    put_smtp(client, admin_headers, mail.port)
    create_rule(
        client,
        admin_headers,
        event="certificate.expiring",
        channel="email",
        recipients=["assignees"],
    )
    emit_expiring(session_factory, certificate_id=certificate["id"])

    rows = wait_final(session_factory, 2)
    assert sorted(row.target for row in rows) == ["ann@example.com", "ben@example.com"]
    assert sorted(m.rcpt_tos[0] for m in mail.wait_for(2)) == [
        "ann@example.com",
        "ben@example.com",
    ]


def test_starttls_with_the_servers_ca_trusted(
    client: TestClient,
    admin_headers: dict[str, str],
    session_factory: sessionmaker[Session],
    smtp_pki: ServerPki,
) -> None:
    with smtp_server(
        tls_context=smtp_pki.server_context(), credentials=("mailer", "s3cret-pw")
    ) as sink:
        put_smtp(
            client,
            admin_headers,
            sink.port,
            security="starttls",
            username="mailer",
            password="s3cret-pw",
            tls_ca_pem=smtp_pki.ca_pem,
        )
        create_rule(
            client,
            admin_headers,
            event="certificate.expired",
            channel="email",
            recipients=["ops@example.com"],
        )
        with session_factory.begin() as session:
            emit(
                session,
                Event.CERTIFICATE_EXPIRED,
                {k: v for k, v in EXPIRING.items() if k != "days_before"}
                | {"days_left": 0},
            )
        [message] = sink.wait_for(1)
    assert (
        message.message["Subject"] == "[SignVault] Certificate Sales seal has expired"
    )
    assert "expired on 2027-01-31T00:00:00Z" in message.message.get_content()
    [row] = wait_final(session_factory)
    assert row.status == DeliveryStatus.DELIVERED


def test_implicit_tls_with_the_servers_ca_trusted(
    client: TestClient,
    admin_headers: dict[str, str],
    session_factory: sessionmaker[Session],
    smtp_pki: ServerPki,
) -> None:
    with smtp_server(
        implicit_tls_context=smtp_pki.server_context(),
        credentials=("mailer", "s3cret-pw"),
    ) as sink:
        put_smtp(
            client,
            admin_headers,
            sink.port,
            security="tls",
            username="mailer",
            password="s3cret-pw",
            tls_ca_pem=smtp_pki.ca_pem,
        )
        create_rule(
            client,
            admin_headers,
            event="certificate.expiring",
            channel="email",
            recipients=["ops@example.com"],
        )
        emit_expiring(session_factory)
        [message] = sink.wait_for(1)
        [row] = wait_final(session_factory)
    assert message.rcpt_tos == ["ops@example.com"]
    assert row.status == DeliveryStatus.DELIVERED
    # Without the CA the certificate is refused, as for STARTTLS.
    with smtp_server(implicit_tls_context=smtp_pki.server_context()) as sink:
        put_smtp(client, admin_headers, sink.port, security="tls")
        emit_expiring(session_factory, certificate_name="Other seal")
        rows = wait_final(session_factory, count=2)
        assert sink.messages == []
    failed = [r for r in rows if r.status == DeliveryStatus.FAILED]
    assert len(failed) == 1
    assert "CERTIFICATE_VERIFY_FAILED" in (failed[0].last_error or "")


def test_starttls_verifies_the_certificate_by_default(
    client: TestClient,
    admin_headers: dict[str, str],
    session_factory: sessionmaker[Session],
    smtp_pki: ServerPki,
) -> None:
    with smtp_server(tls_context=smtp_pki.server_context()) as sink:
        put_smtp(client, admin_headers, sink.port, security="starttls")
        create_rule(
            client,
            admin_headers,
            event="certificate.expiring",
            channel="email",
            recipients=["ops@example.com"],
        )
        emit_expiring(session_factory)
        [row] = wait_final(session_factory)
        assert sink.messages == []
    assert row.status == DeliveryStatus.FAILED
    assert row.last_error is not None
    assert "CERTIFICATE_VERIFY_FAILED" in row.last_error


def test_wrong_password_is_retried_then_failed_with_the_servers_answer(
    client: TestClient,
    admin_headers: dict[str, str],
    session_factory: sessionmaker[Session],
    smtp_pki: ServerPki,
) -> None:
    with smtp_server(
        tls_context=smtp_pki.server_context(), credentials=("mailer", "right-pw")
    ) as sink:
        put_smtp(
            client,
            admin_headers,
            sink.port,
            security="starttls",
            username="mailer",
            password="wrong-pw",
            tls_verify=False,
        )
        create_rule(
            client,
            admin_headers,
            event="certificate.expiring",
            channel="email",
            recipients=["ops@example.com"],
        )
        emit_expiring(session_factory)
        [row] = wait_final(session_factory)
        # Three logins (smtplib tries each mechanism the server offers in each).
        assert sink.auth_attempts >= 3
        assert sink.messages == []
    assert (row.status, row.attempts) == (DeliveryStatus.FAILED, 3)
    assert row.last_error is not None
    assert row.last_error.startswith("SMTP 535")
    assert "Authentication credentials invalid" in row.last_error
    [entry] = audit_events(session_factory, "notification.failed")
    assert entry.details["attempts"] == 3
    # The worker kept running: a later delivery still goes out.
    assert client.get("/health").status_code == 200
