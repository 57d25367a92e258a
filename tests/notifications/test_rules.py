"""Rules API: validation, secrets that are shown once, audit; the delivery log and retry."""

import uuid
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from app.notifications.models import Delivery, DeliveryStatus, NotificationRule
from app.notifications.outbox import Event, emit
from tests.factories import assert_problem, audit_events
from tests.notifications.conftest import (
    DELIVERIES,
    RULES,
    create_rule,
    put_smtp,
    wait_final,
)
from tests.notifications.servers import MailSink, WebhookReceiver

EMAIL = {
    "event": "certificate.expiring",
    "channel": "email",
    "recipients": ["a@example.com"],
}


@pytest.mark.parametrize(
    ("fields", "code"),
    [
        (
            {**EMAIL, "event": "document.signed", "days_before": [7]},
            "days_before_not_applicable",
        ),
        ({**EMAIL, "recipients": ["role:no-such-role"]}, "unknown_role"),
        ({**EMAIL, "recipients": ["not an address"]}, "invalid_recipient"),
        ({**EMAIL, "recipients": []}, "recipients_required"),
        ({**EMAIL, "url": "https://example.com/"}, "url_not_applicable"),
        ({**EMAIL, "secret": "s" * 20}, "secret_not_applicable"),
        ({**EMAIL, "subject_template": "${certificate.__class__}"}, "invalid_template"),
        ({**EMAIL, "body_template": "Hello ${password}"}, "unknown_placeholder"),
        ({"event": "document.signed", "channel": "webhook"}, "url_required"),
        (
            {
                "event": "document.signed",
                "channel": "webhook",
                "url": "https://example.com/",
                "recipients": ["a@example.com"],
            },
            "recipients_not_applicable",
        ),
        (
            {
                "event": "document.signed",
                "channel": "webhook",
                "url": "https://example.com/",
                "body_template": "x",
            },
            "template_not_applicable",
        ),
        ({**EMAIL, "event": "no.such.event"}, "validation_failed"),
        ({**EMAIL, "days_before": [-1]}, "validation_failed"),
    ],
)
def test_invalid_rule_is_refused_with_a_code(
    client: TestClient, admin_headers: dict[str, str], fields: dict[str, Any], code: str
) -> None:
    response = client.post(RULES, json={"name": "r", **fields}, headers=admin_headers)
    body = assert_problem(response, 422, code)
    assert body["invalid_params"]


def test_rule_crud_is_audited(
    client: TestClient,
    admin_headers: dict[str, str],
    session_factory: sessionmaker[Session],
) -> None:
    rule = create_rule(
        client,
        admin_headers,
        name="expiry",
        **EMAIL,
        days_before=[1, 30, 7, 7],
        body_template="${certificate_name}: ${days_left} days (${event_id})",
    )
    assert rule["days_before"] == [30, 7, 1]
    assert rule["secret"] is None
    assert rule["secret_set"] is False
    assert_problem(
        client.post(RULES, json={"name": "expiry", **EMAIL}, headers=admin_headers),
        409,
        "notification_rule_name_taken",
    )
    changed = client.patch(
        f"{RULES}/{rule['id']}",
        json={"enabled": False, "days_before": None},
        headers=admin_headers,
    )
    assert changed.status_code == 200, changed.text
    assert (changed.json()["enabled"], changed.json()["days_before"]) == (False, None)
    assert_problem(
        client.patch(
            f"{RULES}/{rule['id']}", json={"name": None}, headers=admin_headers
        ),
        422,
        "field_required",
    )
    listed = client.get(
        RULES, params={"enabled": "false"}, headers=admin_headers
    ).json()
    assert [r["id"] for r in listed["data"]] == [rule["id"]]
    assert (
        client.get(RULES, params={"channel": "webhook"}, headers=admin_headers).json()[
            "total"
        ]
        == 0
    )
    assert (
        client.delete(f"{RULES}/{rule['id']}", headers=admin_headers).status_code == 204
    )
    assert_problem(
        client.get(f"{RULES}/{rule['id']}", headers=admin_headers),
        404,
        "notification_rule_not_found",
    )
    actions = [
        e.action
        for e in audit_events(session_factory)
        if e.resource_type == "notification_rule"
    ]
    assert actions == [
        "notification_rule.created",
        "notification_rule.updated",
        "notification_rule.deleted",
    ]
    [updated] = audit_events(session_factory, "notification_rule.updated")
    assert updated.details["before"] == {"enabled": True, "days_before": [30, 7, 1]}
    assert updated.details["after"] == {"enabled": False, "days_before": None}


