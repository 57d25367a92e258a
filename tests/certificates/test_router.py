"""Vault metadata, listing, chains, assignment and lifecycle over HTTP."""

import base64
import uuid
from datetime import timedelta

from cryptography import x509
from fastapi.testclient import TestClient
from sqlalchemy import func, select, update
from sqlalchemy.orm import Session, sessionmaker

from app.access.models import Department, User
from app.certificates import service as vault_service
from app.certificates.models import DefaultCertificate, SigningCertificate
from app.core.crypto import DataKey
from app.core.security import PasswordHasher
from app.core.types import utcnow
from tests.certificates.conftest import P12_PASSWORD, import_signer
from tests.certificates.pki import Issued, make_pkcs12, make_signer
from tests.factories import (
    Credentials,
    assert_problem,
    audit_events,
    bearer,
    login,
    make_user,
)

BASE = "/api/v1/certificates"

# The vault's data keys (the token signing key has one too).
OF_VAULT = DataKey.purpose == vault_service.KEY_PURPOSE


def make_department(session_factory: sessionmaker[Session], name: str) -> uuid.UUID:
    with session_factory.begin() as session:
        department = Department(name=name)
        session.add(department)
        session.flush()
        return department.id


def put_in_department(
    session_factory: sessionmaker[Session], user: Credentials, department_id: uuid.UUID
) -> None:
    with session_factory.begin() as session:
        session.execute(
            update(User)
            .where(User.id == user.user_id)
            .values(department_id=department_id)
        )


def set_not_after(
    session_factory: sessionmaker[Session], certificate_id: str, days: float
) -> None:
    with session_factory.begin() as session:
        session.execute(
            update(SigningCertificate)
            .where(SigningCertificate.id == uuid.UUID(certificate_id))
            .values(not_after=utcnow() + timedelta(days=days))
        )


def test_chain_is_pem_leaf_first_and_holds_no_key(
    client: TestClient, admin_headers: dict[str, str], ca: Issued, signer: Issued
) -> None:
    created = import_signer(client, admin_headers, signer, ca)
    response = client.get(f"{BASE}/{created['id']}/chain", headers=admin_headers)
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/pem-certificate-chain"
    chain = x509.load_pem_x509_certificates(response.content)
    assert chain == [signer.certificate, ca.certificate]
    assert b"PRIVATE KEY" not in response.content


def test_list_filters_by_status_expiry_assignment_and_text(
    client: TestClient,
    admin_headers: dict[str, str],
    ca: Issued,
    session_factory: sessionmaker[Session],
    hasher: PasswordHasher,
) -> None:
    alice = import_signer(client, admin_headers, make_signer(ca, cn="Alice"), ca)
    bob = import_signer(client, admin_headers, make_signer(ca, cn="Bob"), ca)
    carol = import_signer(client, admin_headers, make_signer(ca, cn="Carol"), ca)
    set_not_after(session_factory, bob["id"], 10)
    set_not_after(session_factory, carol["id"], -1)
    client.post(f"{BASE}/{alice['id']}/disable", headers=admin_headers)
    user = make_user(session_factory, hasher, username="dora")
    sales = make_department(session_factory, "Sales")
    client.post(
        f"{BASE}/{alice['id']}/assignments",
        json={"user_id": str(user.user_id)},
        headers=admin_headers,
    )
    client.post(
        f"{BASE}/{bob['id']}/assignments",
        json={"department_id": str(sales)},
        headers=admin_headers,
    )

    def names(query: str) -> list[str]:
        response = client.get(f"{BASE}?sort=name&{query}", headers=admin_headers)
        assert response.status_code == 200, response.text
        return [c["name"] for c in response.json()["data"]]

    assert names("") == ["Alice", "Bob", "Carol"]
    assert names("status=active") == ["Bob"]
    assert names("status=disabled") == ["Alice"]
    assert names("status=expired") == ["Carol"]
    assert names("status=active&status=expired") == ["Bob", "Carol"]
    assert names("expiring_within_days=30") == ["Bob"]
    assert names(f"assigned_to_user={user.user_id}") == ["Alice"]
    assert names(f"department_id={sales}") == ["Bob"]
    assert names("q=aLi") == ["Alice"]
    expiring = client.get(f"{BASE}/expiring?days=30", headers=admin_headers).json()
    assert [c["name"] for c in expiring] == ["Bob"]
    assert (
        client.get(f"{BASE}/{carol['id']}", headers=admin_headers).json()["status"]
        == "expired"
    )
    assert_problem(
        client.get(f"{BASE}?status=nope", headers=admin_headers),
        422,
        "validation_failed",
    )


