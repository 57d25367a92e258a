"""Audit-trail reports: JSON, and a PDF sealed by the system seal (checked by pyHanko and pdfsig)."""

import shutil
import subprocess
from io import BytesIO
from pathlib import Path

import pytest
from asn1crypto import pem
from asn1crypto import x509 as asn1_x509
from fastapi import FastAPI
from fastapi.testclient import TestClient
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.sign.validation import validate_pdf_signature
from pyhanko.sign.validation.status import SignatureCoverageLevel
from pyhanko_certvalidator import ValidationContext
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from app.audit import service as audit_service
from app.audit.models import SystemSeal
from app.audit.service import Actor, ActorKind
from app.core.crypto import DataKey
from tests.factories import assert_problem, audit_events

TRAIL = "/api/v1/audit-logs/trail?resource_type=document&resource_id=doc-1"


def record_document_events(session_factory: sessionmaker[Session]) -> None:
    alice = Actor(ActorKind.USER, "u-alice", "alice")
    with session_factory.begin() as session:
        for action, details in (
            ("document.uploaded", {"sha256": "ab" * 32, "size": 2048}),
            ("document.signed", {"certificate_fingerprint": "cd" * 32}),
            ("document.downloaded", {"version": "latest"}),
        ):
            audit_service.record(
                session,
                actor=alice,
                action=action,
                resource_type="document",
                resource_id="doc-1",
                details=details,
            )
        audit_service.record(
            session,
            actor=alice,
            action="document.uploaded",
            resource_type="document",
            resource_id="doc-2",
        )


def test_json_trail_lists_every_event_of_the_resource_in_order(
    client: TestClient,
    admin_headers: dict[str, str],
    session_factory: sessionmaker[Session],
) -> None:
    record_document_events(session_factory)
    body = client.get(TRAIL, headers=admin_headers).json()
    assert (body["resource_type"], body["resource_id"], body["count"]) == (
        "document",
        "doc-1",
        3,
    )
    assert [e["action"] for e in body["events"]] == [
        "document.uploaded",
        "document.signed",
        "document.downloaded",
    ]
    assert body["events"][0]["actor_name"] == "alice"
    assert body["events"][0]["details"]["sha256"] == "ab" * 32
    [download] = audit_events(session_factory, "audit.trail_downloaded")
    assert (download.resource_type, download.resource_id) == ("document", "doc-1")
    assert download.details == {"format": "json", "entries": 3}


def seal_root_pem(client: TestClient, headers: dict[str, str]) -> str:
    response = client.get("/api/v1/audit-logs/seal", headers=headers)
    assert response.status_code == 200, response.text
    root: str = response.json()["root_certificate_pem"]
    return root


def test_pdf_trail_is_sealed_and_validates_with_pyhanko(
    client: TestClient,
    admin_headers: dict[str, str],
    session_factory: sessionmaker[Session],
) -> None:
    record_document_events(session_factory)
    response = client.get(TRAIL + "&format=pdf", headers=admin_headers)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/pdf"
    _, _, root_der = pem.unarmor(seal_root_pem(client, admin_headers).encode())
    context = ValidationContext(trust_roots=[asn1_x509.Certificate.load(root_der)])
    [signature] = PdfFileReader(BytesIO(response.content)).embedded_signatures
    status = validate_pdf_signature(signature, context)
    assert status.intact
    assert status.valid
    assert status.trusted
    assert status.coverage is SignatureCoverageLevel.ENTIRE_FILE
    assert "SignVault system seal" in status.signing_cert.subject.human_friendly
    [download] = audit_events(session_factory, "audit.trail_downloaded")
    assert download.details == {"format": "pdf", "entries": 3}


