"""Signing over HTTP with vault certificates: records, versions, refusals that change nothing, retries."""

import base64
import io
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from app.core.config import Settings
from app.core.security import PasswordHasher
from app.main import create_app
from app.signing.engine import validate_pdf
from app.signing.models import Signature
from tests.certificates.conftest import import_signer
from tests.certificates.pki import Issued, make_ca, make_signer
from tests.factories import (
    Credentials,
    assert_problem,
    audit_events,
    bearer,
    login,
    make_user,
    stored_blobs,
)
from tests.keys import asn1_of
from tests.license.conftest import issuer, make_license, public_key_text
from tests.pdfs import (
    image_xobjects,
    make_pdf,
    signature_widget,
    stamp_image,
    stamp_lines,
)
from tests.pki import TestPki, running_pki

DOCS = "/api/v1/documents"


__all__ = ["issuer"]  # the licence issuer fixture, shared from tests/license


@pytest.fixture(scope="module")
def ca() -> Issued:
    return make_ca()


@pytest.fixture
def settings(settings: Settings, issuer: Ed25519PrivateKey) -> Settings:
    return settings.model_copy(update={"license_public_key": public_key_text(issuer)})


@dataclass
class Signer:
    credentials: Credentials
    headers: dict[str, str]
    certificate_id: str


def enrol_signer(
    client: TestClient,
    admin_headers: dict[str, str],
    user: Credentials,
    ca: Issued,
    name: str,
) -> Signer:
    certificate = import_signer(client, admin_headers, make_signer(ca, cn=name), ca)
    assigned = client.post(
        f"/api/v1/certificates/{certificate['id']}/assignments",
        json={"user_id": str(user.user_id)},
        headers=admin_headers,
    )
    assert assigned.status_code == 201, assigned.text
    return Signer(user, bearer(login(client, user)["access_token"]), certificate["id"])


@pytest.fixture
def alice(
    client: TestClient,
    admin_headers: dict[str, str],
    session_factory: sessionmaker[Session],
    hasher: PasswordHasher,
    ca: Issued,
) -> Signer:
    return enrol_signer(
        client,
        admin_headers,
        make_user(session_factory, hasher, username="alice"),
        ca,
        "Alice",
    )


def upload(
    client: TestClient, headers: dict[str, str], pdf: bytes | None = None
) -> dict[str, Any]:
    response = client.post(
        DOCS,
        files={"file": ("doc.pdf", pdf or make_pdf(pages=2), "application/pdf")},
        headers=headers,
    )
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


def content(
    client: TestClient,
    headers: dict[str, str],
    document_id: str,
    version: str = "latest",
) -> bytes:
    return client.get(
        f"{DOCS}/{document_id}/content?version={version}", headers=headers
    ).content


def test_sign_creates_a_version_and_a_record(
    client: TestClient,
    alice: Signer,
    ca: Issued,
    session_factory: sessionmaker[Session],
) -> None:
    original = make_pdf(pages=2)
    document = upload(client, alice.headers, original)
    response = client.post(
        f"{DOCS}/{document['id']}/sign",
        json={
            "certificate_id": alice.certificate_id,
            "reason": "Approved",
            "location": "Ghent",
            "appearance": {"page": 2, "box": [40, 40, 240, 100]},
        },
        headers=alice.headers,
    )
    assert response.status_code == 201, response.text
    signature = response.json()
    assert (
        signature["version_number"],
        signature["level"],
        signature["signer_name"],
        signature["reason"],
    ) == (2, "B-B", "alice", "Approved")
    assert signature["sha256_before"] == document["sha256"]
    updated = client.get(f"{DOCS}/{document['id']}", headers=alice.headers).json()
    assert (updated["status"], updated["version_count"], updated["sha256"]) == (
        "signed",
        2,
        signature["sha256_after"],
    )
    assert content(client, alice.headers, document["id"], "original") == original
    [report] = validate_pdf(
        io.BytesIO(content(client, alice.headers, document["id"])),
        trust_roots=[asn1_of(ca)],
        allow_fetching=False,
    )
    assert (report.bottom_line, report.pades_level, report.field_name) == (
        True,
        "B-B",
        signature["field_name"],
    )
    listed = client.get(
        f"{DOCS}/{document['id']}/signatures", headers=alice.headers
    ).json()
    assert [s["id"] for s in listed] == [signature["id"]]
    [signed] = audit_events(session_factory, "document.signed")
    assert (
        signed.details["certificate_fingerprint"]
        == signature["certificate_fingerprint"]
    )
    assert len(audit_events(session_factory, "certificate.key_used")) == 1