def test_signer_sees_only_certificates_assigned_to_them_or_their_department(
    client: TestClient,
    admin_headers: dict[str, str],
    ca: Issued,
    session_factory: sessionmaker[Session],
    hasher: PasswordHasher,
) -> None:
    mine = import_signer(client, admin_headers, make_signer(ca, cn="Mine"), ca)
    ours = import_signer(client, admin_headers, make_signer(ca, cn="Ours"), ca)
    theirs = import_signer(client, admin_headers, make_signer(ca, cn="Theirs"), ca)
    user = make_user(session_factory, hasher, username="eve")
    legal = make_department(session_factory, "Legal")
    put_in_department(session_factory, user, legal)
    client.post(
        f"{BASE}/{mine['id']}/assignments",
        json={"user_id": str(user.user_id)},
        headers=admin_headers,
    )
    client.post(
        f"{BASE}/{ours['id']}/assignments",
        json={"department_id": str(legal)},
        headers=admin_headers,
    )
    headers = bearer(login(client, user)["access_token"])
    listed = client.get(f"{BASE}?sort=name", headers=headers).json()
    assert [c["name"] for c in listed["data"]] == ["Mine", "Ours"]
    assert_problem(
        client.get(f"{BASE}/{theirs['id']}", headers=headers),
        404,
        "certificate_not_found",
    )
    assert_problem(
        client.post(f"{BASE}/{mine['id']}/disable", headers=headers), 403, "forbidden"
    )


def test_assignments_are_added_refused_when_duplicate_and_removed(
    client: TestClient,
    admin_headers: dict[str, str],
    ca: Issued,
    signer: Issued,
    session_factory: sessionmaker[Session],
    hasher: PasswordHasher,
) -> None:
    created = import_signer(client, admin_headers, signer, ca)
    user = make_user(session_factory, hasher, username="frank")
    department = make_department(session_factory, "Ops")
    url = f"{BASE}/{created['id']}/assignments"
    to_user = client.post(
        url, json={"user_id": str(user.user_id)}, headers=admin_headers
    )
    assert to_user.status_code == 201, to_user.text
    to_department = client.post(
        url, json={"department_id": str(department)}, headers=admin_headers
    )
    assert to_department.status_code == 201
    again = client.post(url, json={"user_id": str(user.user_id)}, headers=admin_headers)
    assert (
        assert_problem(again, 409, "assignment_duplicate")["existing_id"]
        == (to_user.json()["id"])
    )
    assert_problem(
        client.post(url, json={}, headers=admin_headers), 422, "validation_failed"
    )
    assert_problem(
        client.post(url, json={"user_id": str(uuid.uuid4())}, headers=admin_headers),
        422,
        "validation_failed",
    )
    read = client.get(f"{BASE}/{created['id']}", headers=admin_headers).json()
    assert {a["id"] for a in read["assignments"]} == {
        to_user.json()["id"],
        to_department.json()["id"],
    }
    with session_factory() as session:
        assert vault_service.department_has_certificates(session, department)
    removed = client.delete(
        f"{url}/{to_department.json()['id']}", headers=admin_headers
    )
    assert removed.status_code == 204
    with session_factory() as session:
        assert not vault_service.department_has_certificates(session, department)
    assert_problem(
        client.delete(f"{url}/{to_department.json()['id']}", headers=admin_headers),
        404,
        "assignment_not_found",
    )
    actions = [
        e.action for e in audit_events(session_factory, resource_type="certificate")
    ]
    assert actions.count("certificate.assigned") == 2
    assert actions.count("certificate.unassigned") == 1


