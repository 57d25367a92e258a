"""Each feature emits its notification event in the transaction of its change, over the real API."""

import uuid
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from app.core.config import Settings
from app.core.security import PasswordHasher
from app.core.types import utcnow
from app.notifications.outbox import Event
from app.signing.models import Signature
from tests.access.test_lockout import THRESHOLD, bob, fail
from tests.certificates.pki import Issued
from tests.factories import Credentials, assert_problem, audit_events
from tests.license.conftest import issuer, public_key_text
from tests.notifications.outbox import outbox_counts, outbox_payloads
from tests.pdfs import make_pdf
from tests.signing.test_sign_api import (
    DOCS,
    Signer,
    alice,
    ca,
    licensed,
    signer_on_app,
    upload,
)

__all__ = ["alice", "bob", "ca", "issuer", "licensed"]  # shared fixtures


@pytest.fixture
def settings(settings: Settings, issuer: Ed25519PrivateKey) -> Settings:
    return settings.model_copy(update={"license_public_key": public_key_text(issuer)})


def signing_events(session_factory: sessionmaker[Session]) -> dict[str, int]:
    # The evaluation licence ends within 30 days: signing also announces that.
    return outbox_counts(session_factory, ignoring=[Event.LICENSE_EXPIRING])


def at(text: str) -> datetime:
    return datetime.fromisoformat(text)


def sign(client: TestClient, signer: Signer, document_id: str, **headers: str) -> Any:
    return client.post(
        f"{DOCS}/{document_id}/sign",
        json={"certificate_id": signer.certificate_id, "reason": "Approval"},
        headers={**signer.headers, **headers},
    )


def one_shot(client: TestClient, signer: Signer) -> Any:
    return client.post(
        "/api/v1/sign",
        files={"file": ("in.pdf", make_pdf(), "application/pdf")},
        data={
            "title": "Contract",
            "options": f'{{"certificate_id": "{signer.certificate_id}"}}',
        },
        headers=signer.headers,
    )


def test_locking_by_failed_logins_emits_user_locked_once(
    client: TestClient, bob: Credentials, session_factory: sessionmaker[Session]
) -> None:
    for _ in range(THRESHOLD - 1):
        assert fail(client) == 401
    assert outbox_payloads(session_factory, Event.USER_LOCKED) == []
    before = utcnow()
    for _ in range(3):  # the Nth locks the address out; later attempts are refused
        assert fail(client) in (401, 429)
    [locked] = outbox_payloads(session_factory, Event.USER_LOCKED)
    assert locked == {
        "user_id": str(bob.user_id),
        "username": "bob",
        "email": locked["email"],
        "ip": "testclient",
        "failures": THRESHOLD,
        "locked_until": locked["locked_until"],
    }
    assert (
        timedelta(minutes=9)
        < at(locked["locked_until"]) - before
        <= timedelta(minutes=10, seconds=5)
    )


def test_signing_emits_document_signed_once_and_a_retry_nothing(
    client: TestClient, alice: Signer, session_factory: sessionmaker[Session]
) -> None:
    document = upload(client, alice.headers)
    first = sign(client, alice, document["id"], **{"Idempotency-Key": "k1"})
    again = sign(client, alice, document["id"], **{"Idempotency-Key": "k1"})
    assert (first.status_code, again.status_code) == (201, 201)
    signature = first.json()
    [signed] = outbox_payloads(session_factory, Event.DOCUMENT_SIGNED)
    with session_factory() as session:
        stored = session.get_one(Signature, uuid.UUID(signature["id"]))
    assert signed == {
        "document_id": document["id"],
        "document_name": document["title"],
        "signature_id": signature["id"],
        "level": "B-B",
        "certificate_id": alice.certificate_id,
        "certificate_name": "Alice",
        "signer": "alice",
        "signed_at": signed["signed_at"],
    }
    assert at(signed["signed_at"]) == stored.signing_time
    assert signing_events(session_factory) == {Event.DOCUMENT_SIGNED.value: 1}


def test_one_shot_sign_emits_document_signed(
    client: TestClient, alice: Signer, session_factory: sessionmaker[Session]
) -> None:
    response = one_shot(client, alice)
    assert response.status_code == 200, response.text
    [signed] = outbox_payloads(session_factory, Event.DOCUMENT_SIGNED)
    assert (signed["document_id"], signed["signature_id"], signed["document_name"]) == (
        response.headers["x-document-id"],
        response.headers["x-signature-id"],
        "Contract",
    )
    assert outbox_payloads(session_factory, Event.SIGNING_FAILED) == []


