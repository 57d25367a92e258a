"""Batches: many documents, one certificate, one transaction per document, in the request or the background."""

import base64
import hashlib
import io
import json
import re
import threading
import time
import uuid
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session, sessionmaker

from app.access.models import User, UserStatus
from app.batches import service as batches_service
from app.batches.models import Batch, BatchStatus
from app.core.config import Settings
from app.core.security import PasswordHasher
from app.core.types import utcnow
from app.signing.engine import validate_pdf
from app.signing.models import Signature
from tests.certificates.pki import Issued
from tests.factories import (
    assert_problem,
    audit_events,
    bearer,
    login,
    make_role,
    make_user,
)
from tests.keys import asn1_of
from tests.license.conftest import issuer, public_key_text
from tests.pdfs import image_xobjects, make_pdf, signature_widget, stamp_image
from tests.signing.test_sign_api import (
    DOCS,
    Signer,
    alice,
    ca,
    content,
    licensed,
    upload,
)

__all__ = ["alice", "ca", "issuer", "licensed"]  # fixtures shared with test_sign_api

BATCHES = "/api/v1/batches"


@pytest.fixture
def settings(
    settings: Settings, issuer: Ed25519PrivateKey, request: pytest.FixtureRequest
) -> Settings:
    """Overridable per test: `@pytest.mark.parametrize("settings", [{...}], indirect=True)`."""
    overrides: dict[str, Any] = getattr(request, "param", {})
    return settings.model_copy(
        update={"license_public_key": public_key_text(issuer), **overrides}
    )


@pytest.fixture
def bob(
    client: TestClient,
    session_factory: sessionmaker[Session],
    hasher: PasswordHasher,
) -> dict[str, str]:
    return bearer(
        login(client, make_user(session_factory, hasher, username="bob"))[
            "access_token"
        ]
    )


def create_batch(
    client: TestClient, signer: Signer, document_ids: list[str], **options: Any
) -> Any:
    return client.post(
        BATCHES,
        json={
            "document_ids": document_ids,
            "certificate_id": signer.certificate_id,
            **options,
        },
        headers=signer.headers,
    )


def completed_batch(client: TestClient, headers: dict[str, str], location: str) -> Any:
    """The batch once the background processor has completed it (or as it is after 60 s)."""
    deadline = time.monotonic() + 60
    while True:
        batch = client.get(location, headers=headers).json()
        if batch["status"] == "completed" or time.monotonic() > deadline:
            return batch
        time.sleep(0.2)


def assert_valid_signature(
    client: TestClient, signer: Signer, ca: Issued, document_id: str, count: int = 1
) -> None:
    reports = validate_pdf(
        io.BytesIO(content(client, signer.headers, document_id)),
        trust_roots=[asn1_of(ca)],
        allow_fetching=False,
    )
    assert len(reports) == count
    assert all(r.bottom_line for r in reports)


