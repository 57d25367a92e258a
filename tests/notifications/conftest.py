import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from app.core.config import Settings
from app.notifications.models import Delivery, DeliveryStatus
from tests.notifications.servers import (
    MailSink,
    ServerPki,
    WebhookReceiver,
    make_server_pki,
    smtp_server,
    webhook_receiver,
)

RULES = "/api/v1/notifications/rules"
SMTP = "/api/v1/notifications/smtp"
DELIVERIES = "/api/v1/notifications/deliveries"
FROM = "signvault@example.com"


@pytest.fixture
def settings(settings: Settings, request: pytest.FixtureRequest) -> Settings:
    overrides: dict[str, Any] = {
        "webhook_allowed_hosts": ["127.0.0.1"],
        # The test SMTP servers listen on loopback.
        "smtp_allowed_hosts": ["127.0.0.1"],
        "notification_retry_base_seconds": 0.2,
        "notification_retry_max_seconds": 2.0,
        "notification_max_attempts": 3,
        "notification_poll_seconds": 0.5,
        "webhook_timeout_seconds": 1.0,
    }
    overrides.update(getattr(request, "param", {}))
    return settings.model_copy(update=overrides)


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    with webhook_receiver() as running:
        yield running


@pytest.fixture
def mail() -> Iterator[MailSink]:
    with smtp_server() as sink:
        yield sink


@pytest.fixture(scope="session")
def smtp_pki(tmp_path_factory: pytest.TempPathFactory) -> ServerPki:
    return make_server_pki(tmp_path_factory.mktemp("smtp-pki"))


def put_smtp(
    client: TestClient, headers: dict[str, str], port: int, **fields: Any
) -> dict[str, Any]:
    body = {
        "host": "127.0.0.1",
        "port": port,
        "security": "none",
        "from_address": FROM,
        "timeout_seconds": 5,
        **fields,
    }
    response = client.put(SMTP, json=body, headers=headers)
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


def create_rule(
    client: TestClient, headers: dict[str, str], **fields: Any
) -> dict[str, Any]:
    response = client.post(RULES, json={"name": "rule", **fields}, headers=headers)
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


def wait_until(
    condition: Callable[[], bool], *, timeout: float = 20, what: str = "condition"
) -> None:
    """Poll a database condition the background worker brings about."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def deliveries(factory: sessionmaker[Session]) -> list[Delivery]:
    with factory() as session:
        return list(session.scalars(select(Delivery).order_by(Delivery.created_at)))


def wait_final(factory: sessionmaker[Session], count: int = 1) -> list[Delivery]:
    """Wait until `count` deliveries exist and all are delivered or failed."""
    final = {DeliveryStatus.DELIVERED, DeliveryStatus.FAILED}

    def done() -> bool:
        rows = deliveries(factory)
        return len(rows) >= count and all(row.status in final for row in rows)

    wait_until(done, what=f"{count} final deliveries")
    return deliveries(factory)