def test_second_signature_keeps_the_first_valid(
    client: TestClient, admin_headers: dict[str, str], alice: Signer, ca: Issued
) -> None:
    document = upload(client, alice.headers)
    first = client.post(
        f"{DOCS}/{document['id']}/sign",
        json={"certificate_id": alice.certificate_id},
        headers=alice.headers,
    )
    assert first.status_code == 201
    # the administrator (who sees every document) signs second, with a certificate of its own
    admin_id = client.get("/api/v1/auth/me", headers=admin_headers).json()["id"]
    bob = import_signer(client, admin_headers, make_signer(ca, cn="Bob"), ca)
    client.post(
        f"/api/v1/certificates/{bob['id']}/assignments",
        json={"user_id": admin_id},
        headers=admin_headers,
    )
    second = client.post(
        f"{DOCS}/{document['id']}/sign",
        json={"certificate_id": bob["id"]},
        headers=admin_headers,
    )
    assert second.status_code == 201, second.text
    reports = validate_pdf(
        io.BytesIO(content(client, admin_headers, document["id"])),
        trust_roots=[asn1_of(ca)],
        allow_fetching=False,
    )
    assert [r.bottom_line for r in reports] == [True, True]
    assert [r.coverage for r in reports] == ["entire_revision", "entire_file"]
    assert [
        s["version_number"]
        for s in client.get(
            f"{DOCS}/{document['id']}/signatures", headers=admin_headers
        ).json()
    ] == [2, 3]


def appearance_with_image(image_base64: str) -> dict[str, Any]:
    return {
        "appearance": {
            "page": 1,
            "box": [40, 40, 300, 120],
            "image_base64": image_base64,
        }
    }


def test_stamp_text_names_the_certificate_holder_and_the_signing_account(
    client: TestClient, alice: Signer
) -> None:
    document = upload(client, alice.headers)
    response = client.post(
        f"{DOCS}/{document['id']}/sign",
        json={
            "certificate_id": alice.certificate_id,
            "field_name": "Stamp",
            "appearance": {
                "page": 1,
                "box": [40, 40, 300, 100],
                "text": "%(signer)s via %(user)s",
            },
        },
        headers=alice.headers,
    )
    assert response.status_code == 201, response.text
    widget = signature_widget(
        content(client, alice.headers, document["id"]), 1, "Stamp"
    )
    # The certificate's common name is "Alice"; the account signing with it is "alice".
    assert stamp_lines(widget["/AP"]["/N"]) == ["Alice via alice"]
    unknown = client.post(
        f"{DOCS}/{document['id']}/sign",
        json={
            "certificate_id": alice.certificate_id,
            "appearance": {"page": 1, "box": [40, 40, 300, 100], "text": "%(who)s"},
        },
        headers=alice.headers,
    )
    assert "%(user)s" in str(assert_problem(unknown, 422, "validation_failed"))


def test_appearance_image_is_drawn_in_the_signed_stamp(
    client: TestClient, alice: Signer, ca: Issued
) -> None:
    document = upload(client, alice.headers)
    response = client.post(
        f"{DOCS}/{document['id']}/sign",
        json={
            "certificate_id": alice.certificate_id,
            "field_name": "Approval",
            **appearance_with_image(base64.b64encode(stamp_image("JPEG")).decode()),
        },
        headers=alice.headers,
    )
    assert response.status_code == 201, response.text
    signed = content(client, alice.headers, document["id"])
    widget = signature_widget(signed, 1, "Approval")
    assert [float(v) for v in widget["/Rect"]] == [40.0, 40.0, 300.0, 120.0]
    assert len(image_xobjects(widget["/AP"]["/N"])) == 1
    [report] = validate_pdf(
        io.BytesIO(signed), trust_roots=[asn1_of(ca)], allow_fetching=False
    )
    assert report.bottom_line


