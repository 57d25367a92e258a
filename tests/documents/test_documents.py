"""/api/v1/documents: upload, list, read, download, update, delete."""

import hashlib
import uuid
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from app.access.models import Department, User
from app.auth import service as auth_service
from app.core.security import PasswordHasher
from app.documents import service as documents_service
from app.documents.errors import ContentPurged
from app.documents.models import Document, DocumentStatus
from tests.factories import (
    Credentials,
    assert_problem,
    audit_events,
    bearer,
    login,
    make_user,
    stored_blobs,
)
from tests.pdfs import make_pdf

DOCS = "/api/v1/documents"


def upload(
    client: TestClient, headers: dict[str, str], pdf: bytes, **fields: str
) -> Any:
    return client.post(
        DOCS,
        files={"file": ("contract.pdf", pdf, "application/pdf")},
        data=fields,
        headers=headers,
    )


def count_documents(session_factory: sessionmaker[Session]) -> int:
    with session_factory() as session:
        return session.scalar(select(func.count()).select_from(Document)) or 0


def test_multipart_upload_stores_the_pdf(
    client: TestClient,
    admin_headers: dict[str, str],
    session_factory: sessionmaker[Session],
) -> None:
    pdf = make_pdf(pages=3)
    response = upload(
        client, admin_headers, pdf, title="Contract", external_reference="C-1"
    )
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["sha256"] == hashlib.sha256(pdf).hexdigest() == body["original_sha256"]
    assert (
        body["size"],
        body["page_count"],
        body["status"],
        body["version_count"],
    ) == (len(pdf), 3, "uploaded", 1)
    assert (body["title"], body["external_reference"], body["owner_name"]) == (
        "Contract",
        "C-1",
        "admin",
    )
    [event] = audit_events(session_factory, "document.uploaded")
    assert (event.resource_id, event.details["sha256"]) == (body["id"], body["sha256"])


def test_raw_pdf_body_upload_takes_metadata_from_the_query(
    client: TestClient, admin_headers: dict[str, str]
) -> None:
    pdf = make_pdf()
    response = client.post(
        f"{DOCS}?title=Raw%20one",
        content=pdf,
        headers={**admin_headers, "Content-Type": "application/pdf"},
    )
    assert response.status_code == 201, response.text
    assert response.json()["title"] == "Raw one"
    content = client.get(
        f"{DOCS}/{response.json()['id']}/content", headers=admin_headers
    )
    assert content.content == pdf
    assert content.headers["content-type"] == "application/pdf"


def test_title_defaults_to_the_file_name(
    client: TestClient, admin_headers: dict[str, str]
) -> None:
    assert upload(client, admin_headers, make_pdf()).json()["title"] == "contract"


@pytest.mark.parametrize(
    ("payload", "status", "code"),
    [
        (b"PK\x03\x04 this is a zip", 415, "not_a_pdf"),
        (b"%PDF-1.7\n garbage that is no pdf at all", 422, "pdf_unreadable"),
        (make_pdf(password="secret"), 422, "pdf_encrypted"),
    ],
)
def test_refused_uploads_store_nothing(
    client: TestClient,
    app: FastAPI,
    admin_headers: dict[str, str],
    session_factory: sessionmaker[Session],
    payload: bytes,
    status: int,
    code: str,
) -> None:
    assert_problem(upload(client, admin_headers, payload), status, code)
    assert count_documents(session_factory) == 0
    assert stored_blobs(app) == set()


def test_oversize_upload_is_413_and_stores_nothing(
    client: TestClient,
    app: FastAPI,
    admin_headers: dict[str, str],
    session_factory: sessionmaker[Session],
) -> None:
    too_big = make_pdf() + b"%" * app.state.settings.max_upload_bytes
    assert_problem(
        client.post(
            DOCS,
            content=too_big,
            headers={**admin_headers, "Content-Type": "application/pdf"},
        ),
        413,
        "payload_too_large",
    )
    assert count_documents(session_factory) == 0