def test_small_batch_is_signed_at_once_and_bad_documents_fail_alone(
    client: TestClient,
    alice: Signer,
    bob: dict[str, str],
    ca: Issued,
    session_factory: sessionmaker[Session],
) -> None:
    first, second = upload(client, alice.headers), upload(client, alice.headers)
    already = upload(client, alice.headers)
    presigned = client.post(
        f"{DOCS}/{already['id']}/sign",
        json={"certificate_id": alice.certificate_id, "field_name": "Approval"},
        headers=alice.headers,
    )
    assert presigned.status_code == 201, presigned.text
    bobs = upload(client, bob)
    ids = [first["id"], bobs["id"], already["id"], second["id"]]

    response = create_batch(client, alice, ids, field_name="Approval", reason="Batch")

    assert response.status_code == 201, response.text
    batch = response.json()
    assert response.headers["location"] == f"{BATCHES}/{batch['id']}"
    assert (batch["status"], batch["total"], batch["succeeded"], batch["failed"]) == (
        "completed",
        4,
        2,
        2,
    )
    assert batch["pending"] == 0
    assert batch["started_at"]
    assert batch["finished_at"]
    items = batch["items"]
    assert [(i["position"], i["document_id"], i["status"]) for i in items] == [
        (1, first["id"], "signed"),
        (2, bobs["id"], "failed"),
        (3, already["id"], "failed"),
        (4, second["id"], "signed"),
    ]
    assert [i["error_code"] for i in items] == [
        None,
        "document_not_found",
        "signing_refused",
        None,
    ]
    assert "already signed" in items[2]["error_detail"]
    for item in (items[0], items[3]):
        assert_valid_signature(client, alice, ca, item["document_id"])
        [signature] = client.get(
            f"{DOCS}/{item['document_id']}/signatures", headers=alice.headers
        ).json()
        assert (signature["id"], signature["reason"], signature["field_name"]) == (
            item["signature_id"],
            "Batch",
            "Approval",
        )
    # the refused document is exactly as it was: one signature, one version more
    assert_valid_signature(client, alice, ca, already["id"])
    assert client.get(f"{BATCHES}/{batch['id']}", headers=alice.headers).json() == batch

    [created] = audit_events(session_factory, "batch.created")
    assert created.details["total"] == 4
    [completed] = audit_events(session_factory, "batch.completed")
    assert completed.details == {"total": 4, "succeeded": 2, "failed": 2}
    assert len(audit_events(session_factory, "document.signed")) == 3
    [sign_failed] = audit_events(session_factory, "document.sign_failed")
    assert sign_failed.resource_id == already["id"]
    failures = audit_events(session_factory, "batch.item_failed")
    assert [f.details["code"] for f in failures] == [
        "document_not_found",
        "signing_refused",
    ]


@pytest.mark.parametrize("settings", [{"batch_sync_max": 2}], indirect=True)
def test_large_batch_is_accepted_and_signed_in_the_background(
    client: TestClient, alice: Signer, ca: Issued
) -> None:
    documents = [upload(client, alice.headers)["id"] for _ in range(4)]

    response = create_batch(client, alice, documents, level="B-B")

    assert response.status_code == 202, response.text
    accepted = response.json()
    assert (accepted["status"], accepted["total"], accepted["pending"]) == (
        "pending",
        4,
        4,
    )
    location = response.headers["location"]
    assert location == f"{BATCHES}/{accepted['id']}"
    batch = completed_batch(client, alice.headers, location)
    assert (batch["status"], batch["succeeded"], batch["failed"]) == (
        "completed",
        4,
        0,
    )
    assert [i["status"] for i in batch["items"]] == ["signed"] * 4
    for document_id in documents:
        assert_valid_signature(client, alice, ca, document_id)
    listed = client.get(BATCHES, headers=alice.headers).json()
    assert [b["id"] for b in listed["data"]] == [accepted["id"]]
    assert "items" not in listed["data"][0]


def test_batch_needs_the_batch_licence_feature(
    client: TestClient,
    alice: Signer,
    licensed: Callable[..., None],
    session_factory: sessionmaker[Session],
) -> None:
    licensed(features=("ltv",))
    document = upload(client, alice.headers)

    response = create_batch(client, alice, [document["id"]])

    assert_problem(response, 403, "license_feature_missing")
    assert client.get(BATCHES, headers=alice.headers).json()["total"] == 0
    assert audit_events(session_factory, "batch.created") == []
    assert (
        client.get(f"{DOCS}/{document['id']}", headers=alice.headers).json()[
            "version_count"
        ]
        == 1
    )


@pytest.mark.parametrize(
    "document_ids",
    [
        [],
        ["same", "same"],
        [str(uuid.uuid4()) for _ in range(1001)],
    ],
    ids=["empty", "duplicates", "over-1000"],
)
def test_invalid_document_lists_are_422(
    client: TestClient, alice: Signer, document_ids: list[str]
) -> None:
    same = str(uuid.uuid4())
    ids = [same if i == "same" else i for i in document_ids]

    response = create_batch(client, alice, ids)

    body = assert_problem(response, 422, "validation_failed")
    assert [p["name"] for p in body["invalid_params"]] == ["document_ids"]
    assert client.get(BATCHES, headers=alice.headers).json()["total"] == 0