def count_signatures(session_factory: sessionmaker[Session]) -> int:
    with session_factory() as session:
        return session.scalar(select(func.count()).select_from(Signature)) or 0


def assert_unchanged(
    client: TestClient,
    headers: dict[str, str],
    document: dict[str, Any],
    session_factory: sessionmaker[Session],
) -> None:
    now = client.get(f"{DOCS}/{document['id']}", headers=headers).json()
    assert (now["version_count"], now["sha256"], now["status"]) == (
        1,
        document["sha256"],
        "uploaded",
    )
    assert count_signatures(session_factory) == 0


@pytest.mark.parametrize(
    ("body", "status", "code"),
    [
        ({"level": "B-X"}, 422, "validation_failed"),
        ({"appearance": {"page": 7, "box": [0, 0, 10, 10]}}, 422, "signing_refused"),
        ({"level": "B-T"}, 422, "signing_refused"),
        ({"certify": "sometimes"}, 422, "validation_failed"),
        (appearance_with_image("not base64!"), 422, "appearance_image_invalid"),
        (
            appearance_with_image(base64.b64encode(b"%PDF-1.7 no image").decode()),
            422,
            "appearance_image_invalid",
        ),
        (
            appearance_with_image("A" * 1_500_000),
            422,
            "appearance_image_too_large",
        ),
    ],
    ids=[
        "unknown-level",
        "no-such-page",
        "b-t-without-tsa",
        "unknown-certify",
        "image-not-base64",
        "image-not-an-image",
        "image-too-large",
    ],
)
def test_refused_requests_change_nothing(
    client: TestClient,
    alice: Signer,
    session_factory: sessionmaker[Session],
    body: dict[str, Any],
    status: int,
    code: str,
) -> None:
    document = upload(client, alice.headers)
    response = client.post(
        f"{DOCS}/{document['id']}/sign",
        json={"certificate_id": alice.certificate_id, **body},
        headers=alice.headers,
    )
    assert_problem(response, status, code)
    assert_unchanged(client, alice.headers, document, session_factory)


def test_unassigned_disabled_and_revoked_certificates_are_refused(
    client: TestClient,
    admin_headers: dict[str, str],
    alice: Signer,
    ca: Issued,
    session_factory: sessionmaker[Session],
) -> None:
    document = upload(client, alice.headers)
    stranger = import_signer(client, admin_headers, make_signer(ca, cn="Stranger"), ca)
    refused = client.post(
        f"{DOCS}/{document['id']}/sign",
        json={"certificate_id": stranger["id"]},
        headers=alice.headers,
    )
    # Alice may not see it: answered as a missing certificate would be.
    assert_problem(refused, 404, "certificate_not_found")
    client.post(
        f"/api/v1/certificates/{alice.certificate_id}/disable", headers=admin_headers
    )
    assert (
        client.post(
            f"{DOCS}/{document['id']}/sign",
            json={"certificate_id": alice.certificate_id},
            headers=alice.headers,
        ).status_code
        == 409
    )
    client.post(
        f"/api/v1/certificates/{alice.certificate_id}/enable", headers=admin_headers
    )
    client.post(
        f"/api/v1/certificates/{alice.certificate_id}/revoke",
        json={},
        headers=admin_headers,
    )
    assert (
        client.post(
            f"{DOCS}/{document['id']}/sign",
            json={"certificate_id": alice.certificate_id},
            headers=alice.headers,
        ).status_code
        == 409
    )
    assert_unchanged(client, alice.headers, document, session_factory)
    assert len(audit_events(session_factory, "certificate.key_use_refused")) == 3


def test_without_certificate_or_default_is_422(
    client: TestClient, alice: Signer
) -> None:
    document = upload(client, alice.headers)
    assert_problem(
        client.post(f"{DOCS}/{document['id']}/sign", json={}, headers=alice.headers),
        422,
        "certificate_required",
    )