def test_wrong_content_type_and_empty_bodies_are_refused(
    client: TestClient, admin_headers: dict[str, str]
) -> None:
    assert_problem(
        client.post(
            DOCS,
            content=b"hello",
            headers={**admin_headers, "Content-Type": "text/plain"},
        ),
        415,
        "unsupported_media_type",
    )
    assert_problem(
        client.post(
            DOCS,
            content=b"",
            headers={**admin_headers, "Content-Type": "application/pdf"},
        ),
        400,
        "empty_upload",
    )
    assert_problem(
        client.post(
            DOCS,
            data={"title": "x"},
            files={"other": ("a", b"b")},
            headers=admin_headers,
        ),
        400,
        "empty_upload",
    )


def test_documents_are_visible_to_owner_department_and_administrators(
    client: TestClient,
    admin_headers: dict[str, str],
    session_factory: sessionmaker[Session],
    hasher: PasswordHasher,
) -> None:
    with session_factory.begin() as session:
        sales = Department(name="Sales")
        session.add(sales)
        session.flush()
        sales_id = sales.id
    alice = make_user(session_factory, hasher, username="alice")
    bob = make_user(session_factory, hasher, username="bob")
    carol = make_user(session_factory, hasher, username="carol")
    with session_factory.begin() as session:
        for user_id in (alice.user_id, carol.user_id):
            session.get_one(User, user_id).department_id = sales_id
    alice_headers = bearer(login(client, alice)["access_token"])
    document = upload(client, alice_headers, make_pdf()).json()
    path = f"{DOCS}/{document['id']}"
    assert (
        client.get(
            path, headers=bearer(login(client, carol)["access_token"])
        ).status_code
        == 200
    )
    assert client.get(path, headers=admin_headers).status_code == 200
    bob_headers = bearer(login(client, bob)["access_token"])
    assert_problem(client.get(path, headers=bob_headers), 404, "document_not_found")
    assert client.get(DOCS, headers=bob_headers).json()["total"] == 0
    assert client.get(DOCS, headers=admin_headers).json()["total"] == 1


def test_list_filters(client: TestClient, admin_headers: dict[str, str]) -> None:
    first = upload(
        client,
        admin_headers,
        make_pdf(),
        title="Invoice March",
        external_reference="INV-3",
    ).json()
    upload(client, admin_headers, make_pdf(), title="Contract")
    by_title = client.get(f"{DOCS}?title_like=invoice", headers=admin_headers).json()
    assert [d["id"] for d in by_title["data"]] == [first["id"]]
    assert (
        client.get(f"{DOCS}?external_reference=INV-3", headers=admin_headers).json()[
            "total"
        ]
        == 1
    )
    assert (
        client.get(f"{DOCS}?status=signed", headers=admin_headers).json()["total"] == 0
    )
    assert (
        client.get(f"{DOCS}?status=uploaded&sort=title", headers=admin_headers).json()[
            "data"
        ][0]["title"]
        == "Contract"
    )
    future = "2999-01-01T00:00:00Z"
    assert (
        client.get(f"{DOCS}?created_from={future}", headers=admin_headers).json()[
            "total"
        ]
        == 0
    )


def test_update_metadata(
    client: TestClient,
    admin_headers: dict[str, str],
    session_factory: sessionmaker[Session],
) -> None:
    document = upload(client, admin_headers, make_pdf(), title="Old").json()
    response = client.patch(
        f"{DOCS}/{document['id']}",
        json={"title": "New", "description": "d"},
        headers=admin_headers,
    )
    assert (response.json()["title"], response.json()["description"]) == ("New", "d")
    [event] = audit_events(session_factory, "document.updated")
    assert event.details["before"]["title"] == "Old"