def test_only_the_owner_and_administrators_see_a_batch(
    client: TestClient,
    alice: Signer,
    bob: dict[str, str],
    admin_headers: dict[str, str],
) -> None:
    document = upload(client, alice.headers)
    batch = create_batch(client, alice, [document["id"]]).json()

    assert_problem(
        client.get(f"{BATCHES}/{batch['id']}", headers=bob), 404, "batch_not_found"
    )
    assert client.get(BATCHES, headers=bob).json()["total"] == 0
    seen = client.get(f"{BATCHES}/{batch['id']}", headers=admin_headers)
    assert seen.status_code == 200
    assert seen.json()["owner_name"] == "alice"
    assert_problem(
        client.get(f"{BATCHES}/{uuid.uuid4()}", headers=alice.headers),
        404,
        "batch_not_found",
    )


def test_idempotency_key_returns_the_first_batch(
    client: TestClient, alice: Signer, session_factory: sessionmaker[Session]
) -> None:
    document = upload(client, alice.headers)
    body = {"document_ids": [document["id"]], "certificate_id": alice.certificate_id}
    headers = {**alice.headers, "Idempotency-Key": "batch-1"}

    first = client.post(BATCHES, json=body, headers=headers)
    again = client.post(BATCHES, json=body, headers=headers)
    other = client.post(BATCHES, json={**body, "reason": "Different"}, headers=headers)

    assert (first.status_code, again.status_code) == (201, 201)
    assert again.json() == first.json()
    assert_problem(other, 409, "idempotency_key_reused")
    assert len(audit_events(session_factory, "document.signed")) == 1


@pytest.mark.parametrize(
    "settings", [{"batch_sync_max": 0, "background_in_process": False}], indirect=True
)
def test_stale_running_batch_is_resumed_without_signing_again(
    client: TestClient,
    app: FastAPI,
    alice: Signer,
    ca: Issued,
    session_factory: sessionmaker[Session],
) -> None:
    documents = [upload(client, alice.headers)["id"] for _ in range(3)]
    accepted = create_batch(client, alice, documents)
    assert accepted.status_code == 202
    batch_id = uuid.UUID(accepted.json()["id"])
    factory: sessionmaker[Session] = app.state.sessionmaker
    state = app.state

    def process(*, stop_after: int | None = None) -> uuid.UUID | None:
        calls = iter(range(10_000))
        return batches_service.process_next_batch(
            factory,
            vault=state.vault,
            blobs=state.blobs,
            settings=state.settings,
            trust_roots=state.trust_roots,
            should_stop=lambda: stop_after is not None and next(calls) >= stop_after,
        )

    # one processor signs the first document, then stops (and releases the batch)
    assert process(stop_after=1) == batch_id
    # ... as if it had crashed instead: still "running", heartbeat fresh, then stale
    with factory.begin() as session:
        session.execute(
            update(Batch)
            .where(Batch.id == batch_id)
            .values(
                status=BatchStatus.RUNNING,
                claimed_by="crashed-host:1:1",
                heartbeat_at=utcnow(),
            )
        )
    assert process() is None  # a live claim is left alone
    with factory.begin() as session:
        session.execute(
            update(Batch)
            .where(Batch.id == batch_id)
            .values(heartbeat_at=utcnow() - timedelta(minutes=10))
        )

    assert process() == batch_id

    batch = client.get(f"{BATCHES}/{batch_id}", headers=alice.headers).json()
    assert (batch["status"], batch["succeeded"], batch["failed"]) == (
        "completed",
        3,
        0,
    )
    for document_id in documents:
        assert_valid_signature(client, alice, ca, document_id)
        version_count = client.get(
            f"{DOCS}/{document_id}", headers=alice.headers
        ).json()["version_count"]
        assert version_count == 2
    with session_factory() as session:
        assert session.scalar(select(func.count()).select_from(Signature)) == 3
    assert len(audit_events(session_factory, "document.signed")) == 3
    assert len(audit_events(session_factory, "batch.completed")) == 1
    assert process() is None