def test_idempotency_key_returns_the_first_result(
    client: TestClient, alice: Signer, session_factory: sessionmaker[Session]
) -> None:
    document = upload(client, alice.headers)
    headers = {**alice.headers, "Idempotency-Key": "job-42"}
    body = {"certificate_id": alice.certificate_id, "reason": "once"}
    first = client.post(f"{DOCS}/{document['id']}/sign", json=body, headers=headers)
    again = client.post(f"{DOCS}/{document['id']}/sign", json=body, headers=headers)
    assert (first.status_code, again.status_code) == (201, 201)
    assert first.json()["id"] == again.json()["id"]
    assert (
        client.get(f"{DOCS}/{document['id']}", headers=alice.headers).json()[
            "version_count"
        ]
        == 2
    )
    assert count_signatures(session_factory) == 1
    other = client.post(
        f"{DOCS}/{document['id']}/sign",
        json={**body, "reason": "twice"},
        headers=headers,
    )
    assert_problem(other, 409, "idempotency_key_reused")


def test_idempotency_key_names_the_request_as_sent_and_what_it_signs(
    client: TestClient,
    alice: Signer,
    admin_headers: dict[str, str],
    session_factory: sessionmaker[Session],
) -> None:
    document, other_document = (
        upload(client, alice.headers),
        upload(client, alice.headers),
    )
    headers = {**alice.headers, "Idempotency-Key": "job-43"}
    body = {"certificate_id": alice.certificate_id}
    first = client.post(f"{DOCS}/{document['id']}/sign", json=body, headers=headers)
    assert first.status_code == 201, first.text
    # An administrator changes what the body left to the settings: a retry is
    # still the same request, and gets the first result.
    changed = client.put(
        "/api/v1/settings/signing",
        json={"hash_algorithm": "sha512"},
        headers=admin_headers,
    )
    assert changed.status_code == 200, changed.text
    again = client.post(f"{DOCS}/{document['id']}/sign", json=body, headers=headers)
    assert (again.status_code, again.json()["id"]) == (201, first.json()["id"])
    # The same key for another document is another request.
    assert_problem(
        client.post(f"{DOCS}/{other_document['id']}/sign", json=body, headers=headers),
        409,
        "idempotency_key_reused",
    )
    assert count_signatures(session_factory) == 1


def test_one_shot_idempotency_key_covers_the_file(
    client: TestClient, alice: Signer, session_factory: sessionmaker[Session]
) -> None:
    headers = {**alice.headers, "Idempotency-Key": "upload-1"}
    options = {"options": f'{{"certificate_id": "{alice.certificate_id}"}}'}
    pdf = make_pdf(text="invoice 1")

    def one_shot(content: bytes) -> Any:
        return client.post(
            "/api/v1/sign",
            files={"file": ("in.pdf", content, "application/pdf")},
            data=options,
            headers=headers,
        )

    first, again = one_shot(pdf), one_shot(pdf)
    assert (first.status_code, again.status_code) == (200, 200)
    assert again.headers["x-signature-id"] == first.headers["x-signature-id"]
    assert again.content == first.content
    assert_problem(one_shot(make_pdf(text="invoice 2")), 409, "idempotency_key_reused")
    assert count_signatures(session_factory) == 1


def test_one_shot_sign_returns_the_signed_pdf_and_keeps_the_record(
    client: TestClient, alice: Signer, ca: Issued
) -> None:
    response = client.post(
        "/api/v1/sign",
        files={"file": ("in.pdf", make_pdf(), "application/pdf")},
        data={
            "options": f'{{"certificate_id": "{alice.certificate_id}", "reason": "one shot"}}'
        },
        headers=alice.headers,
    )
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/pdf"
    [report] = validate_pdf(
        io.BytesIO(response.content), trust_roots=[asn1_of(ca)], allow_fetching=False
    )
    assert report.bottom_line
    document_id = response.headers["x-document-id"]
    signatures = client.get(
        f"{DOCS}/{document_id}/signatures", headers=alice.headers
    ).json()
    assert [s["id"] for s in signatures] == [response.headers["x-signature-id"]]
    bad = client.post(
        "/api/v1/sign",
        files={"file": ("in.pdf", make_pdf(), "application/pdf")},
        data={"options": '{"level": 5}'},
        headers=alice.headers,
    )
    assert_problem(bad, 422, "validation_failed")