def test_download_versions_and_audit(
    client: TestClient,
    admin_headers: dict[str, str],
    session_factory: sessionmaker[Session],
) -> None:
    pdf = make_pdf()
    document = upload(client, admin_headers, pdf).json()
    original = client.get(
        f"{DOCS}/{document['id']}/content?version=original", headers=admin_headers
    )
    assert original.content == pdf
    assert original.headers["x-content-sha256"] == document["sha256"]
    assert_problem(
        client.get(f"{DOCS}/{document['id']}/content?version=7", headers=admin_headers),
        404,
        "version_not_found",
    )
    assert_problem(
        client.get(
            f"{DOCS}/{document['id']}/content?version=newest", headers=admin_headers
        ),
        404,
        "version_not_found",
    )
    versions = client.get(
        f"{DOCS}/{document['id']}/versions", headers=admin_headers
    ).json()
    assert [(v["number"], v["sha256"]) for v in versions] == [(1, document["sha256"])]
    assert len(audit_events(session_factory, "document.downloaded")) == 1


def test_delete_removes_content_for_good_and_keeps_the_audit(
    client: TestClient,
    app: FastAPI,
    admin_headers: dict[str, str],
    session_factory: sessionmaker[Session],
) -> None:
    document = upload(client, admin_headers, make_pdf()).json()
    assert len(stored_blobs(app)) == 1
    assert (
        client.delete(f"{DOCS}/{document['id']}", headers=admin_headers).status_code
        == 204
    )
    assert stored_blobs(app) == set()
    assert_problem(
        client.get(f"{DOCS}/{document['id']}", headers=admin_headers),
        404,
        "document_not_found",
    )
    assert [
        e.action for e in audit_events(session_factory, resource_id=document["id"])
    ] == ["document.uploaded", "document.deleted"]


def test_signer_cannot_delete(
    client: TestClient, session_factory: sessionmaker[Session], hasher: PasswordHasher
) -> None:
    signer = make_user(session_factory, hasher, username="sig")
    headers = bearer(login(client, signer)["access_token"])
    document = upload(client, headers, make_pdf()).json()
    assert_problem(
        client.delete(f"{DOCS}/{document['id']}", headers=headers), 403, "forbidden"
    )


def test_download_names_a_non_ascii_title_and_states_its_length(
    client: TestClient, admin_headers: dict[str, str]
) -> None:
    pdf = make_pdf()
    document = upload(client, admin_headers, pdf, title="Contrat signé — été").json()

    response = client.get(f"{DOCS}/{document['id']}/content", headers=admin_headers)

    assert response.status_code == 200
    assert response.content == pdf
    assert response.headers["content-length"] == str(len(pdf))
    assert response.headers["content-disposition"] == (
        "attachment; filename*=utf-8''Contrat%20sign%C3%A9%20%E2%80%94%20%C3%A9t%C3%A9-v1.pdf"
    )


def test_content_deleted_behind_the_servers_back_is_410_content_missing_and_audited(
    client: TestClient,
    app: FastAPI,
    admin_headers: dict[str, str],
    session_factory: sessionmaker[Session],
) -> None:
    document = upload(client, admin_headers, make_pdf()).json()
    app.state.blobs.delete_namespace(document["id"])  # not through SignVault

    download = client.get(f"{DOCS}/{document['id']}/content", headers=admin_headers)
    body = assert_problem(download, 410, "content_missing")
    assert document["id"] in body["detail"]
    assert "version 1" in body["detail"]
    assert_problem(
        client.post(f"{DOCS}/{document['id']}/verify", headers=admin_headers),
        410,
        "content_missing",
    )
    missing = audit_events(
        session_factory, "document.content_missing", resource_id=document["id"]
    )
    assert [(e.outcome, e.details["sha256"]) for e in missing] == [
        ("failure", document["sha256"]),
        ("failure", document["sha256"]),
    ]
    assert missing[0].details["version"] == 1
    # The refused download is not recorded as a download.
    assert audit_events(session_factory, "document.downloaded") == []