def test_webhook_secret_is_shown_once_and_never_again(
    client: TestClient,
    admin_headers: dict[str, str],
    session_factory: sessionmaker[Session],
    receiver: WebhookReceiver,
) -> None:
    generated = create_rule(
        client,
        admin_headers,
        name="gen",
        event="user.locked",
        channel="webhook",
        url=receiver.url,
    )
    chosen_secret = "my-own-webhook-secret-123"
    chosen = create_rule(
        client,
        admin_headers,
        name="chosen",
        event="user.locked",
        channel="webhook",
        url=receiver.url,
        secret=chosen_secret,
    )
    assert len(generated["secret"]) >= 32
    assert chosen["secret"] is None
    assert chosen["secret_set"] is True
    texts = [
        client.get(f"{RULES}/{generated['id']}", headers=admin_headers).text,
        client.get(RULES, headers=admin_headers).text,
        client.patch(
            f"{RULES}/{chosen['id']}", json={"name": "renamed"}, headers=admin_headers
        ).text,
        *(str(e.details) for e in audit_events(session_factory)),
    ]
    for text in texts:
        assert generated["secret"] not in text
        assert chosen_secret not in text
    with session_factory() as session:
        stored = session.get_one(
            NotificationRule, uuid.UUID(chosen["id"])
        ).sealed_secret
        assert stored is not None
        assert chosen_secret.encode() not in stored


def test_failed_delivery_can_be_retried(
    client: TestClient,
    admin_headers: dict[str, str],
    session_factory: sessionmaker[Session],
    receiver: WebhookReceiver,
) -> None:
    receiver.plan[:] = [500, 500, 500]
    rule = create_rule(
        client, admin_headers, event="user.locked", channel="webhook", url=receiver.url
    )
    with session_factory.begin() as session:
        emit(session, Event.USER_LOCKED, {"username": "mallory"})
    [failed] = wait_final(session_factory)
    assert failed.status == DeliveryStatus.FAILED
    log = client.get(
        DELIVERIES,
        params={"status": "failed", "rule_id": rule["id"]},
        headers=admin_headers,
    ).json()
    [row] = log["data"]
    assert (row["attempts"], row["last_error"], row["target"]) == (
        3,
        "HTTP 500: no",
        receiver.url,
    )
    assert row["finished_at"] is not None
    assert (
        client.get(
            DELIVERIES, params={"event": "document.signed"}, headers=admin_headers
        ).json()["total"]
        == 0
    )

    retried = client.post(f"{DELIVERIES}/{row['id']}/retry", headers=admin_headers)
    assert retried.status_code == 200, retried.text
    assert retried.json()["status"] in {"pending", "sending", "delivered"}
    [done] = wait_final(session_factory)
    assert (done.status, done.attempts) == (DeliveryStatus.DELIVERED, 1)
    assert_problem(
        client.post(f"{DELIVERIES}/{row['id']}/retry", headers=admin_headers),
        409,
        "delivery_not_failed",
    )
    [entry] = audit_events(session_factory, "notification.retried")
    assert entry.details["last_error"] == "HTTP 500: no"


def test_rolled_back_transaction_emits_nothing(
    client: TestClient,
    admin_headers: dict[str, str],
    session_factory: sessionmaker[Session],
    receiver: WebhookReceiver,
) -> None:
    create_rule(
        client, admin_headers, event="user.locked", channel="webhook", url=receiver.url
    )

    def failing_change() -> None:
        with session_factory.begin() as session:
            emit(session, Event.USER_LOCKED, {"username": "rolled-back"})
            session.flush()
            raise RuntimeError("the change fails")

    with pytest.raises(RuntimeError):
        failing_change()
    with session_factory.begin() as session:
        emit(session, Event.USER_LOCKED, {"username": "committed"})
    [_delivery] = wait_final(session_factory)
    [hit] = receiver.wait_for(lambda hits: len(hits) == 1)
    assert hit.json()["data"] == {"username": "committed"}
    with session_factory() as session:
        assert session.query(Delivery).count() == 1


@pytest.mark.parametrize("settings", [{"notification_poll_seconds": 60}], indirect=True)
def test_a_commit_that_emits_wakes_the_worker_at_once(
    client: TestClient,
    admin_headers: dict[str, str],
    session_factory: sessionmaker[Session],
    receiver: WebhookReceiver,
) -> None:
    create_rule(
        client, admin_headers, event="user.locked", channel="webhook", url=receiver.url
    )
    with session_factory.begin() as session:
        emit(session, Event.USER_LOCKED, {"username": "quick"})
    # Far sooner than the 60 s poll.
    receiver.wait_for(lambda hits: len(hits) == 1, timeout=10)


def test_unknown_placeholder_of_an_open_event_renders_visibly_in_one_subject_line(
    client: TestClient,
    admin_headers: dict[str, str],
    session_factory: sessionmaker[Session],
    mail: MailSink,
) -> None:
    put_smtp(client, admin_headers, mail.port)
    create_rule(
        client,
        admin_headers,
        event="user.locked",
        channel="email",
        recipients=["a@example.com"],
        subject_template="Locked: ${username}",
        body_template="${username} locked; ${nope} stays as written.",
    )
    with session_factory.begin() as session:
        emit(session, Event.USER_LOCKED, {"username": "eve\r\nBcc: x@example.com"})
    [received] = mail.wait_for(1)
    assert received.rcpt_tos == ["a@example.com"]
    assert received.message["Subject"] == "Locked: eve Bcc: x@example.com"
    assert received.message["Bcc"] is None
    assert "${nope} stays as written." in received.message.get_content()