def one_shot(client: TestClient, headers: dict[str, str], fields: Any) -> Any:
    """POST /sign with a PDF and these form fields (a list value repeats one)."""
    return client.post(
        "/api/v1/sign",
        files={"file": ("in.pdf", make_pdf(pages=2), "application/pdf")},
        data=fields,
        headers=headers,
    )


def test_one_shot_sign_takes_each_option_as_its_own_form_field(
    settings: Settings,
    admin: Credentials,
    session_factory: sessionmaker[Session],
    hasher: PasswordHasher,
    ca: Issued,
    pki: TestPki,
) -> None:
    """As curl sends them: -F certificate_id=… -F level=B-T -F reason=… -F appearance='{…}'."""
    with signer_on_app(
        settings, admin, session_factory, hasher, ca, "fred", tsa_url=pki.tsa_url
    ) as (client, signer):
        response = one_shot(
            client,
            signer.headers,
            {
                "certificate_id": signer.certificate_id,
                "level": "B-T",
                "reason": "Approved by form",
                "location": "Ghent",
                "field_name": "FormSig",
                "appearance": '{"page": 2, "box": [40, 40, 240, 100]}',
                "title": "Invoice 7",
            },
        )
        assert response.status_code == 200, response.text
        document_id = response.headers["x-document-id"]
        [signature] = client.get(
            f"{DOCS}/{document_id}/signatures", headers=signer.headers
        ).json()
        document = client.get(f"{DOCS}/{document_id}", headers=signer.headers).json()
    assert (
        signature["level"],
        signature["reason"],
        signature["location"],
        signature["field_name"],
        signature["certificate_id"],
    ) == ("B-T", "Approved by form", "Ghent", "FormSig", signer.certificate_id)
    assert document["title"] == "Invoice 7"
    assert signature_widget(response.content, 2, "FormSig")["/Rect"] == [
        40,
        40,
        240,
        100,
    ]
    [report] = validate_pdf(
        io.BytesIO(response.content),
        trust_roots=[asn1_of(ca), pki.root],
        allow_fetching=False,
    )
    assert (report.bottom_line, report.pades_level) == (True, "B-T")


def test_one_shot_sign_refuses_a_form_field_it_does_not_take(
    client: TestClient, alice: Signer, session_factory: sessionmaker[Session]
) -> None:
    # Before, the stray field was ignored and the document signed with the options part.
    response = one_shot(
        client,
        alice.headers,
        {
            "options": f'{{"certificate_id": "{alice.certificate_id}"}}',
            "certificat_id": alice.certificate_id,
        },
    )
    body = assert_problem(response, 422, "validation_failed")
    assert "certificat_id" in body["detail"]
    [param] = body["invalid_params"]
    assert param["name"] == "certificat_id"
    assert "certificate_id" in param["reason"]  # the accepted fields are listed
    repeated = one_shot(
        client,
        alice.headers,
        {"certificate_id": alice.certificate_id, "level": ["B-B", "B-T"]},
    )
    assert [
        (p["name"], p["reason"])
        for p in assert_problem(repeated, 422, "validation_failed")["invalid_params"]
    ] == [("level", "given twice")]
    # The document upload names stray fields the same way.
    stray = client.post(
        DOCS,
        files={"file": ("doc.pdf", make_pdf(), "application/pdf")},
        data={"title": "x", "level": "B-T"},
        headers=alice.headers,
    )
    assert [
        p["name"]
        for p in assert_problem(stray, 422, "validation_failed")["invalid_params"]
    ] == ["level"]
    assert count_signatures(session_factory) == 0


def test_one_shot_sign_with_fields_and_options_together_is_422_naming_them(
    client: TestClient, alice: Signer
) -> None:
    response = one_shot(
        client,
        alice.headers,
        {
            "options": f'{{"certificate_id": "{alice.certificate_id}"}}',
            "level": "B-B",
            "reason": "twice",
        },
    )
    body = assert_problem(response, 422, "validation_failed")
    assert "not both" in body["detail"]
    assert sorted(p["name"] for p in body["invalid_params"]) == ["level", "reason"]


