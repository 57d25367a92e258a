"""API clients sign: the README's "erp" client, its certificate, its department and its documents."""

import io
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from app.core.config import Settings
from app.core.security import PasswordHasher
from app.signing.engine import validate_pdf
from tests.certificates.conftest import import_signer
from tests.certificates.pki import Issued, make_signer
from tests.factories import (
    Credentials,
    assert_problem,
    audit_events,
    bearer,
    login,
    make_department,
    make_role,
    make_user,
)
from tests.independent import check_signed_pdf, missing_tools
from tests.keys import asn1_of, pem_of
from tests.license.conftest import issuer, public_key_text
from tests.pdfs import make_pdf, signature_widget, stamp_lines
from tests.signing.test_batches import BATCHES, completed_batch
from tests.signing.test_sign_api import DOCS, ca, content, upload

__all__ = ["ca", "issuer"]  # module fixtures shared with test_sign_api

CLIENTS = "/api/v1/clients"


@pytest.fixture
def settings(settings: Settings, issuer: Ed25519PrivateKey) -> Settings:
    return settings.model_copy(update={"license_public_key": public_key_text(issuer)})


@pytest.fixture
def finance_and_sales(
    session_factory: sessionmaker[Session],
) -> tuple[uuid.UUID, uuid.UUID]:
    return (
        make_department(session_factory, "Finance"),
        make_department(session_factory, "Sales"),
    )


@dataclass
class MachineClient:
    id: str
    client_id: str
    secret: str
    headers: dict[str, str]


def create_client(
    client: TestClient, headers: dict[str, str], **fields: Any
) -> dict[str, Any]:
    response = client.post(CLIENTS, json=fields, headers=headers)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


def client_token(
    client: TestClient, client_id: str, secret: str, scope: str | None = None
) -> dict[str, str]:
    form = {"grant_type": "client_credentials"} | ({"scope": scope} if scope else {})
    response = client.post("/api/v1/auth/token", data=form, auth=(client_id, secret))
    assert response.status_code == 200, response.text
    return bearer(response.json()["access_token"])


def readme_client(
    client: TestClient, admin_headers: dict[str, str], **extra: Any
) -> MachineClient:
    """The client README.md's first steps create, with the token they ask for."""
    created = create_client(
        client,
        admin_headers,
        name="erp",
        description="Signs invoices",
        entitlements=["documents:read", "documents:write", "documents:sign"],
        **extra,
    )
    headers = client_token(client, created["client_id"], created["client_secret"])
    return MachineClient(
        created["id"], created["client_id"], created["client_secret"], headers
    )


def certificate_for(
    client: TestClient,
    admin_headers: dict[str, str],
    ca: Issued,
    erp: MachineClient,
    cn: str = "ERP Invoicing Seal",
) -> str:
    certificate = import_signer(client, admin_headers, make_signer(ca, cn=cn), ca)
    assigned = client.post(
        f"/api/v1/certificates/{certificate['id']}/assignments",
        json={"client_id": erp.id},
        headers=admin_headers,
    )
    assert assigned.status_code == 201, assigned.text
    assert assigned.json()["client_id"] == erp.id
    made_default = client.put(
        f"{CLIENTS}/{erp.id}/default-certificate",
        json={"certificate_id": certificate["id"]},
        headers=admin_headers,
    )
    assert made_default.status_code == 200, made_default.text
    certificate_id: str = certificate["id"]
    return certificate_id


def assert_signed_by(
    client: TestClient, erp: MachineClient, document_id: str, ca: Issued, count: int
) -> bytes:
    signed = content(client, erp.headers, document_id)
    reports = validate_pdf(
        io.BytesIO(signed), trust_roots=[asn1_of(ca)], allow_fetching=False
    )
    assert len(reports) == count
    assert all(report.bottom_line for report in reports)
    signatures = client.get(
        f"{DOCS}/{document_id}/signatures", headers=erp.headers
    ).json()
    assert [
        (s["signer_kind"], s["signer_id"], s["signer_name"]) for s in signatures
    ] == [("client", erp.id, "erp")] * count
    return signed


