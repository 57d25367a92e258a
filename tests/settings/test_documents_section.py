"""The `documents` settings section over HTTP: the upload limit and the content retention purge."""

import uuid
from datetime import timedelta
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import update
from sqlalchemy.orm import Session, sessionmaker

from app.core.config import Settings
from app.core.types import utcnow
from app.documents.models import Document
from app.documents.retention import purge_expired_content
from tests.certificates.pki import Issued, make_ca
from tests.factories import assert_problem, audit_events
from tests.pdfs import make_pdf
from tests.signing.test_sign_api import DOCS, Signer, alice, upload

__all__ = ["alice"]  # the signer fixture, shared from tests/signing

SECTION = "/api/v1/settings/documents"


@pytest.fixture(scope="module")
def ca() -> Issued:
    return make_ca("Documents Test CA")


def put_documents(
    client: TestClient, headers: dict[str, str], **values: Any
) -> dict[str, Any]:
    response = client.put(SECTION, json=values, headers=headers)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def test_defaults_and_audited_change(
    client: TestClient,
    admin_headers: dict[str, str],
    session_factory: sessionmaker[Session],
) -> None:
    assert client.get(SECTION, headers=admin_headers).json() == {
        "max_upload_bytes": None,
        "content_retention_days": None,
    }
    put_documents(client, admin_headers, content_retention_days=30)
    assert client.get(SECTION, headers=admin_headers).json() == {
        "max_upload_bytes": None,
        "content_retention_days": 30,
    }
    [event] = audit_events(session_factory, "settings.updated", resource_id="documents")
    assert event.details == {
        "before": {"content_retention_days": None},
        "after": {"content_retention_days": 30},
    }


@pytest.mark.parametrize(
    ("values", "code"),
    [
        ({"max_upload_bytes": "cap + 1"}, "upload_limit_above_server_cap"),
        ({"max_upload_bytes": 100}, "validation_failed"),
        ({"content_retention_days": 0}, "validation_failed"),
        ({"keep": True}, "validation_failed"),
    ],
)
def test_invalid_values_are_422(
    client: TestClient,
    admin_headers: dict[str, str],
    settings: Settings,
    session_factory: sessionmaker[Session],
    values: dict[str, Any],
    code: str,
) -> None:
    if values.get("max_upload_bytes") == "cap + 1":
        values = {"max_upload_bytes": settings.max_upload_bytes + 1}
    assert_problem(client.put(SECTION, json=values, headers=admin_headers), 422, code)
    assert audit_events(session_factory, "settings.updated") == []


def test_a_lowered_upload_limit_is_413_on_upload_and_one_shot_sign(
    client: TestClient, admin_headers: dict[str, str], alice: Signer
) -> None:
    small, large = make_pdf(), make_pdf(pages=40, text="x" * 200)
    assert len(small) < 8192 < len(large)
    upload(client, alice.headers, large)
    put_documents(client, admin_headers, max_upload_bytes=8192)
    upload(client, alice.headers, small)
    refused = client.post(
        DOCS,
        files={"file": ("big.pdf", large, "application/pdf")},
        headers=alice.headers,
    )
    assert "8192" in assert_problem(refused, 413, "document_too_large")["detail"]
    raw = client.post(
        DOCS,
        content=large,
        headers={**alice.headers, "Content-Type": "application/pdf"},
    )
    assert_problem(raw, 413, "document_too_large")
    one_shot = client.post(
        "/api/v1/sign",
        files={"file": ("big.pdf", large, "application/pdf")},
        data={"options": f'{{"certificate_id": "{alice.certificate_id}"}}'},
        headers=alice.headers,
    )
    assert_problem(one_shot, 413, "document_too_large")
    listed = client.get(DOCS, headers=alice.headers).json()
    assert listed["total"] == 2


def age(session_factory: sessionmaker[Session], document_id: str, days: int) -> None:
    with session_factory.begin() as session:
        session.execute(
            update(Document)
            .where(Document.id == uuid.UUID(document_id))
            .values(updated_at=utcnow() - timedelta(days=days))
        )


