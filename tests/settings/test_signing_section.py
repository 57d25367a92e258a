"""The `signing` settings section over HTTP: defaults, refusals, audit, and its effect on sign and verify."""

import base64
import io
import typing
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from fastapi.testclient import TestClient
from pyhanko.pdf_utils.reader import PdfFileReader
from sqlalchemy.orm import Session, sessionmaker

from app.core.types import utcnow
from app.settings.schemas import SignatureLevel
from app.signing.engine import PadesLevel, validate_pdf
from tests.certificates.conftest import P12_PASSWORD
from tests.certificates.pki import Issued, make_ca, make_pkcs12, make_signer
from tests.factories import Credentials, assert_problem, audit_events
from tests.keys import asn1_of, pem_of
from tests.pki import TestPki, running_pki
from tests.signing.test_sign_api import DOCS, Signer, alice, content, upload

__all__ = ["alice"]  # the signer fixture, shared from tests/signing

SIGNING = "/api/v1/settings/signing"


@pytest.fixture(scope="module")
def ca() -> Issued:
    return make_ca("Section Test CA")


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestPki]:
    with running_pki(tmp_path_factory.mktemp("pki")) as running:
        yield running


def put_signing(
    client: TestClient, headers: dict[str, str], **values: Any
) -> dict[str, Any]:
    response = client.put(SIGNING, json=values, headers=headers)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def sign(client: TestClient, signer: Signer, **body: Any) -> dict[str, Any]:
    document = upload(client, signer.headers)
    response = client.post(
        f"{DOCS}/{document['id']}/sign",
        json={"certificate_id": signer.certificate_id, **body},
        headers=signer.headers,
    )
    assert response.status_code == 201, response.text
    signature: dict[str, Any] = response.json()
    return signature


def test_the_levels_match_the_engine() -> None:
    assert set(typing.get_args(SignatureLevel)) == {level.value for level in PadesLevel}


def test_defaults(client: TestClient, admin_headers: dict[str, str]) -> None:
    assert client.get(SIGNING, headers=admin_headers).json() == {
        "default_level": "B-B",
        "tsa_url": None,
        "hash_algorithm": "sha256",
        "default_appearance": {
            "visible": False,
            "page": 1,
            "box": [36.0, 36.0, 236.0, 96.0],
            "text": None,
        },
        "trust_roots": [],
        "include_vault_chains": False,
    }


def test_put_is_stored_and_audited_with_the_changed_fields(
    client: TestClient,
    admin_headers: dict[str, str],
    session_factory: sessionmaker[Session],
    ca: Issued,
) -> None:
    expired = make_signer(
        ca,
        cn="Old Root",
        not_before=utcnow() - timedelta(days=30),
        not_after=utcnow() - timedelta(days=1),
    )
    roots = [pem_of(ca).decode().strip(), pem_of(expired).decode().strip()]
    stored = put_signing(
        client,
        admin_headers,
        hash_algorithm="sha384",
        trust_roots=["\n  " + roots[0] + "\n\n", roots[1]],
    )
    assert stored["trust_roots"] == roots  # re-armoured; an expired one is fine
    assert client.get(SIGNING, headers=admin_headers).json() == stored
    [event] = audit_events(session_factory, "settings.updated", resource_id="signing")
    assert event.details == {
        "before": {"hash_algorithm": "sha256", "trust_roots": []},
        "after": {"hash_algorithm": "sha384", "trust_roots": roots},
    }


@pytest.mark.parametrize(
    ("values", "code"),
    [
        ({"trust_roots": ["not a certificate"]}, "invalid_trust_root"),
        (
            {
                "trust_roots": [
                    "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n"
                ]
            },
            "invalid_trust_root",
        ),
        ({"trust_roots": ["two"]}, "invalid_trust_root"),
        ({"default_level": "B-X"}, "validation_failed"),
        ({"hash_algorithm": "md5"}, "validation_failed"),
        ({"tsa_url": "not a url"}, "validation_failed"),
        ({"default_appearance": {"text": "%(who)s"}}, "validation_failed"),
        ({"default_appearance": {"box": [10, 10, 5, 20]}}, "validation_failed"),
        ({"colour": "red"}, "validation_failed"),
    ],
)
def test_invalid_values_are_422_and_change_nothing(
    client: TestClient,
    admin_headers: dict[str, str],
    session_factory: sessionmaker[Session],
    ca: Issued,
    values: dict[str, Any],
    code: str,
) -> None:
    if values.get("trust_roots") == ["two"]:
        values = {"trust_roots": [pem_of(ca).decode() * 2]}
    problem = assert_problem(
        client.put(SIGNING, json=values, headers=admin_headers), 422, code
    )
    if code == "invalid_trust_root":
        assert problem["invalid_params"][0]["name"] == "trust_roots.0"
    assert client.get(SIGNING, headers=admin_headers).json()["trust_roots"] == []
    assert audit_events(session_factory, "settings.updated") == []


def test_omitted_level_takes_the_default_and_the_section_tsa(
    client: TestClient,
    admin_headers: dict[str, str],
    alice: Signer,
    ca: Issued,
    pki: TestPki,
) -> None:
    # No SIGNVAULT_TSA_URL here: the timestamp can only come from the section.
    put_signing(client, admin_headers, default_level="B-T", tsa_url=pki.tsa_url)
    signature = sign(client, alice)
    assert signature["level"] == "B-T"
    assert sign(client, alice, level="B-B")["level"] == "B-B"
    [report] = validate_pdf(
        io.BytesIO(content(client, alice.headers, signature["document_id"])),
        trust_roots=[asn1_of(ca), pki.root],
        allow_fetching=False,
    )
    assert (report.pades_level, report.timestamp_valid) == ("B-T", True)


