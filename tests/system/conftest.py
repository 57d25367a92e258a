"""A signer and the two writes a full disk refuses first: an upload and a signature."""

from typing import Any

import httpx2
import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from app.core.security import PasswordHasher
from tests.certificates.pki import Issued, make_ca
from tests.factories import assert_problem, make_user
from tests.pdfs import make_pdf
from tests.signing.test_sign_api import Signer, enrol_signer

DOCS = "/api/v1/documents"


@pytest.fixture(scope="module")
def ca() -> Issued:
    return make_ca()


@pytest.fixture
def alice(
    client: TestClient,
    admin_headers: dict[str, str],
    session_factory: sessionmaker[Session],
    hasher: PasswordHasher,
    ca: Issued,
) -> Signer:
    user = make_user(session_factory, hasher, username="alice")
    return enrol_signer(client, admin_headers, user, ca, "Alice")


def upload(client: TestClient, headers: dict[str, str]) -> httpx2.Response:
    return client.post(
        DOCS,
        files={"file": ("doc.pdf", make_pdf(pages=1), "application/pdf")},
        headers=headers,
    )


def sign(client: TestClient, signer: Signer, document_id: str) -> httpx2.Response:
    return client.post(
        f"{DOCS}/{document_id}/sign",
        json={"certificate_id": signer.certificate_id},
        headers=signer.headers,
    )


def assert_insufficient_storage(response: httpx2.Response) -> dict[str, Any]:
    body = assert_problem(response, 507, "insufficient_storage")
    assert int(response.headers["retry-after"]) > 0
    return body
