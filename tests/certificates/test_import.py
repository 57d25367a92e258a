"""PKCS#12 import: accepted files, every refusal with its code, duplicates."""

import base64
from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from app.core.config import Settings
from app.core.security import PasswordHasher
from app.core.types import utcnow
from tests.certificates.conftest import P12_PASSWORD, import_p12
from tests.certificates.pki import (
    Encryption,
    Issued,
    KeyType,
    make_pkcs12,
    make_rc2_pkcs12,
    make_signer,
)
from tests.factories import assert_problem, audit_events, bearer, login, make_user


def test_modern_aes_pkcs12_is_imported_with_its_metadata_and_chain(
    client: TestClient,
    admin_headers: dict[str, str],
    ca: Issued,
    signer: Issued,
    session_factory: sessionmaker[Session],
) -> None:
    response = import_p12(
        client, admin_headers, make_pkcs12(signer, P12_PASSWORD, chain=(ca,))
    )
    assert response.status_code == 201, response.text
    body = response.json()
    assert body["name"] == "Jane Signer"
    assert body["status"] == "active"
    assert body["key_store"] == "pkcs12"
    assert (body["subject_cn"], body["subject_o"], body["subject_email"]) == (
        "Jane Signer",
        "SignVault Tests",
        "jane@example.test",
    )
    assert body["issuer"] == ca.certificate.subject.rfc4514_string()
    assert body["serial_number"] == format(signer.certificate.serial_number, "x")
    assert (
        body["fingerprint_sha256"]
        == signer.certificate.fingerprint(
            __import__(
                "cryptography.hazmat.primitives.hashes"
            ).hazmat.primitives.hashes.SHA256()
        ).hex()
    )
    assert (body["key_algorithm"], body["key_size"], body["key_curve"]) == (
        "ecdsa",
        256,
        "P-256",
    )
    assert body["key_usage"] == ["digital_signature", "content_commitment"]
    assert body["extended_key_usage"] == ["email_protection"]
    assert [c["subject"] for c in body["chain"]] == [
        ca.certificate.subject.rfc4514_string()
    ]
    assert body["not_after"].endswith("Z")
    assert "private" not in response.text.lower()
    [event] = audit_events(session_factory, "certificate.imported")
    assert event.details["fingerprint_sha256"] == body["fingerprint_sha256"]
    assert event.resource_id == body["id"]


def test_legacy_3des_pkcs12_is_imported(
    client: TestClient, admin_headers: dict[str, str], signer: Issued
) -> None:
    data = make_pkcs12(signer, P12_PASSWORD, encryption="3des")
    assert import_p12(client, admin_headers, data).status_code == 201


def test_legacy_rc2_pkcs12_is_imported(
    client: TestClient, admin_headers: dict[str, str], signer: Issued
) -> None:
    data = make_rc2_pkcs12(signer, P12_PASSWORD)
    if data is None:
        pytest.skip("the openssl command has no legacy provider to write RC2-40 files")
    response = import_p12(client, admin_headers, data)
    assert response.status_code == 201, response.text


@pytest.mark.parametrize(
    ("key_type", "algorithm", "size"),
    [
        ("rsa2048", "rsa", 2048),
        ("rsa3072", "rsa", 3072),
        ("p384", "ecdsa", 384),
        ("ed25519", "ed25519", 256),
    ],
)
def test_supported_key_types_are_imported(
    client: TestClient,
    admin_headers: dict[str, str],
    ca: Issued,
    key_type: KeyType,
    algorithm: str,
    size: int,
) -> None:
    data = make_pkcs12(make_signer(ca, key_type=key_type), P12_PASSWORD)
    response = import_p12(client, admin_headers, data)
    assert response.status_code == 201, response.text
    assert (response.json()["key_algorithm"], response.json()["key_size"]) == (
        algorithm,
        size,
    )


def test_base64_variant_imports_and_names_the_certificate(
    client: TestClient, admin_headers: dict[str, str], signer: Issued
) -> None:
    response = client.post(
        "/api/v1/certificates/base64",
        json={
            "name": "Jane's seal",
            "pkcs12_base64": base64.b64encode(
                make_pkcs12(signer, P12_PASSWORD)
            ).decode(),
            "password": P12_PASSWORD,
        },
        headers=admin_headers,
    )
    assert response.status_code == 201, response.text
    assert response.json()["name"] == "Jane's seal"


def test_base64_variant_refuses_bad_base64(
    client: TestClient, admin_headers: dict[str, str]
) -> None:
    response = client.post(
        "/api/v1/certificates/base64",
        json={"pkcs12_base64": "***", "password": "x"},
        headers=admin_headers,
    )
    assert_problem(response, 422, "validation_failed")