def test_the_readme_client_signs_through_sign_documents_and_batches(
    client: TestClient,
    admin_headers: dict[str, str],
    ca: Issued,
    session_factory: sessionmaker[Session],
    tmp_path: Path,
) -> None:
    erp = readme_client(client, admin_headers)
    # Before it holds a certificate, it is told to name one, not that it may not sign.
    refused = client.post(
        "/api/v1/sign",
        files={"file": ("invoice.pdf", make_pdf(), "application/pdf")},
        headers=erp.headers,
    )
    assert_problem(refused, 422, "certificate_required")
    certificate_id = certificate_for(client, admin_headers, ca, erp)

    # 1. One shot, with the default certificate and options as form fields.
    one_shot = client.post(
        "/api/v1/sign",
        files={"file": ("invoice.pdf", make_pdf(pages=2), "application/pdf")},
        data={"reason": "Invoice 2026-001", "level": "B-B"},
        headers=erp.headers,
    )
    assert one_shot.status_code == 200, one_shot.text
    first = one_shot.headers["x-document-id"]
    signed = assert_signed_by(client, erp, first, ca, 1)
    assert signed == one_shot.content
    if not missing_tools():
        path = tmp_path / "invoice-signed.pdf"
        path.write_bytes(signed)
        independent = check_signed_pdf(path, [pem_of(ca)], tmp_path)
        assert (independent.pdfsig_valid, independent.pdfsig_trusted) == (
            [True],
            [True],
        )
        assert independent.openssl_ok == [True]

    # 2. Upload, then sign by id, naming the certificate.
    second = upload(client, erp.headers)["id"]
    signed_by_id = client.post(
        f"{DOCS}/{second}/sign",
        json={"certificate_id": certificate_id, "reason": "Invoice 2026-002"},
        headers=erp.headers,
    )
    assert signed_by_id.status_code == 201, signed_by_id.text
    assert_signed_by(client, erp, second, ca, 1)

    # 3. A batch with the default certificate.
    third, fourth = upload(client, erp.headers)["id"], upload(client, erp.headers)["id"]
    batch = client.post(
        BATCHES, json={"document_ids": [third, fourth]}, headers=erp.headers
    )
    assert batch.status_code in (200, 201, 202), batch.text
    done = completed_batch(client, erp.headers, f"{BATCHES}/{batch.json()['id']}")
    assert done["status"] == "completed", done
    for document_id in (third, fourth):
        assert_signed_by(client, erp, document_id, ca, 1)

    signed_events = audit_events(session_factory, "document.signed")
    assert len(signed_events) == 4
    assert {(e.actor_kind, e.actor_id, e.actor_name) for e in signed_events} == {
        ("client", erp.id, "erp")
    }
    key_uses = audit_events(session_factory, "certificate.key_used")
    assert {(e.actor_kind, e.actor_id) for e in key_uses} == {("client", erp.id)}

    report = client.get(
        "/api/v1/reports/signatures?group_by=user", headers=admin_headers
    ).json()
    assert [(b["key"], b["label"], b["count"]) for b in report["buckets"]] == [
        (f"client:{erp.id}", "erp", 4)
    ]


def test_the_client_stamps_its_own_name(
    client: TestClient, admin_headers: dict[str, str], ca: Issued
) -> None:
    erp = readme_client(client, admin_headers)
    certificate_for(client, admin_headers, ca, erp)
    response = client.post(
        "/api/v1/sign",
        files={"file": ("invoice.pdf", make_pdf(), "application/pdf")},
        data={
            "field_name": "Stamp",
            "appearance": '{"page": 1, "box": [40, 40, 300, 100],'
            ' "text": "%(user)s with %(signer)s"}',
        },
        headers=erp.headers,
    )
    assert response.status_code == 200, response.text
    widget = signature_widget(response.content, 1, "Stamp")
    assert stamp_lines(widget["/AP"]["/N"]) == ["erp with ERP Invoicing Seal"]