def test_refused_signing_emits_signing_failed_once_and_no_success(
    client: TestClient,
    admin_headers: dict[str, str],
    alice: Signer,
    session_factory: sessionmaker[Session],
) -> None:
    document = upload(client, alice.headers)
    revoked = client.post(
        f"/api/v1/certificates/{alice.certificate_id}/revoke",
        json={},
        headers=admin_headers,
    )
    assert revoked.status_code == 200, revoked.text
    assert_problem(sign(client, alice, document["id"]), 409, "certificate_revoked")
    [failed] = outbox_payloads(session_factory, Event.SIGNING_FAILED)
    assert failed == {
        "document_id": document["id"],
        "document_name": document["title"],
        "certificate_id": alice.certificate_id,
        "level": "B-B",
        "code": "certificate_revoked",
        "detail": failed["detail"],
        "signer": "alice",
    }
    assert failed["detail"]
    # The event is stored exactly with the request's failure entry.
    [audited] = audit_events(session_factory, "document.sign_failed")
    assert audited.details["code"] == "certificate_revoked"
    assert signing_events(session_factory) == {Event.SIGNING_FAILED.value: 1}


def test_refused_one_shot_names_no_document(
    client: TestClient,
    admin_headers: dict[str, str],
    alice: Signer,
    session_factory: sessionmaker[Session],
) -> None:
    client.post(
        f"/api/v1/certificates/{alice.certificate_id}/disable", headers=admin_headers
    )
    assert_problem(one_shot(client, alice), 409, "certificate_disabled")
    [failed] = outbox_payloads(session_factory, Event.SIGNING_FAILED)
    # The upload was part of the failed request: it rolled back with it.
    assert (failed["document_id"], failed["document_name"], failed["code"]) == (
        None,
        "Contract",
        "certificate_disabled",
    )
    assert signing_events(session_factory) == {Event.SIGNING_FAILED.value: 1}


def test_unreachable_tsa_emits_signing_failed(
    settings: Settings,
    admin: Credentials,
    session_factory: sessionmaker[Session],
    hasher: PasswordHasher,
    ca: Issued,
) -> None:
    unreachable = {"tsa_url": "http://127.0.0.1:9/tsa", "tsa_timeout_seconds": 2}
    with signer_on_app(
        settings, admin, session_factory, hasher, ca, "tom", **unreachable
    ) as (client, signer):
        document = upload(client, signer.headers)
        response = client.post(
            f"{DOCS}/{document['id']}/sign",
            json={"certificate_id": signer.certificate_id, "level": "B-T"},
            headers=signer.headers,
        )
        assert_problem(response, 502, "tsa_unavailable")
    [failed] = outbox_payloads(session_factory, Event.SIGNING_FAILED)
    assert (failed["code"], failed["level"], failed["signer"]) == (
        "tsa_unavailable",
        "B-T",
        "tom",
    )
    assert outbox_payloads(session_factory, Event.DOCUMENT_SIGNED) == []


def test_licence_limit_announced_once_and_a_refused_signing_emits_no_success(
    client: TestClient,
    alice: Signer,
    licensed: Callable[..., None],
    session_factory: sessionmaker[Session],
) -> None:
    licensed(signatures_total=1)
    first, second = upload(client, alice.headers), upload(client, alice.headers)
    assert sign(client, alice, first["id"]).status_code == 201
    [reached] = outbox_payloads(session_factory, Event.LICENSE_LIMIT_REACHED)
    assert reached["limit"] == "signatures_total"
    assert (reached["allowed"], reached["used"]) == (1, 1)
    # The refusal comes after `document.signed` was emitted: the rollback takes it back.
    assert_problem(sign(client, alice, second["id"]), 403, "license_limit_reached")
    [signed] = outbox_payloads(session_factory, Event.DOCUMENT_SIGNED)
    assert signed["document_id"] == first["id"]
    [failed] = outbox_payloads(session_factory, Event.SIGNING_FAILED)
    assert (failed["document_id"], failed["code"]) == (
        second["id"],
        "license_limit_reached",
    )
    assert signing_events(session_factory) == {
        Event.DOCUMENT_SIGNED.value: 1,
        Event.LICENSE_LIMIT_REACHED.value: 1,
        Event.SIGNING_FAILED.value: 1,
    }


def test_batch_emits_batch_completed_once_and_one_event_per_signed_item(
    client: TestClient, alice: Signer, session_factory: sessionmaker[Session]
) -> None:
    good = upload(client, alice.headers)
    response = client.post(
        "/api/v1/batches",
        json={
            "document_ids": [good["id"], str(uuid.uuid4())],
            "certificate_id": alice.certificate_id,
        },
        headers=alice.headers,
    )
    assert response.status_code == 201, response.text
    batch = response.json()
    [completed] = outbox_payloads(session_factory, Event.BATCH_COMPLETED)
    assert completed == {
        "batch_id": batch["id"],
        "total": 2,
        "succeeded": 1,
        "failed": 1,
        "owner": "alice",
    }
    [signed] = outbox_payloads(session_factory, Event.DOCUMENT_SIGNED)
    assert signed["document_id"] == good["id"]
    # A document that could not even be looked up was never a sign attempt.
    assert signing_events(session_factory) == {
        Event.BATCH_COMPLETED.value: 1,
        Event.DOCUMENT_SIGNED.value: 1,
    }