def test_retention_purges_old_content_and_keeps_the_records(
    app: FastAPI,
    client: TestClient,
    admin_headers: dict[str, str],
    alice: Signer,
    session_factory: sessionmaker[Session],
) -> None:
    old, recent = upload(client, alice.headers), upload(client, alice.headers)
    signature = client.post(
        f"{DOCS}/{old['id']}/sign",
        json={"certificate_id": alice.certificate_id},
        headers=alice.headers,
    ).json()
    age(session_factory, old["id"], days=31)
    age(session_factory, recent["id"], days=29)
    blobs = app.state.blobs
    # Retention off (the default): nothing happens.
    assert purge_expired_content(session_factory, blobs) == 0
    assert audit_events(session_factory, "documents.content_purged") == []

    held_before = client.get("/api/v1/reports/documents", headers=admin_headers)
    put_documents(client, admin_headers, content_retention_days=30)
    assert purge_expired_content(session_factory, blobs) == 1
    held_after = client.get("/api/v1/reports/documents", headers=admin_headers)
    assert (
        held_after.json()["total_bytes"]
        == held_before.json()["total_bytes"]
        - (client.get(f"{DOCS}/{old['id']}", headers=alice.headers).json()["size"])
    )
    assert purge_expired_content(session_factory, blobs) == 0  # done once

    assert not blobs.exists(old["id"], old["sha256"])
    assert not blobs.exists(old["id"], signature["sha256_after"])
    assert blobs.exists(recent["id"], recent["sha256"])
    for version in ("latest", "original", "2"):
        gone = client.get(
            f"{DOCS}/{old['id']}/content?version={version}", headers=alice.headers
        )
        assert_problem(gone, 410, "document_content_purged")
    metadata = client.get(f"{DOCS}/{old['id']}", headers=alice.headers).json()
    assert (metadata["status"], metadata["version_count"]) == ("purged", 2)
    signatures = client.get(f"{DOCS}/{old['id']}/signatures", headers=alice.headers)
    assert [s["id"] for s in signatures.json()] == [signature["id"]]
    versions = client.get(f"{DOCS}/{old['id']}/versions", headers=alice.headers)
    assert [v["sha256"] for v in versions.json()] == [
        old["sha256"],
        signature["sha256_after"],
    ]
    assert_problem(
        client.post(
            f"{DOCS}/{old['id']}/sign",
            json={"certificate_id": alice.certificate_id},
            headers=alice.headers,
        ),
        410,
        "document_content_purged",
    )
    assert_problem(
        client.post(f"{DOCS}/{old['id']}/verify", headers=alice.headers),
        410,
        "document_content_purged",
    )
    [failed] = audit_events(session_factory, "document.sign_failed")
    assert failed.details["code"] == "document_content_purged"
    recent_content = client.get(f"{DOCS}/{recent['id']}/content", headers=alice.headers)
    assert recent_content.status_code == 200
    [purge] = audit_events(session_factory, "documents.content_purged")
    assert (purge.actor_kind, purge.details["count"]) == ("system", 1)
    assert purge.details["document_ids"] == [old["id"]]
    assert purge.details["retention_days"] == 30
    listed = client.get(DOCS, params={"status": "purged"}, headers=alice.headers).json()
    assert [d["id"] for d in listed["data"]] == [old["id"]]


def test_purge_runs_in_batches_until_done(
    app: FastAPI,
    client: TestClient,
    admin_headers: dict[str, str],
    alice: Signer,
    session_factory: sessionmaker[Session],
) -> None:
    documents = [upload(client, alice.headers) for _ in range(3)]
    put_documents(client, admin_headers, content_retention_days=1)
    later = utcnow() + timedelta(days=2)
    assert (
        purge_expired_content(session_factory, app.state.blobs, now=later, batch_size=2)
        == 3
    )
    purges = audit_events(session_factory, "documents.content_purged")
    assert [p.details["count"] for p in purges] == [2, 1]
    assert sorted(i for p in purges for i in p.details["document_ids"]) == sorted(
        d["id"] for d in documents
    )