def test_a_client_signs_only_with_its_own_or_its_departments_certificates(
    client: TestClient,
    admin_headers: dict[str, str],
    ca: Issued,
    session_factory: sessionmaker[Session],
) -> None:
    finance = make_department(session_factory, "Finance")
    erp = readme_client(client, admin_headers, department_id=str(finance))
    other = readme_client(client, admin_headers)
    others_certificate = certificate_for(client, admin_headers, ca, other, "Other")
    # Another client's certificate is one erp may not see: it answers as missing.
    refused = client.post(
        "/api/v1/sign",
        files={"file": ("in.pdf", make_pdf(), "application/pdf")},
        data={"certificate_id": others_certificate},
        headers=erp.headers,
    )
    assert_problem(refused, 404, "certificate_not_found")
    # The department's certificate is erp's too.
    departments = import_signer(
        client, admin_headers, make_signer(ca, cn="Finance Seal"), ca
    )
    assert (
        client.post(
            f"/api/v1/certificates/{departments['id']}/assignments",
            json={"department_id": str(finance)},
            headers=admin_headers,
        ).status_code
        == 201
    )
    signed = client.post(
        "/api/v1/sign",
        files={"file": ("in.pdf", make_pdf(), "application/pdf")},
        data={"certificate_id": departments["id"]},
        headers=erp.headers,
    )
    assert signed.status_code == 200, signed.text
    # ... and may be its default.
    assert (
        client.put(
            f"{CLIENTS}/{erp.id}/default-certificate",
            json={"certificate_id": departments["id"]},
            headers=admin_headers,
        ).status_code
        == 200
    )
    # A certificate assigned to neither the client nor its department cannot be its default.
    assert_problem(
        client.put(
            f"{CLIENTS}/{erp.id}/default-certificate",
            json={"certificate_id": others_certificate},
            headers=admin_headers,
        ),
        422,
        "default_certificate_not_assigned",
    )


def test_default_certificate_of_a_client_is_read_cleared_and_audited(
    client: TestClient,
    admin_headers: dict[str, str],
    ca: Issued,
    session_factory: sessionmaker[Session],
) -> None:
    erp = readme_client(client, admin_headers)
    certificate_id = certificate_for(client, admin_headers, ca, erp)
    url = f"{CLIENTS}/{erp.id}/default-certificate"
    read = client.get(url, headers=admin_headers)
    assert read.status_code == 200, read.text
    assert (read.json()["client_id"], read.json()["certificate_id"]) == (
        erp.id,
        certificate_id,
    )
    [set_event] = audit_events(session_factory, "certificate.default_set")
    assert set_event.details["client_id"] == erp.id
    [assigned] = audit_events(session_factory, "certificate.assigned")
    assert assigned.details["client_id"] == erp.id

    assert client.delete(url, headers=admin_headers).status_code == 204
    assert_problem(client.get(url, headers=admin_headers), 404, "certificate_not_found")
    [cleared] = audit_events(session_factory, "certificate.default_cleared")
    assert (cleared.resource_type, cleared.resource_id) == ("api_client", erp.id)
    # Without a default, the client must name its certificate.
    assert_problem(
        client.post(
            "/api/v1/sign",
            files={"file": ("in.pdf", make_pdf(), "application/pdf")},
            headers=erp.headers,
        ),
        422,
        "certificate_required",
    )
    missing = f"{CLIENTS}/{uuid.uuid4()}/default-certificate"
    assert_problem(client.get(missing, headers=admin_headers), 404, "client_not_found")


def test_deleting_a_client_removes_its_assignments(
    client: TestClient, admin_headers: dict[str, str], ca: Issued
) -> None:
    erp = readme_client(client, admin_headers)
    certificate_id = certificate_for(client, admin_headers, ca, erp)
    assert (
        client.delete(f"{CLIENTS}/{erp.id}", headers=admin_headers).status_code == 204
    )
    certificate = client.get(
        f"/api/v1/certificates/{certificate_id}", headers=admin_headers
    ).json()
    assert certificate["assignments"] == []


def test_a_client_sees_its_own_and_its_departments_documents(
    client: TestClient,
    admin_headers: dict[str, str],
    session_factory: sessionmaker[Session],
    hasher: PasswordHasher,
    finance_and_sales: tuple[uuid.UUID, uuid.UUID],
) -> None:
    finance, sales = finance_and_sales
    colleague = bearer(
        login(
            client,
            make_user(session_factory, hasher, username="carol", department_id=finance),
        )["access_token"]
    )
    outsider = bearer(
        login(
            client,
            make_user(session_factory, hasher, username="dave", department_id=sales),
        )["access_token"]
    )
    erp = readme_client(client, admin_headers, department_id=str(finance))
    loner = readme_client(client, admin_headers, department_id=None)
    colleagues_document = upload(client, colleague)["id"]
    outsiders_document = upload(client, outsider)["id"]
    erps_document = upload(client, erp.headers)["id"]

    def visible(headers: dict[str, str]) -> set[str]:
        listed = client.get(DOCS, headers=headers).json()["data"]
        return {item["id"] for item in listed}

    assert visible(erp.headers) == {colleagues_document, erps_document}
    assert visible(colleague) == {colleagues_document, erps_document}
    assert visible(loner.headers) == set()
    assert (
        client.get(f"{DOCS}/{outsiders_document}", headers=erp.headers).status_code
        == 404
    )
    # Moved to Sales, the client sees Sales and no longer Finance (audited).
    moved = client.patch(
        f"{CLIENTS}/{erp.id}",
        json={"department_id": str(sales)},
        headers=admin_headers,
    )
    assert moved.status_code == 200, moved.text
    assert visible(erp.headers) == {outsiders_document, erps_document}
    updated = audit_events_for(session_factory, "client.updated", erp.id)
    assert updated[-1].details == {
        "before": {"department_id": str(finance)},
        "after": {"department_id": str(sales)},
    }