def test_disable_enable_revoke_and_revocation_is_final(
    client: TestClient,
    admin_headers: dict[str, str],
    ca: Issued,
    signer: Issued,
    session_factory: sessionmaker[Session],
) -> None:
    created = import_signer(client, admin_headers, signer, ca)
    url = f"{BASE}/{created['id']}"
    assert client.post(f"{url}/disable", headers=admin_headers).json()["status"] == (
        "disabled"
    )
    assert client.post(f"{url}/enable", headers=admin_headers).json()["status"] == (
        "active"
    )
    revoked = client.post(
        f"{url}/revoke", json={"reason": "key compromise"}, headers=admin_headers
    ).json()
    assert (revoked["status"], revoked["revocation_reason"]) == (
        "revoked",
        "key compromise",
    )
    assert_problem(
        client.post(f"{url}/enable", headers=admin_headers), 409, "certificate_revoked"
    )
    assert_problem(
        client.post(f"{url}/revoke", headers=admin_headers), 409, "certificate_revoked"
    )
    actions = [
        e.action for e in audit_events(session_factory, resource_id=created["id"])
    ]
    assert actions == [
        "certificate.imported",
        "certificate.disabled",
        "certificate.enabled",
        "certificate.revoked",
    ]
    renamed = client.patch(url, json={"name": "Old seal"}, headers=admin_headers)
    assert renamed.json()["name"] == "Old seal"


def test_delete_destroys_the_key_and_keeps_the_metadata(
    client: TestClient,
    admin_headers: dict[str, str],
    ca: Issued,
    signer: Issued,
    session_factory: sessionmaker[Session],
    hasher: PasswordHasher,
) -> None:
    created = import_signer(client, admin_headers, signer, ca)
    user = make_user(session_factory, hasher, username="gina")
    client.post(
        f"{BASE}/{created['id']}/assignments",
        json={"user_id": str(user.user_id)},
        headers=admin_headers,
    )
    with session_factory() as session:
        assert (
            session.scalar(select(func.count()).select_from(DataKey).where(OF_VAULT))
            == 1
        )
    assert (
        client.delete(f"{BASE}/{created['id']}", headers=admin_headers).status_code
        == 204
    )
    with session_factory() as session:
        assert (
            session.scalar(select(func.count()).select_from(DataKey).where(OF_VAULT))
            == 0
        )
        row = session.get(SigningCertificate, uuid.UUID(created["id"]))
        assert row is not None
        assert row.sealed_private_key is None
    kept = client.get(f"{BASE}/{created['id']}", headers=admin_headers).json()
    assert (kept["status"], kept["assignments"]) == ("deleted", [])
    assert kept["fingerprint_sha256"] == created["fingerprint_sha256"]
    assert client.get(BASE, headers=admin_headers).json()["total"] == 0
    assert (
        client.get(f"{BASE}?status=deleted", headers=admin_headers).json()["total"] == 1
    )
    assert_problem(
        client.delete(f"{BASE}/{created['id']}", headers=admin_headers),
        409,
        "certificate_deleted",
    )
    # the same certificate may come back as a new vault entry
    again = import_signer(client, admin_headers, signer, ca)
    assert again["id"] != created["id"]
    [event] = audit_events(session_factory, "certificate.deleted")
    assert event.details["key_destroyed"] is True


def test_unknown_certificate_is_404(
    client: TestClient, admin_headers: dict[str, str]
) -> None:
    assert_problem(
        client.get(f"{BASE}/{uuid.uuid4()}", headers=admin_headers),
        404,
        "certificate_not_found",
    )


def test_inspect_reads_a_pkcs12_file_and_stores_nothing(
    client: TestClient,
    admin_headers: dict[str, str],
    ca: Issued,
    signer: Issued,
    session_factory: sessionmaker[Session],
) -> None:
    response = client.post(
        f"{BASE}/inspect",
        files={"file": ("a.p12", make_pkcs12(signer, P12_PASSWORD, chain=(ca,)))},
        data={"password": P12_PASSWORD},
        headers=admin_headers,
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["subject_cn"], body["has_private_key"], body["importable"]) == (
        "Jane Signer",
        True,
        True,
    )
    assert [c["subject"] for c in body["chain"]] == [
        ca.certificate.subject.rfc4514_string()
    ]
    assert client.get(BASE, headers=admin_headers).json()["total"] == 0
    with session_factory() as session:
        assert (
            session.scalar(select(func.count()).select_from(DataKey).where(OF_VAULT))
            == 0
        )


