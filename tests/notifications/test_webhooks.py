"""Webhooks to a real HTTP server on loopback: signed, retried with backoff, timed out, refused."""

import hashlib
import hmac
import uuid
from datetime import timedelta

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from app.core.types import utcnow
from app.notifications.models import Channel, Delivery, DeliveryStatus
from app.notifications.outbox import Event, emit
from tests.factories import assert_problem, audit_events
from tests.notifications.conftest import RULES, create_rule, wait_final
from tests.notifications.servers import WebhookReceiver, webhook_receiver

PAYLOAD = {"document_id": "d-1", "filename": "contract.pdf", "signed_by": "alice"}


def emit_signed(factory: sessionmaker[Session]) -> str:
    with factory.begin() as session:
        row = emit(session, Event.DOCUMENT_SIGNED, PAYLOAD)
        session.flush()
        return str(row.id)


def verify(secret: str, headers: dict[str, str], body: bytes) -> bool:
    """What a receiver does (the README shows the same)."""
    expected = hmac.new(
        secret.encode(),
        headers["x-signvault-timestamp"].encode() + b"." + body,
        hashlib.sha256,
    ).hexdigest()
    return hmac.compare_digest(f"sha256={expected}", headers["x-signvault-signature"])


def test_webhook_is_delivered_signed_and_audited(
    client: TestClient,
    admin_headers: dict[str, str],
    session_factory: sessionmaker[Session],
    receiver: WebhookReceiver,
) -> None:
    rule = create_rule(
        client,
        admin_headers,
        event="document.signed",
        channel="webhook",
        url=receiver.url,
    )
    secret = rule["secret"]
    assert secret
    assert rule["secret_set"] is True
    event_id = emit_signed(session_factory)

    [hit] = receiver.wait_for(lambda hits: len(hits) == 1)
    [delivery] = wait_final(session_factory)
    assert verify(secret, hit.headers, hit.body)
    assert not verify(secret + "x", hit.headers, hit.body)
    assert hit.headers["x-signvault-event"] == "document.signed"
    assert hit.headers["x-signvault-delivery"] == str(delivery.id)
    assert hit.headers["content-type"] == "application/json"
    body = hit.json()
    assert body["id"] == event_id
    assert body["event"] == "document.signed"
    assert body["data"] == PAYLOAD
    assert body["created_at"]
    assert (delivery.status, delivery.attempts) == (DeliveryStatus.DELIVERED, 1)
    [entry] = audit_events(session_factory, "notification.delivered")
    assert entry.resource_id == str(delivery.id)
    assert entry.details["target"] == receiver.url


def test_receiver_error_is_retried_with_growing_waits(
    client: TestClient,
    admin_headers: dict[str, str],
    session_factory: sessionmaker[Session],
) -> None:
    with webhook_receiver(plan=[500, 503]) as receiver:
        create_rule(
            client,
            admin_headers,
            event="document.signed",
            channel="webhook",
            url=receiver.url,
        )
        emit_signed(session_factory)
        hits = receiver.wait_for(lambda hits: len(hits) == 3)
        [delivery] = wait_final(session_factory)
    assert (delivery.status, delivery.attempts) == (DeliveryStatus.DELIVERED, 3)
    # Base 0.2 s, doubled: at least 0.2 s, then at least 0.4 s.
    first, second = hits[1].at - hits[0].at, hits[2].at - hits[1].at
    assert first >= 0.2
    assert second >= 0.4
    assert len({hit.headers["x-signvault-delivery"] for hit in hits}) == 1


def test_receiver_that_never_answers_times_out_and_fails_after_max_attempts(
    client: TestClient,
    admin_headers: dict[str, str],
    session_factory: sessionmaker[Session],
) -> None:
    with webhook_receiver(plan=[0, 0, 0]) as receiver:
        create_rule(
            client,
            admin_headers,
            event="document.signed",
            channel="webhook",
            url=receiver.url,
        )
        emit_signed(session_factory)
        [delivery] = wait_final(session_factory)
        assert len(receiver.hits) == 3
    assert delivery.status == DeliveryStatus.FAILED
    assert delivery.attempts == 3
    assert delivery.last_error == "no answer within 1 s"
    [entry] = audit_events(session_factory, "notification.failed")
    assert entry.outcome == "failure"
    assert entry.details["error"] == "no answer within 1 s"


def test_redirect_is_not_followed(
    client: TestClient,
    admin_headers: dict[str, str],
    session_factory: sessionmaker[Session],
) -> None:
    with webhook_receiver(plan=[302, 302, 302]) as receiver:
        create_rule(
            client,
            admin_headers,
            event="document.signed",
            channel="webhook",
            url=receiver.url,
        )
        emit_signed(session_factory)
        [delivery] = wait_final(session_factory)
    assert delivery.status == DeliveryStatus.FAILED
    assert delivery.last_error is not None
    assert "302 redirect" in delivery.last_error
    assert "not followed" in delivery.last_error


@pytest.mark.parametrize(
    "url",
    [
        "http://10.1.2.3/hook",
        "http://169.254.169.254/latest/meta-data",
        "https://[::1]/hook",
        "http://127.0.0.2:8080/hook",
        "http://0.0.0.0/hook",
        "http://224.0.0.1/hook",
        "http://[::ffff:192.168.1.1]/hook",
    ],
)
def test_webhook_to_a_private_address_is_refused(
    client: TestClient, admin_headers: dict[str, str], url: str
) -> None:
    response = client.post(
        RULES,
        json={
            "name": "r",
            "event": "document.signed",
            "channel": "webhook",
            "url": url,
        },
        headers=admin_headers,
    )
    body = assert_problem(response, 422, "webhook_url_refused")
    assert "SIGNVAULT_WEBHOOK_ALLOWED_HOSTS" in body["detail"]