@pytest.mark.parametrize(
    ("fields", "named"),
    [
        ({"level": "B-X"}, ["level"]),
        ({"certificate_id": "not-a-uuid"}, ["certificate_id"]),
        ({"appearance": "page 1"}, ["appearance"]),
        ({"appearance": '{"page": 0, "box": [0, 0, 10, 10]}'}, ["appearance.page"]),
        ({"options": '{"level": "B-X"}'}, ["options.level"]),
    ],
)
def test_one_shot_sign_bad_form_value_is_422_naming_the_field(
    client: TestClient, alice: Signer, fields: dict[str, str], named: list[str]
) -> None:
    if "options" not in fields:
        fields = {"certificate_id": alice.certificate_id, **fields}
    body = assert_problem(
        one_shot(client, alice.headers, fields), 422, "validation_failed"
    )
    assert [p["name"] for p in body["invalid_params"]] == named


def test_openapi_describes_the_one_shot_form_fields(client: TestClient) -> None:
    operation = client.get("/openapi.json").json()["paths"]["/api/v1/sign"]["post"]
    form = operation["requestBody"]["content"]["multipart/form-data"]["schema"]
    assert set(form["properties"]) == {
        "file",
        "options",
        "title",
        "description",
        "external_reference",
        "certificate_id",
        "level",
        "reason",
        "location",
        "contact_info",
        "field_name",
        "certify",
        "profile",
        "appearance",
    }
    assert form["additionalProperties"] is False
    assert form["properties"]["level"]["enum"] == ["B-B", "B-T", "B-LT", "B-LTA"]
    assert form["properties"]["appearance"]["contentMediaType"] == "application/json"


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestPki]:
    with running_pki(tmp_path_factory.mktemp("pki")) as running:
        yield running


@contextmanager
def signer_on_app(
    settings: Settings,
    admin: Credentials,
    session_factory: sessionmaker[Session],
    hasher: PasswordHasher,
    ca: Issued,
    username: str,
    **changes: Any,
) -> Iterator[tuple[TestClient, Signer]]:
    """An app with changed settings, and a signer enrolled on it."""
    app = create_app(settings.model_copy(update=changes))
    try:
        with TestClient(app) as client:
            admin_headers = bearer(login(client, admin)["access_token"])
            user = make_user(session_factory, hasher, username=username)
            yield (
                client,
                enrol_signer(client, admin_headers, user, ca, username.title()),
            )
    finally:
        app.state.engine.dispose()


def sign_at_b_t(client: TestClient, signer: Signer, document: dict[str, Any]) -> Any:
    return client.post(
        f"{DOCS}/{document['id']}/sign",
        json={"certificate_id": signer.certificate_id, "level": "B-T"},
        headers=signer.headers,
    )


def test_b_t_through_the_api_uses_the_configured_tsa(
    settings: Settings,
    admin: Credentials,
    session_factory: sessionmaker[Session],
    hasher: PasswordHasher,
    ca: Issued,
    pki: TestPki,
) -> None:
    with signer_on_app(
        settings, admin, session_factory, hasher, ca, "tina", tsa_url=pki.tsa_url
    ) as (client, signer):
        document = upload(client, signer.headers)
        response = sign_at_b_t(client, signer, document)
        assert response.status_code == 201, response.text
        signed = content(client, signer.headers, document["id"])
    [report] = validate_pdf(
        io.BytesIO(signed), trust_roots=[asn1_of(ca), pki.root], allow_fetching=False
    )
    assert (report.pades_level, report.timestamp_valid) == ("B-T", True)