def test_inspect_reports_why_a_certificate_would_be_refused(
    client: TestClient, admin_headers: dict[str, str], ca: Issued
) -> None:
    expired = make_signer(
        ca,
        not_before=utcnow() - timedelta(days=9),
        not_after=utcnow() - timedelta(days=1),
    )
    response = client.post(
        f"{BASE}/inspect/base64",
        json={"data_base64": base64.b64encode(expired.certificate_pem()).decode()},
        headers=admin_headers,
    )
    assert response.status_code == 200, response.text
    body = response.json()
    assert (body["has_private_key"], body["importable"], body["refusal_code"]) == (
        False,
        False,
        "certificate_expired",
    )
    assert_problem(
        client.post(
            f"{BASE}/inspect/base64",
            json={"data_base64": base64.b64encode(b"nothing").decode()},
            headers=admin_headers,
        ),
        422,
        "invalid_certificate",
    )
    assert_problem(
        client.post(
            f"{BASE}/inspect",
            files={"file": ("a.p12", make_pkcs12(expired, P12_PASSWORD))},
            data={"password": "wrong"},
            headers=admin_headers,
        ),
        422,
        "pkcs12_wrong_password",
    )


def test_default_certificate_is_set_only_when_assigned_and_cleared_on_delete(
    client: TestClient,
    admin_headers: dict[str, str],
    ca: Issued,
    signer: Issued,
    session_factory: sessionmaker[Session],
    hasher: PasswordHasher,
) -> None:
    created = import_signer(client, admin_headers, signer, ca)
    user = make_user(session_factory, hasher, username="hank")
    url = f"/api/v1/users/{user.user_id}/default-certificate"
    body = {"certificate_id": created["id"]}
    assert_problem(
        client.put(url, json=body, headers=admin_headers),
        422,
        "default_certificate_not_assigned",
    )
    department = make_department(session_factory, "Audit")
    put_in_department(session_factory, user, department)
    client.post(
        f"{BASE}/{created['id']}/assignments",
        json={"department_id": str(department)},
        headers=admin_headers,
    )
    response = client.put(url, json=body, headers=admin_headers)
    assert response.status_code == 200, response.text
    assert response.json()["certificate_id"] == created["id"]
    assert (
        client.get(url, headers=admin_headers).json()["certificate_id"]
        == (created["id"])
    )
    with session_factory() as session:
        stored = session.get(DefaultCertificate, user.user_id)
        assert stored is not None
        assert stored.certificate_id == uuid.UUID(created["id"])
    assert_problem(
        client.put(
            f"/api/v1/users/{uuid.uuid4()}/default-certificate",
            json=body,
            headers=admin_headers,
        ),
        404,
        "user_not_found",
    )
    client.delete(f"{BASE}/{created['id']}", headers=admin_headers)
    assert_problem(client.get(url, headers=admin_headers), 404, "certificate_not_found")
    assert [e.action for e in audit_events(session_factory, "certificate.default_set")]


def test_default_certificate_can_be_cleared(
    client: TestClient,
    admin: Credentials,
    admin_headers: dict[str, str],
    ca: Issued,
    signer: Issued,
) -> None:
    created = import_signer(client, admin_headers, signer, ca)
    client.post(
        f"{BASE}/{created['id']}/assignments",
        json={"user_id": str(admin.user_id)},
        headers=admin_headers,
    )
    url = f"/api/v1/users/{admin.user_id}/default-certificate"
    client.put(url, json={"certificate_id": created["id"]}, headers=admin_headers)
    assert client.delete(url, headers=admin_headers).status_code == 204
    assert_problem(
        client.delete(url, headers=admin_headers), 404, "certificate_not_found"
    )