@pytest.mark.parametrize(
    "address",
    [
        "2002:7f00:1::1",  # 6to4 of 127.0.0.1
        "2002:c0a8:101::1",  # 6to4 of 192.168.1.1
        "2002:808:808::1",  # 6to4 of a public address: where it lands is the relay's choice
        "2001:0:4136:e378:8000:63bf:3fff:fdd2",  # Teredo
        "2001::7f00:1",  # Teredo, 127.0.0.1 as the server
        "64:ff9b::7f00:1",  # NAT64 of 127.0.0.1
        "64:ff9b::808:808",  # NAT64 of a public address
        "64:ff9b:1::a00:1",  # NAT64, local-use prefix
        "::7f00:1",  # IPv4-compatible 127.0.0.1
        "::ffff:7f00:1",  # IPv4-mapped 127.0.0.1
        "fec0::1",  # site-local
    ],
)
def test_webhook_to_an_ipv6_transition_address_is_refused(
    client: TestClient, admin_headers: dict[str, str], address: str
) -> None:
    response = client.post(
        RULES,
        json={
            "name": "r",
            "event": "document.signed",
            "channel": "webhook",
            "url": f"http://[{address}]/hook",
        },
        headers=admin_headers,
    )
    body = assert_problem(response, 422, "webhook_url_refused")
    assert "transition" in body["detail"]


def test_webhook_to_the_6to4_relay_anycast_is_refused(
    client: TestClient, admin_headers: dict[str, str]
) -> None:
    response = client.post(
        RULES,
        json={
            "name": "r",
            "event": "document.signed",
            "channel": "webhook",
            "url": "http://192.88.99.1/hook",
        },
        headers=admin_headers,
    )
    assert_problem(response, 422, "webhook_url_refused")


@pytest.mark.parametrize(
    "settings",
    [{"webhook_allowed_hosts": ["64:ff9b::/96"]}],
    indirect=True,
)
def test_transition_prefix_is_reachable_once_allow_listed(
    client: TestClient, admin_headers: dict[str, str]
) -> None:
    """An IPv6-only network with DNS64 lists its NAT64 prefix; IPv4-mapped public addresses need nothing."""
    for url in ("http://[64:ff9b::808:808]/hook", "http://[::ffff:8.8.8.8]/hook"):
        create_rule(
            client,
            admin_headers,
            name=url,
            event="document.signed",
            channel="webhook",
            url=url,
        )


@pytest.mark.parametrize("url", ["ftp://example.com/x", "http://user:pw@example.com/"])
def test_webhook_url_must_be_plain_http_or_https(
    client: TestClient, admin_headers: dict[str, str], url: str
) -> None:
    response = client.post(
        RULES,
        json={
            "name": "r",
            "event": "document.signed",
            "channel": "webhook",
            "url": url,
        },
        headers=admin_headers,
    )
    assert_problem(response, 422, "webhook_url_refused")


def test_address_allowed_at_creation_is_checked_again_at_send_time(
    client: TestClient,
    admin_headers: dict[str, str],
    session_factory: sessionmaker[Session],
    receiver: WebhookReceiver,
) -> None:
    create_rule(
        client,
        admin_headers,
        event="document.signed",
        channel="webhook",
        url=receiver.url,
    )
    # The allow-list shrinks (as DNS may change): the send refuses, nothing reaches the host.
    client.app.state.settings.webhook_allowed_hosts.clear()  # type: ignore[attr-defined]
    emit_signed(session_factory)
    [delivery] = wait_final(session_factory)
    assert delivery.status == DeliveryStatus.FAILED
    assert delivery.last_error is not None
    assert "127.0.0.1" in delivery.last_error
    assert "private" in delivery.last_error
    assert receiver.hits == []


def test_delivery_of_a_worker_that_died_is_taken_over_after_its_lease(
    client: TestClient,
    admin_headers: dict[str, str],
    session_factory: sessionmaker[Session],
    receiver: WebhookReceiver,
) -> None:
    rule = create_rule(
        client,
        admin_headers,
        event="document.signed",
        channel="webhook",
        url=receiver.url,
    )
    with session_factory.begin() as session:
        event = emit(session, Event.DOCUMENT_SIGNED, PAYLOAD)
        # Dispatched and claimed by a worker that then died mid-send.
        event.dispatched_at = utcnow()
        session.flush()
        session.add(
            Delivery(
                event_id=event.id,
                rule_id=uuid.UUID(rule["id"]),
                event=event.event,
                channel=Channel.WEBHOOK,
                target=receiver.url,
                status=DeliveryStatus.SENDING,
                attempts=1,
                claimed_by="dead-worker",
                claimed_until=utcnow() - timedelta(seconds=1),
            )
        )
    [hit] = receiver.wait_for(lambda hits: len(hits) == 1)
    [delivery] = wait_final(session_factory)
    assert hit.headers["x-signvault-delivery"] == str(delivery.id)
    assert (delivery.status, delivery.attempts) == (DeliveryStatus.DELIVERED, 2)
    assert delivery.claimed_by != "dead-worker"