def audit_events_for(
    session_factory: sessionmaker[Session], action: str, resource_id: str
) -> list[Any]:
    return [
        e for e in audit_events(session_factory, action) if e.resource_id == resource_id
    ]


def test_a_manager_places_clients_only_in_its_own_department(
    client: TestClient,
    admin_headers: dict[str, str],
    session_factory: sessionmaker[Session],
    hasher: PasswordHasher,
    finance_and_sales: tuple[uuid.UUID, uuid.UUID],
) -> None:
    finance, sales = finance_and_sales
    make_role(
        session_factory,
        name="integrator",
        entitlements=[
            "clients:read",
            "clients:write",
            "documents:write",
            "documents:sign",
        ],
    )
    manager = make_user(
        session_factory,
        hasher,
        username="mia",
        roles=("integrator",),
        department_id=finance,
    )
    headers = bearer(login(client, manager)["access_token"])
    fields = {"name": "erp", "entitlements": ["documents:sign"]}

    absent = create_client(client, headers, **fields)
    assert absent["department_id"] == str(finance)
    outside = client.post(
        CLIENTS, json={**fields, "department_id": str(sales)}, headers=headers
    )
    assert_problem(outside, 403, "department_out_of_scope")
    unknown = client.post(
        CLIENTS, json={**fields, "department_id": str(uuid.uuid4())}, headers=headers
    )
    assert_problem(unknown, 422, "validation_failed")
    moved = client.patch(
        f"{CLIENTS}/{absent['id']}",
        json={"department_id": str(sales)},
        headers=headers,
    )
    assert_problem(moved, 403, "department_out_of_scope")
    assert client.get(f"{CLIENTS}/{absent['id']}", headers=headers).json()[
        "department_id"
    ] == str(finance)
    # Administrators place a client anywhere; a department-less administrator's
    # client still works in the department it was given.
    placed = create_client(client, admin_headers, **fields, department_id=str(sales))
    assert placed["department_id"] == str(sales)


def test_a_manager_assigns_certificates_only_to_clients_within_its_reach(
    client: TestClient,
    admin_headers: dict[str, str],
    ca: Issued,
    session_factory: sessionmaker[Session],
    hasher: PasswordHasher,
    admin: Credentials,
    finance_and_sales: tuple[uuid.UUID, uuid.UUID],
) -> None:
    finance, sales = finance_and_sales
    make_role(
        session_factory,
        name="vault-keeper",
        entitlements=["certificates:read", "certificates:assign", "clients:read"],
    )
    keeper = make_user(
        session_factory,
        hasher,
        username="kim",
        roles=("vault-keeper",),
        department_id=finance,
    )
    headers = bearer(login(client, keeper)["access_token"])
    ours = readme_client(client, admin_headers, department_id=str(finance))
    theirs = readme_client(client, admin_headers, department_id=str(sales))
    certificate = import_signer(client, admin_headers, make_signer(ca, cn="Shared"), ca)
    url = f"/api/v1/certificates/{certificate['id']}/assignments"

    not_reachable = client.post(url, json={"client_id": theirs.id}, headers=headers)
    assert_problem(not_reachable, 422, "validation_failed")
    assigned = client.post(url, json={"client_id": ours.id}, headers=headers)
    assert assigned.status_code == 201, assigned.text
    assert_problem(
        client.post(url, json={"client_id": ours.id}, headers=headers),
        409,
        "assignment_duplicate",
    )
    # Once the certificate is also another department's client's, the keeper may not hand it on.
    assert (
        client.post(
            url, json={"client_id": theirs.id}, headers=admin_headers
        ).status_code
        == 201
    )
    other = readme_client(client, admin_headers, department_id=str(finance))
    assert_problem(
        client.post(url, json={"client_id": other.id}, headers=headers),
        403,
        "department_out_of_scope",
    )
    both = client.post(
        url, json={"client_id": ours.id, "user_id": str(admin.user_id)}, headers=headers
    )
    assert_problem(both, 422, "validation_failed")