@contextmanager
def admin_with_pki_signer(
    settings: Settings, admin: Credentials, pki: TestPki, label: str
) -> Iterator[tuple[TestClient, dict[str, str], str]]:
    """An app using the PKI's TSA, and the administrator assigned the PKI's `label` certificate."""
    app = create_app(settings.model_copy(update={"tsa_url": pki.tsa_url}))
    try:
        with TestClient(app) as client:
            headers = bearer(login(client, admin)["access_token"])
            imported = client.post(
                "/api/v1/certificates/base64",
                json={
                    "pkcs12_base64": base64.b64encode(
                        pki.pkcs12(label, b"p12-pass")
                    ).decode(),
                    "password": "p12-pass",
                },
                headers=headers,
            )
            assert imported.status_code == 201, imported.text
            assigned = client.post(
                f"/api/v1/certificates/{imported.json()['id']}/assignments",
                json={"user_id": str(admin.user_id)},
                headers=headers,
            )
            assert assigned.status_code == 201, assigned.text
            yield client, headers, imported.json()["id"]
    finally:
        app.state.engine.dispose()


def test_long_term_signatures_through_the_api_reuse_revocation_data(
    settings: Settings, admin: Credentials, pki: TestPki
) -> None:
    with admin_with_pki_signer(settings, admin, pki, "bob") as (
        client,
        headers,
        certificate_id,
    ):
        ocsp = pki.requests_to("ocsp")
        signed = []
        for _ in range(2):
            document = upload(client, headers)
            response = client.post(
                f"{DOCS}/{document['id']}/sign",
                json={"certificate_id": certificate_id, "level": "B-LT"},
                headers=headers,
            )
            assert response.status_code == 201, response.text
            signed.append(content(client, headers, document["id"]))
    for pdf in signed:
        [report] = validate_pdf(
            io.BytesIO(pdf), trust_roots=[pki.root], allow_fetching=False
        )
        assert (report.pades_level, report.bottom_line) == ("B-LT", True)
    assert pki.requests_to("ocsp") - ocsp == 1


def test_signer_revoked_by_its_ca_is_refused_at_long_term_levels(
    settings: Settings,
    admin: Credentials,
    pki: TestPki,
    session_factory: sessionmaker[Session],
) -> None:
    with admin_with_pki_signer(settings, admin, pki, "revoked") as (
        client,
        headers,
        certificate_id,
    ):
        document = upload(client, headers)
        for _ in range(2):  # the second time from the revocation cache
            refused = client.post(
                f"{DOCS}/{document['id']}/sign",
                json={"certificate_id": certificate_id, "level": "B-LT"},
                headers=headers,
            )
            body = assert_problem(refused, 422, "signing_refused")
            assert body["reason_code"] == "signer_revoked"
        after = client.get(f"{DOCS}/{document['id']}", headers=headers).json()
    assert (after["version_count"], after["sha256"]) == (1, document["sha256"])
    assert count_signatures(session_factory) == 0