def test_content_purged_after_the_document_was_read_is_410_purged_not_missing(
    client: TestClient,
    app: FastAPI,
    admin_headers: dict[str, str],
    session_factory: sessionmaker[Session],
    admin: Credentials,
) -> None:
    """The retention purge may delete the files between a request's read and its open."""
    document = upload(client, admin_headers, make_pdf()).json()
    with session_factory() as session:
        principal = auth_service.background_principal(
            session, kind="user", principal_id=admin.user_id, scope=None, job="test"
        )
        read = session.get_one(Document, uuid.UUID(document["id"]))
        with session_factory.begin() as purge:
            purge.get_one(Document, read.id).status = DocumentStatus.PURGED
        app.state.blobs.delete_namespace(document["id"])

        with pytest.raises(ContentPurged):
            documents_service.open_content(
                session,
                principal,
                blobs=app.state.blobs,
                document_id=read.id,
                sha256=document["sha256"],
            )
    assert audit_events(session_factory, "document.content_missing") == []


@pytest.mark.parametrize(
    ("header", "first", "last"),
    [
        ("bytes=0-0", 0, 0),
        ("bytes=10-99", 10, 99),
        ("bytes=100-", 100, None),
        ("bytes=-25", -25, None),
        ("bytes=5-999999999", 5, None),  # past the end: up to the end
        ("bytes=-999999999", 0, None),  # a suffix longer than the content: all of it
    ],
)
def test_a_byte_range_is_206_with_its_content_range(
    client: TestClient,
    admin_headers: dict[str, str],
    header: str,
    first: int,
    last: int | None,
) -> None:
    pdf = make_pdf(pages=2)
    document = upload(client, admin_headers, pdf).json()

    response = client.get(
        f"{DOCS}/{document['id']}/content", headers={**admin_headers, "Range": header}
    )

    expected = pdf[first : None if last is None else last + 1]
    start = first % len(pdf) if first < 0 else first
    assert response.status_code == 206, response.text
    assert response.content == expected
    assert response.headers["content-length"] == str(len(expected))
    assert response.headers["content-range"] == (
        f"bytes {start}-{start + len(expected) - 1}/{len(pdf)}"
    )
    assert response.headers["etag"] == f'"{document["sha256"]}"'


@pytest.mark.parametrize(
    "header",
    ["bytes=0-1,5-9", "items=0-5", "bytes=9-2", "bytes=-", "bytes=a-b"],
)
def test_a_range_that_is_not_one_byte_range_is_ignored(
    client: TestClient, admin_headers: dict[str, str], header: str
) -> None:
    pdf = make_pdf()
    document = upload(client, admin_headers, pdf).json()

    response = client.get(
        f"{DOCS}/{document['id']}/content", headers={**admin_headers, "Range": header}
    )

    assert (response.status_code, response.content) == (200, pdf)
    assert response.headers["accept-ranges"] == "bytes"


def test_a_range_of_another_version_by_if_range_is_sent_whole(
    client: TestClient, admin_headers: dict[str, str]
) -> None:
    pdf = make_pdf()
    document = upload(client, admin_headers, pdf).json()
    url = f"{DOCS}/{document['id']}/content"
    headers = {**admin_headers, "Range": "bytes=0-9"}

    other = client.get(url, headers={**headers, "If-Range": '"' + "0" * 64 + '"'})
    same = client.get(url, headers={**headers, "If-Range": f'"{document["sha256"]}"'})

    assert (other.status_code, other.content) == (200, pdf)
    assert (same.status_code, same.content) == (206, pdf[:10])


@pytest.mark.parametrize("header", ["bytes=100000000-", "bytes=-0"])
def test_an_unsatisfiable_range_is_416_naming_the_size(
    client: TestClient, admin_headers: dict[str, str], header: str
) -> None:
    pdf = make_pdf()
    document = upload(client, admin_headers, pdf).json()

    response = client.get(
        f"{DOCS}/{document['id']}/content", headers={**admin_headers, "Range": header}
    )

    assert_problem(response, 416, "range_not_satisfiable")
    assert response.headers["content-range"] == f"bytes */{len(pdf)}"