@pytest.mark.parametrize(
    "settings", [{"batch_sync_max": 0, "background_in_process": False}], indirect=True
)
def test_items_fail_when_the_owner_was_disabled_meanwhile(
    client: TestClient,
    app: FastAPI,
    alice: Signer,
    admin_headers: dict[str, str],
) -> None:
    document = upload(client, alice.headers)
    batch_id = create_batch(client, alice, [document["id"]]).json()["id"]
    state = app.state
    with state.sessionmaker.begin() as session:
        session.get_one(User, alice.credentials.user_id).status = UserStatus.DISABLED

    batches_service.process_next_batch(
        state.sessionmaker,
        vault=state.vault,
        blobs=state.blobs,
        settings=state.settings,
        trust_roots=state.trust_roots,
    )

    batch = client.get(f"{BATCHES}/{batch_id}", headers=admin_headers).json()
    assert (batch["status"], batch["failed"]) == ("completed", 1)
    assert batch["items"][0]["error_code"] == "account_disabled"
    assert (
        client.get(f"{DOCS}/{document['id']}", headers=admin_headers).json()[
            "version_count"
        ]
        == 1
    )


@pytest.mark.parametrize(
    "settings", [{"batch_sync_max": 0, "background_in_process": False}], indirect=True
)
def test_two_processors_at_once_each_take_a_different_batch(
    client: TestClient,
    app: FastAPI,
    alice: Signer,
    session_factory: sessionmaker[Session],
) -> None:
    batch_ids = {
        create_batch(
            client, alice, [upload(client, alice.headers)["id"] for _ in range(2)]
        ).json()["id"]
        for _ in range(2)
    }
    state = app.state
    claimed: list[uuid.UUID | None] = []

    def work() -> None:
        claimed.append(
            batches_service.process_next_batch(
                state.sessionmaker,
                vault=state.vault,
                blobs=state.blobs,
                settings=state.settings,
                trust_roots=state.trust_roots,
            )
        )

    threads = [threading.Thread(target=work) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)

    assert {str(c) for c in claimed} == batch_ids
    with session_factory() as session:
        assert session.scalar(select(func.count()).select_from(Signature)) == 4
    assert len(audit_events(session_factory, "batch.completed")) == 2


def post_files(
    client: TestClient,
    headers: dict[str, str],
    files: list[tuple[str, bytes]],
    **options: Any,
) -> Any:
    return client.post(
        BATCHES,
        files=[("files", (name, data, "application/pdf")) for name, data in files],
        data={"options": json.dumps(options)},
        headers=headers,
    )