@pytest.mark.parametrize("algorithm", ["sha384", "sha512"])
def test_hash_algorithm_is_used_in_the_cms(
    client: TestClient,
    admin_headers: dict[str, str],
    alice: Signer,
    ca: Issued,
    algorithm: str,
) -> None:
    unchanged = sign(client, alice)
    put_signing(client, admin_headers, hash_algorithm=algorithm)
    changed = sign(client, alice)
    digests = []
    for signature in (unchanged, changed):
        signed = content(client, alice.headers, signature["document_id"])
        [embedded] = PdfFileReader(io.BytesIO(signed)).embedded_signatures
        digests.append(embedded.md_algorithm)
        [report] = validate_pdf(
            io.BytesIO(signed), trust_roots=[asn1_of(ca)], allow_fetching=False
        )
        assert report.bottom_line
    assert digests == ["sha256", algorithm]


def widget_of(pdf: bytes, page: int) -> Any:
    reader = PdfFileReader(io.BytesIO(pdf))
    kids = reader.root["/Pages"]["/Kids"]
    annotations = kids[page - 1].get_object().get("/Annots", [])
    return [a.get_object() for a in annotations]


def test_default_appearance_stamps_requests_without_one(
    client: TestClient, admin_headers: dict[str, str], alice: Signer
) -> None:
    assert (
        widget_of(content(client, alice.headers, sign(client, alice)["document_id"]), 2)
        == []
    )
    put_signing(
        client,
        admin_headers,
        default_appearance={
            "visible": True,
            "page": 2,
            "box": [40, 50, 240, 110],
            "text": "Approved by %(signer)s",
        },
    )
    signature = sign(client, alice)
    [widget] = widget_of(content(client, alice.headers, signature["document_id"]), 2)
    assert widget["/T"] == signature["field_name"]
    assert [float(v) for v in widget["/Rect"]] == [40.0, 50.0, 240.0, 110.0]
    assert "/AP" in widget
    # A named field is the caller's choice of where to sign: no default stamp.
    named = sign(client, alice, field_name="Approval")
    assert widget_of(content(client, alice.headers, named["document_id"]), 2) == []


def verify_document(client: TestClient, signer: Signer, document_id: str) -> Any:
    response = client.post(f"{DOCS}/{document_id}/verify", headers=signer.headers)
    assert response.status_code == 200, response.text
    [signature] = response.json()["signatures"]
    return signature


def test_vault_chains_trust_a_self_signed_vault_certificate(
    client: TestClient,
    admin_headers: dict[str, str],
    admin: Credentials,
) -> None:
    # Its own root: no chain comes with it in the PKCS#12.
    own = make_ca("Solo Signer")
    solo = make_signer(own, cn="Solo Signer", key=own.key)
    imported = client.post(
        "/api/v1/certificates/base64",
        json={
            "pkcs12_base64": base64.b64encode(make_pkcs12(solo, P12_PASSWORD)).decode(),
            "password": P12_PASSWORD,
        },
        headers=admin_headers,
    )
    assert imported.status_code == 201, imported.text
    assigned = client.post(
        f"/api/v1/certificates/{imported.json()['id']}/assignments",
        json={"user_id": str(admin.user_id)},
        headers=admin_headers,
    )
    assert assigned.status_code == 201, assigned.text
    signer = Signer(admin, admin_headers, imported.json()["id"])
    document_id = sign(client, signer)["document_id"]
    assert verify_document(client, signer, document_id)["trusted"] is False
    put_signing(client, admin_headers, include_vault_chains=True)
    trusted = verify_document(client, signer, document_id)
    assert (trusted["trusted"], trusted["bottom_line"]) == (True, True)
    # A revoked one is no longer anybody's root.
    revoked = client.post(
        f"/api/v1/certificates/{imported.json()['id']}/revoke",
        json={"reason": "key compromise"},
        headers=admin_headers,
    )
    assert revoked.status_code == 200, revoked.text
    assert verify_document(client, signer, document_id)["trusted"] is False


def test_section_trust_roots_and_vault_chains_make_verify_trust_the_signer(
    client: TestClient,
    admin_headers: dict[str, str],
    alice: Signer,
    ca: Issued,
) -> None:
    document_id = sign(client, alice)["document_id"]
    untrusted = verify_document(client, alice, document_id)
    assert (untrusted["intact"], untrusted["trusted"]) == (True, False)

    put_signing(client, admin_headers, trust_roots=[pem_of(ca).decode()])
    trusted = verify_document(client, alice, document_id)
    assert (trusted["trusted"], trusted["bottom_line"]) == (True, True)

    put_signing(
        client, admin_headers, trust_roots=[make_ca("Other").certificate_pem().decode()]
    )
    assert verify_document(client, alice, document_id)["trusted"] is False

    # alice's certificate was imported with its CA: the vault's chain is trusted on request.
    put_signing(client, admin_headers, include_vault_chains=True)
    assert verify_document(client, alice, document_id)["trusted"] is True