def test_pdf_trail_validates_with_pdfsig_and_lists_the_events(
    client: TestClient,
    admin_headers: dict[str, str],
    session_factory: sessionmaker[Session],
    tmp_path: Path,
) -> None:
    tools = {name: shutil.which(name) for name in ("pdfsig", "certutil", "pdftotext")}
    if not all(tools.values()):
        pytest.skip(f"poppler-utils / libnss3-tools missing: {tools}")
    record_document_events(session_factory)
    pdf = tmp_path / "trail.pdf"
    pdf.write_bytes(client.get(TRAIL + "&format=pdf", headers=admin_headers).content)
    root = tmp_path / "root.pem"
    root.write_text(seal_root_pem(client, admin_headers))
    nss = tmp_path / "nss"
    nss.mkdir()

    def run(*args: str) -> str:
        done = subprocess.run(  # noqa: S603 (fixed tools, our own files)
            list(args), capture_output=True, text=True, check=True, timeout=60
        )
        return done.stdout

    run(str(tools["certutil"]), "-N", "-d", f"sql:{nss}", "--empty-password")
    run(
        str(tools["certutil"]),
        "-A",
        "-d",
        f"sql:{nss}",
        "-n",
        "seal-root",
        "-t",
        "C,C,C",
        "-i",
        str(root),
    )
    report = run(str(tools["pdfsig"]), "-nssdir", f"sql:{nss}", str(pdf))
    assert "Signature Validation: Signature is Valid." in report, report
    assert "Certificate Validation: Certificate is Trusted." in report, report
    assert "Total document signed" in report, report
    text = run(str(tools["pdftotext"]), "-layout", str(pdf), "-")
    for expected in (
        "Audit trail of document doc-1",
        "document.uploaded",
        "document.signed",
        "document.downloaded",
        "alice (user)",
        "page 1 of 1",
    ):
        assert expected in text, text
    assert "doc-2" not in text


def test_seal_is_made_once_with_its_key_sealed_and_can_be_rotated(
    client: TestClient,
    admin_headers: dict[str, str],
    session_factory: sessionmaker[Session],
) -> None:
    first = client.get("/api/v1/audit-logs/seal", headers=admin_headers).json()
    again = client.get("/api/v1/audit-logs/seal", headers=admin_headers).json()
    assert first["fingerprint_sha256"] == again["fingerprint_sha256"]
    assert "BEGIN CERTIFICATE" in first["certificate_pem"]
    with session_factory() as session:
        [seal] = session.scalars(select(SystemSeal)).all()
        assert b"PRIVATE KEY" not in seal.sealed_private_key
        purposes = sorted(session.scalars(select(DataKey.purpose)))
    assert purposes == ["system-seal", "token-signing-key"]
    rotated = client.post("/api/v1/audit-logs/seal/rotate", headers=admin_headers)
    assert rotated.status_code == 200, rotated.text
    assert rotated.json()["fingerprint_sha256"] != first["fingerprint_sha256"]
    with session_factory() as session:
        seals = session.scalars(select(SystemSeal)).all()
        assert sorted(s.is_active for s in seals) == [False, True]
        # the retired seal's key is destroyed: only the new one's data key is left
        assert session.query(DataKey).filter_by(purpose="system-seal").count() == 1
    assert [
        e.action
        for e in audit_events(session_factory, action=None)
        if e.action.startswith("audit.seal")
    ] == [
        "audit.seal_created",
        "audit.seal_rotated",
    ]


def test_pdf_trail_refused_when_reports_are_disabled(
    client: TestClient, admin_headers: dict[str, str]
) -> None:
    client.put(
        "/api/v1/audit-logs/settings",
        json={"audit_trail_enabled": False},
        headers=admin_headers,
    )
    assert_problem(
        client.get(TRAIL + "&format=pdf", headers=admin_headers),
        409,
        "audit_trail_disabled",
    )
    assert client.get(TRAIL, headers=admin_headers).status_code == 200


def test_pdf_trail_without_a_master_key_is_503(
    client: TestClient, admin_headers: dict[str, str], app: FastAPI
) -> None:
    app.state.cipher = None
    assert_problem(
        client.get(TRAIL + "&format=pdf", headers=admin_headers),
        503,
        "seal_unavailable",
    )
    assert_problem(
        client.get("/api/v1/audit-logs/seal", headers=admin_headers),
        503,
        "seal_unavailable",
    )


def test_trail_needs_both_resource_parameters(
    client: TestClient, admin_headers: dict[str, str]
) -> None:
    assert_problem(
        client.get(
            "/api/v1/audit-logs/trail?resource_type=document", headers=admin_headers
        ),
        422,
        "validation_failed",
    )


def test_pdf_trail_of_a_non_ascii_resource_names_its_file_in_utf8(
    client: TestClient, admin_headers: dict[str, str]
) -> None:
    # The file name holds the resource's type and id as given; it once failed as a 500.
    response = client.get(
        "/api/v1/audit-logs/trail",
        params={
            "resource_type": "dokument",
            "resource_id": "Ärzte/ý\u2026",
            "format": "pdf",
        },
        headers=admin_headers,
    )
    assert response.status_code == 200, response.text
    assert response.headers["content-disposition"] == (
        "attachment; filename*=utf-8''audit-trail-dokument-%C3%84rzte%2F%C3%BD%E2%80%A6.pdf"
    )