@pytest.mark.parametrize("settings", [{"max_upload_bytes": 4096}], indirect=True)
def test_uploaded_files_become_documents_and_refused_files_fail_alone(
    client: TestClient,
    alice: Signer,
    ca: Issued,
    session_factory: sessionmaker[Session],
) -> None:
    stored = upload(client, alice.headers)
    files = [
        ("good.pdf", make_pdf(text="first")),
        ("notes.txt", b"not a PDF at all"),
        ("broken.pdf", b"%PDF-1.7\nthis is no PDF body"),
        ("locked.pdf", make_pdf(password="secret")),
        ("huge.pdf", make_pdf(pages=40)),  # over the 4 KB per-document limit
        ("empty.pdf", b""),
        ("second.pdf", make_pdf(text="second")),
    ]

    response = post_files(
        client,
        alice.headers,
        files,
        document_ids=[stored["id"]],
        certificate_id=alice.certificate_id,
        reason="Batch",
    )

    assert response.status_code == 201, response.text
    batch = response.json()
    assert (batch["status"], batch["total"], batch["succeeded"], batch["failed"]) == (
        "completed",
        8,
        3,
        5,
    )
    items = batch["items"]
    assert [(i["position"], i["filename"], i["status"], i["error_code"]) for i in items] == [
        (1, None, "signed", None),
        (2, "good.pdf", "signed", None),
        (3, "notes.txt", "failed", "not_a_pdf"),
        (4, "broken.pdf", "failed", "pdf_unreadable"),
        (5, "locked.pdf", "failed", "pdf_encrypted"),
        (6, "huge.pdf", "failed", "payload_too_large"),
        (7, "empty.pdf", "failed", "empty_upload"),
        (8, "second.pdf", "signed", None),
    ]  # fmt: skip
    assert items[0]["document_id"] == stored["id"]
    assert [i["document_id"] is None for i in items[2:7]] == [True] * 5
    for item in (items[0], items[1], items[7]):
        assert_valid_signature(client, alice, ca, item["document_id"])
    uploaded = client.get(f"{DOCS}/{items[1]['document_id']}", headers=alice.headers)
    assert (uploaded.json()["title"], uploaded.json()["version_count"]) == ("good", 2)
    assert (
        content(client, alice.headers, items[7]["document_id"], "original")
        == (files[6][1])
    )
    # only the two good files were stored
    assert client.get(DOCS, headers=alice.headers).json()["total"] == 3
    assert len(audit_events(session_factory, "document.uploaded")) == 3
    failures = audit_events(session_factory, "batch.item_failed")
    assert [(f.details["filename"], f.details["code"]) for f in failures] == [
        ("notes.txt", "not_a_pdf"),
        ("broken.pdf", "pdf_unreadable"),
        ("locked.pdf", "pdf_encrypted"),
        ("huge.pdf", "payload_too_large"),
        ("empty.pdf", "empty_upload"),
    ]
    [created] = audit_events(session_factory, "batch.created")
    assert (created.details["total"], created.details["uploads"]) == (8, 7)


@pytest.mark.parametrize("settings", [{"batch_sync_max": 1}], indirect=True)
def test_large_batch_of_uploads_is_signed_in_the_background(
    client: TestClient, alice: Signer, ca: Issued
) -> None:
    files = [(f"doc{n}.pdf", make_pdf(text=f"doc {n}")) for n in range(3)]

    response = post_files(
        client, alice.headers, files, certificate_id=alice.certificate_id
    )

    assert response.status_code == 202, response.text
    location = response.headers["location"]
    batch = completed_batch(client, alice.headers, location)
    assert [(i["filename"], i["status"]) for i in batch["items"]] == [
        ("doc0.pdf", "signed"),
        ("doc1.pdf", "signed"),
        ("doc2.pdf", "signed"),
    ]
    for item in batch["items"]:
        assert_valid_signature(client, alice, ca, item["document_id"])


def test_malformed_batch_requests_are_refused_whole(
    client: TestClient,
    alice: Signer,
    session_factory: sessionmaker[Session],
    hasher: PasswordHasher,
) -> None:
    pdf = [("a.pdf", make_pdf())]
    no_documents = post_files(
        client, alice.headers, [], certificate_id=alice.certificate_id
    )
    body = assert_problem(no_documents, 422, "validation_failed")
    assert [p["name"] for p in body["invalid_params"]] == ["document_ids"]
    bad_options = post_files(client, alice.headers, pdf, level="B-X")
    body = assert_problem(bad_options, 422, "validation_failed")
    assert [p["name"] for p in body["invalid_params"]] == ["options.level"]
    bad_image = post_files(
        client,
        alice.headers,
        pdf,
        certificate_id=alice.certificate_id,
        appearance={
            "page": 1,
            "box": [0, 0, 200, 80],
            "image_base64": "bm90IGFuIGltYWdl",
        },
    )
    assert_problem(bad_image, 422, "appearance_image_invalid")
    assert_problem(
        client.post(BATCHES, content=b"<batch/>", headers={**alice.headers, "Content-Type": "application/xml"}),
        415,
        "unsupported_media_type",
    )  # fmt: skip
    make_role(
        session_factory,
        name="sign-only",
        entitlements=["documents:read", "documents:sign"],
    )
    signs_only = bearer(
        login(
            client,
            make_user(session_factory, hasher, username="sam", roles=("sign-only",)),
        )["access_token"]
    )
    assert_problem(
        post_files(client, signs_only, pdf, certificate_id=alice.certificate_id),
        403,
        "forbidden",
    )
    assert client.get(BATCHES, headers=alice.headers).json()["total"] == 0
    assert client.get(DOCS, headers=alice.headers).json()["total"] == 0