def _refusal_cases(ca: Issued, encryption: Encryption) -> dict[str, tuple[bytes, str]]:
    signer = make_signer(ca)
    other = make_signer(ca, cn="Other")
    now = utcnow()

    def p12(issued: Issued, **kwargs: Any) -> bytes:
        return make_pkcs12(issued, P12_PASSWORD, encryption=encryption, **kwargs)

    return {
        "pkcs12_wrong_password": (p12(signer), "not-it"),
        "pkcs12_no_private_key": (p12(signer, certificate_only=True), P12_PASSWORD),
        "pkcs12_no_certificate": (p12(signer, key_only=True), P12_PASSWORD),
        "key_certificate_mismatch": (
            p12(other, key_only=True, chain=(signer,)),
            P12_PASSWORD,
        ),
        "certificate_expired": (
            p12(
                make_signer(
                    ca,
                    not_before=now - timedelta(days=30),
                    not_after=now - timedelta(days=1),
                )
            ),
            P12_PASSWORD,
        ),
        "certificate_not_yet_valid": (
            p12(make_signer(ca, not_before=now + timedelta(days=1))),
            P12_PASSWORD,
        ),
        "key_usage_not_signing": (
            p12(make_signer(ca, signing_usage=False)),
            P12_PASSWORD,
        ),
        "unsupported_key_type": (p12(make_signer(ca, key_type="p521")), P12_PASSWORD),
        "not_pkcs12": (signer.certificate_pem(), P12_PASSWORD),
    }


@pytest.mark.parametrize(
    "code",
    [
        "pkcs12_wrong_password",
        "pkcs12_no_private_key",
        "pkcs12_no_certificate",
        "key_certificate_mismatch",
        "certificate_expired",
        "certificate_not_yet_valid",
        "key_usage_not_signing",
        "unsupported_key_type",
        "not_pkcs12",
    ],
)
@pytest.mark.parametrize("encryption", ["aes", "3des"])
def test_refused_file_is_a_422_with_its_code_and_is_audited(
    client: TestClient,
    admin_headers: dict[str, str],
    ca: Issued,
    session_factory: sessionmaker[Session],
    code: str,
    encryption: Encryption,
) -> None:
    data, password = _refusal_cases(ca, encryption)[code]
    body = assert_problem(import_p12(client, admin_headers, data, password), 422, code)
    assert P12_PASSWORD not in body["detail"]
    [event] = audit_events(session_factory, "certificate.import_refused")
    assert event.outcome == "failure"
    assert event.details["code"] == code
    listed = client.get("/api/v1/certificates", headers=admin_headers).json()
    assert listed["total"] == 0


def test_unsupported_rsa_size_and_edwards448_are_refused(
    client: TestClient, admin_headers: dict[str, str], ca: Issued
) -> None:
    for key_type in ("rsa1024", "ed448"):
        data = make_pkcs12(make_signer(ca, key_type=key_type), P12_PASSWORD)
        assert_problem(
            import_p12(client, admin_headers, data), 422, "unsupported_key_type"
        )


def test_random_bytes_are_not_pkcs12(
    client: TestClient, admin_headers: dict[str, str]
) -> None:
    assert_problem(
        import_p12(client, admin_headers, b"\x30\x82garbage" * 10),
        422,
        "not_pkcs12",
    )


def test_file_over_the_size_limit_is_refused(
    client: TestClient,
    admin_headers: dict[str, str],
    signer: Issued,
    settings: Settings,
) -> None:
    data = make_pkcs12(signer, P12_PASSWORD) + b"\0" * settings.pkcs12_max_bytes
    assert_problem(import_p12(client, admin_headers, data), 422, "pkcs12_too_large")


def test_duplicate_import_is_a_409_naming_the_existing_certificate(
    client: TestClient,
    admin_headers: dict[str, str],
    signer: Issued,
    session_factory: sessionmaker[Session],
) -> None:
    first = import_p12(client, admin_headers, make_pkcs12(signer, P12_PASSWORD))
    again = import_p12(
        client, admin_headers, make_pkcs12(signer, P12_PASSWORD, encryption="3des")
    )
    body = assert_problem(again, 409, "certificate_duplicate")
    assert body["existing_id"] == first.json()["id"]
    assert first.json()["id"] in body["detail"]
    refused = audit_events(session_factory, "certificate.import_refused")
    assert refused[-1].details["code"] == "certificate_duplicate"


def test_import_needs_certificates_write(
    client: TestClient,
    signer: Issued,
    session_factory: sessionmaker[Session],
    hasher: PasswordHasher,
) -> None:
    user = make_user(session_factory, hasher, username="sig")
    headers = bearer(login(client, user)["access_token"])
    assert_problem(
        import_p12(client, headers, make_pkcs12(signer, P12_PASSWORD)), 403, "forbidden"
    )