def test_unreachable_tsa_is_502_and_changes_nothing(
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
        assert_problem(sign_at_b_t(client, signer, document), 502, "tsa_unavailable")
        assert_unchanged(client, signer.headers, document, session_factory)
    [failed] = audit_events(session_factory, "document.sign_failed")
    assert failed.details["code"] == "tsa_unavailable"


def test_unknown_document_is_404(client: TestClient, alice: Signer) -> None:
    assert_problem(
        client.post(f"{DOCS}/{uuid.uuid4()}/sign", json={}, headers=alice.headers),
        404,
        "document_not_found",
    )


@pytest.fixture
def licensed(
    client: TestClient, admin_headers: dict[str, str], issuer: Ed25519PrivateKey
) -> Callable[..., None]:
    def install(**limits: Any) -> None:
        response = client.post(
            "/api/v1/license",
            content=make_license(issuer, **limits),
            headers={**admin_headers, "Content-Type": "application/octet-stream"},
        )
        assert response.status_code == 200, response.text

    return install


def test_signing_over_the_licence_limit_is_refused_and_stores_nothing(
    client: TestClient,
    app: FastAPI,
    alice: Signer,
    licensed: Callable[..., None],
    session_factory: sessionmaker[Session],
) -> None:
    licensed(signatures_total=1)
    first, second = upload(client, alice.headers), upload(client, alice.headers)
    assert (
        client.post(
            f"{DOCS}/{first['id']}/sign",
            json={"certificate_id": alice.certificate_id},
            headers=alice.headers,
        ).status_code
        == 201
    )
    files = stored_blobs(app)
    refused = client.post(
        f"{DOCS}/{second['id']}/sign",
        json={"certificate_id": alice.certificate_id},
        headers=alice.headers,
    )
    assert_problem(refused, 403, "license_limit_reached")
    now = client.get(f"{DOCS}/{second['id']}", headers=alice.headers).json()
    assert (now["version_count"], now["sha256"]) == (1, second["sha256"])
    assert stored_blobs(app) == files
    assert count_signatures(session_factory) == 1


def test_long_term_levels_need_the_ltv_feature(
    client: TestClient, alice: Signer, licensed: Callable[..., None]
) -> None:
    licensed(features=("batch",))
    document = upload(client, alice.headers)
    response = client.post(
        f"{DOCS}/{document['id']}/sign",
        json={"certificate_id": alice.certificate_id, "level": "B-LT"},
        headers=alice.headers,
    )
    assert_problem(response, 403, "license_feature_missing")


def test_document_audit_trail_lists_its_events_and_seals_the_pdf(
    client: TestClient, alice: Signer, admin_headers: dict[str, str]
) -> None:
    document = upload(client, alice.headers)
    signed = client.post(
        f"{DOCS}/{document['id']}/sign",
        json={"certificate_id": alice.certificate_id},
        headers=alice.headers,
    ).json()
    content(client, alice.headers, document["id"])
    trail = client.get(
        f"{DOCS}/{document['id']}/audit-trail", headers=alice.headers
    ).json()
    actions = [event["action"] for event in trail["events"]]
    assert actions == ["document.uploaded", "document.signed", "document.downloaded"]
    assert (
        trail["events"][1]["details"]["certificate_fingerprint"]
        == signed["certificate_fingerprint"]
    )
    pdf = client.get(
        f"{DOCS}/{document['id']}/audit-trail?format=pdf", headers=alice.headers
    )
    assert pdf.status_code == 200, pdf.text
    [seal] = validate_pdf(io.BytesIO(pdf.content), trust_roots=[], allow_fetching=False)
    assert (seal.intact, seal.valid, seal.coverage) == (True, True, "entire_file")
    other = client.get(f"{DOCS}/{uuid.uuid4()}/audit-trail", headers=alice.headers)
    assert_problem(other, 404, "document_not_found")


def test_signature_and_document_reports(
    client: TestClient, alice: Signer, admin_headers: dict[str, str]
) -> None:
    for _ in range(2):
        document = upload(client, alice.headers)
        assert (
            client.post(
                f"{DOCS}/{document['id']}/sign",
                json={"certificate_id": alice.certificate_id},
                headers=alice.headers,
            ).status_code
            == 201
        )
    upload(client, alice.headers)
    by_day = client.get(
        "/api/v1/reports/signatures?group_by=day", headers=admin_headers
    ).json()
    assert by_day["total"] == 2
    assert len(by_day["buckets"]) == 30
    assert by_day["buckets"][-1]["count"] == 2
    [by_user] = client.get(
        "/api/v1/reports/signatures?group_by=user", headers=admin_headers
    ).json()["buckets"]
    assert (by_user["count"], by_user["label"]) == (2, "alice")
    [by_certificate] = client.get(
        "/api/v1/reports/signatures?group_by=certificate", headers=admin_headers
    ).json()["buckets"]
    assert by_certificate["count"] == 2
    [by_department] = client.get(
        "/api/v1/reports/signatures?group_by=department", headers=admin_headers
    ).json()["buckets"]
    assert (by_department["key"], by_department["count"]) == ("none", 2)
    documents = client.get("/api/v1/reports/documents", headers=admin_headers).json()
    assert (documents["total"], documents["by_status"]) == (
        3,
        {"signed": 2, "uploaded": 1},
    )
    summary = client.get("/api/v1/reports/summary", headers=admin_headers).json()
    assert summary["signatures"] == {"this_month": 2, "total": 2}
    assert summary["certificates"]["active"] == 1
    assert summary["documents"] == 3
    assert summary["license"]["state"] == "evaluation"
    assert summary["license"]["signatures_total"]["used"] == 2