@pytest.mark.parametrize("settings", [{"batch_max_upload_bytes": 8192}], indirect=True)
def test_batch_body_over_its_own_limit_is_413(
    client: TestClient, alice: Signer
) -> None:
    files = [(f"doc{n}.pdf", make_pdf(pages=3)) for n in range(4)]  # ~12 KB together
    response = post_files(
        client, alice.headers, files, certificate_id=alice.certificate_id
    )
    body = assert_problem(response, 413, "payload_too_large")
    assert "SIGNVAULT_BATCH_MAX_UPLOAD_BYTES" in body["detail"]
    assert client.get(DOCS, headers=alice.headers).json()["total"] == 0


def test_idempotency_key_with_uploads_compares_the_files(
    client: TestClient, alice: Signer, session_factory: sessionmaker[Session]
) -> None:
    headers = {**alice.headers, "Idempotency-Key": "upload-batch-1"}
    files = [("a.pdf", make_pdf(text="a"))]

    first = post_files(client, headers, files, certificate_id=alice.certificate_id)
    again = post_files(client, headers, files, certificate_id=alice.certificate_id)
    other = post_files(
        client,
        headers,
        [("a.pdf", make_pdf(text="other"))],
        certificate_id=alice.certificate_id,
    )

    assert (first.status_code, again.status_code) == (201, 201)
    assert again.json() == first.json()
    assert_problem(other, 409, "idempotency_key_reused")
    assert len(audit_events(session_factory, "document.uploaded")) == 1
    assert len(audit_events(session_factory, "document.signed")) == 1


def test_openapi_documents_both_batch_bodies(client: TestClient) -> None:
    schema = client.get("/openapi.json").json()
    body = schema["paths"][BATCHES]["post"]["requestBody"]["content"]
    assert set(body) == {"application/json", "multipart/form-data"}
    assert "document_ids" in body["application/json"]["schema"]["properties"]
    assert "files" in body["multipart/form-data"]["schema"]["properties"]
    refs = re.findall(r'"\$ref": "#/components/schemas/([^"]+)"', json.dumps(body))
    assert refs
    assert set(refs) <= set(schema["components"]["schemas"])


def test_batch_with_an_appearance_image_stamps_every_document(
    client: TestClient, alice: Signer, ca: Issued
) -> None:
    image = stamp_image()
    documents = [upload(client, alice.headers)["id"] for _ in range(2)]

    response = create_batch(
        client,
        alice,
        documents,
        field_name="Approval",
        appearance={
            "page": 1,
            "box": [40, 40, 300, 120],
            "image_base64": base64.b64encode(image).decode(),
        },
    )

    assert response.status_code == 201, response.text
    batch = response.json()
    assert batch["succeeded"] == 2
    # read back by digest, not as 1 MB of base64 in every read
    assert batch["options"]["appearance"] == {
        "page": 1,
        "box": [40.0, 40.0, 300.0, 120.0],
        "text": None,
        "image_sha256": hashlib.sha256(image).hexdigest(),
    }
    for document_id in documents:
        assert_valid_signature(client, alice, ca, document_id)
        widget = signature_widget(
            content(client, alice.headers, document_id), 1, "Approval"
        )
        assert len(image_xobjects(widget["/AP"]["/N"])) == 1
