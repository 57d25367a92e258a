"""POST /verify and /documents/{id}/verify: validation reports, never errors for bad signatures."""

import io
import logging
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from app.core.config import Settings
from app.main import create_app
from app.signing.engine import SignOptions, sign_pdf
from tests.factories import Credentials, assert_problem, audit_events, bearer, login
from tests.keys import Issued, issue, make_ca, pem_of, signer_of
from tests.pdfs import make_pdf


@pytest.fixture(scope="module")
def ca() -> Issued:
    return make_ca()


@pytest.fixture
def verifying(settings: Settings, tmp_path: Path, ca: Issued) -> Iterator[TestClient]:
    bundle = tmp_path / "roots.pem"
    bundle.write_bytes(pem_of(ca))
    app = create_app(
        settings.model_copy(
            update={"trust_roots_file": bundle, "validation_online": False}
        )
    )
    with TestClient(app) as client:
        yield client
    app.state.engine.dispose()


@pytest.fixture
def headers(verifying: TestClient, admin: Credentials) -> dict[str, str]:
    return bearer(login(verifying, admin)["access_token"])


def signed_pdf(ca: Issued, name: str = "Alice") -> bytes:
    out = io.BytesIO()
    sign_pdf(
        io.BytesIO(make_pdf()),
        out,
        signer_of(issue(ca, name), ca),
        SignOptions(reason="ok"),
        signing_time=datetime.now(UTC),
    )
    return out.getvalue()


def verify(client: TestClient, headers: dict[str, str], pdf: bytes) -> Any:
    return client.post(
        "/api/v1/verify",
        files={"file": ("x.pdf", pdf, "application/pdf")},
        headers=headers,
    )


def test_valid_signature_report(
    verifying: TestClient,
    headers: dict[str, str],
    ca: Issued,
    session_factory: sessionmaker[Session],
) -> None:
    response = verify(verifying, headers, signed_pdf(ca))
    assert response.status_code == 200, response.text
    report = response.json()
    assert (report["signature_count"], report["all_valid"]) == (1, True)
    [signature] = report["signatures"]
    assert signature["signer_subject"].endswith("Common Name: Alice")
    assert (
        signature["intact"],
        signature["valid"],
        signature["trusted"],
        signature["pades_level"],
    ) == (True, True, True, "B-B")
    assert signature["coverage"] == "entire_file"
    assert report["provenance"] == {
        "produced_here": False,
        "document_id": None,
        "version": None,
    }
    [event] = audit_events(session_factory, "document.verified")
    assert event.details["all_valid"] is True


def test_unsigned_and_tampered_pdfs_get_reports(
    verifying: TestClient, headers: dict[str, str], ca: Issued
) -> None:
    unsigned = verify(verifying, headers, make_pdf()).json()
    assert (
        unsigned["signature_count"],
        unsigned["all_valid"],
        unsigned["signatures"],
    ) == (0, False, [])
    tampered = bytearray(signed_pdf(ca))
    tampered[300] ^= 0x01
    report = verify(verifying, headers, bytes(tampered)).json()
    assert report["all_valid"] is False
    assert report["signatures"][0]["intact"] is False


def test_untrusted_signer_is_reported(
    verifying: TestClient, headers: dict[str, str]
) -> None:
    stranger = make_ca("Stranger CA")
    [signature] = verify(verifying, headers, signed_pdf(stranger)).json()["signatures"]
    assert (signature["intact"], signature["trusted"], signature["bottom_line"]) == (
        True,
        False,
        False,
    )
    assert any("trusted root" in problem for problem in signature["problems"])


def test_untrusted_signature_logs_one_line_without_a_traceback(
    verifying: TestClient, headers: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    pdf = signed_pdf(make_ca("Stranger CA"), name="Mallory")
    caplog.set_level(logging.WARNING)
    assert verify(verifying, headers, pdf).status_code == 200
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert [(r.name, r.exc_info) for r in warnings] == [("signvault.signing", None)]
    [line] = warnings[0].getMessage().splitlines()
    assert "Mallory" in line
    assert "does not chain to a trusted root" in line


def test_unreadable_files_are_refused_clearly(
    verifying: TestClient, headers: dict[str, str]
) -> None:
    assert_problem(
        verify(verifying, headers, b"%PDF-1.4 nonsense"), 422, "pdf_unreadable"
    )
    assert_problem(verify(verifying, headers, b"hello"), 422, "pdf_unreadable")


def test_stored_document_verification_and_provenance(
    verifying: TestClient, headers: dict[str, str], ca: Issued
) -> None:
    pdf = signed_pdf(ca)
    document = verifying.post(
        "/api/v1/documents",
        files={"file": ("s.pdf", pdf, "application/pdf")},
        headers=headers,
    ).json()
    assert document["status"] == "signed"
    report = verifying.post(
        f"/api/v1/documents/{document['id']}/verify", headers=headers
    ).json()
    assert report["all_valid"] is True
    # an upload, not an output of this server: known, but not produced here
    assert report["provenance"] == {
        "produced_here": False,
        "document_id": document["id"],
        "version": 1,
    }
