"""Hostile appearances: huge coordinates, boxes off the page, non-ASCII images: 422, never a 500."""

import json
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from app.documents.models import Document
from app.signing.models import Signature
from tests.factories import assert_problem
from tests.license.conftest import issuer
from tests.pdfs import make_pdf, pdf_with_pages
from tests.signing.test_sign_api import DOCS, Signer, alice, ca, settings, upload

__all__ = ["alice", "ca", "issuer", "settings"]  # fixtures shared with test_sign_api

# US Letter, shown through a window: only [100 100 500 700] is visible.
CROPPED = pdf_with_pages(
    [
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792]"
        b" /CropBox [100 100 500 700] >>"
    ]
)


@pytest.fixture
def client(app: FastAPI) -> Iterator[TestClient]:
    # A 500 is an answer to assert on here, not an exception in the test.
    with TestClient(app, raise_server_exceptions=False) as test_client:
        yield test_client


def count(session_factory: sessionmaker[Session], model: Any) -> int:
    with session_factory() as session:
        return session.scalar(select(func.count()).select_from(model)) or 0


def sign(client: TestClient, signer: Signer, document_id: str, **body: Any) -> Any:
    return client.post(
        f"{DOCS}/{document_id}/sign",
        json={"certificate_id": signer.certificate_id, **body},
        headers=signer.headers,
    )


@pytest.mark.parametrize(
    "box",
    [[0, 0, 1e308, 1e308], [-1e308, 0, 10, 10], [0, 0, 14_401, 100]],
    ids=["1e308", "minus-1e308", "beyond-any-page"],
)
def test_coordinates_no_page_can_hold_are_422(
    client: TestClient,
    alice: Signer,
    session_factory: sessionmaker[Session],
    box: list[float],
) -> None:
    document = upload(client, alice.headers)
    response = sign(client, alice, document["id"], appearance={"page": 1, "box": box})
    body = assert_problem(response, 422, "validation_failed")
    assert {p["name"].rsplit(".", 1)[0] for p in body["invalid_params"]} == {
        "appearance.box"
    }
    infinite = client.post(
        f"{DOCS}/{document['id']}/sign",
        content=b'{"appearance": {"page": 1, "box": [0, 0, 1e999, 10]}}',
        headers={**alice.headers, "Content-Type": "application/json"},
    )
    assert_problem(infinite, 422, "validation_failed")
    assert count(session_factory, Signature) == 0


@pytest.mark.parametrize(
    ("pdf", "box"),
    [
        (make_pdf(), [500, 700, 700, 800]),  # A4 is 595 x 842: past the right edge
        (CROPPED, [50, 50, 150, 150]),  # on the MediaBox, outside the CropBox
        (CROPPED, [400, 600, 520, 650]),
    ],
    ids=["off-the-media-box", "off-the-crop-box", "across-the-crop-edge"],
)
def test_box_outside_the_page_is_422_on_stored_documents(
    client: TestClient,
    alice: Signer,
    session_factory: sessionmaker[Session],
    pdf: bytes,
    box: list[float],
) -> None:
    document = upload(client, alice.headers, pdf)
    response = sign(client, alice, document["id"], appearance={"page": 1, "box": box})
    body = assert_problem(response, 422, "appearance_box_outside_page")
    assert "page 1" in body["detail"]
    assert count(session_factory, Signature) == 0
    inside = sign(
        client,
        alice,
        document["id"],
        appearance={"page": 1, "box": [150, 150, 250, 200]},
    )
    assert inside.status_code == 201, inside.text


def test_box_outside_the_page_is_422_on_one_shot_sign_and_stores_nothing(
    client: TestClient, alice: Signer, session_factory: sessionmaker[Session]
) -> None:
    response = client.post(
        "/api/v1/sign",
        files={"file": ("cropped.pdf", CROPPED, "application/pdf")},
        data={
            "certificate_id": alice.certificate_id,
            "appearance": json.dumps({"page": 1, "box": [0, 0, 90, 90]}),
        },
        headers=alice.headers,
    )
    assert_problem(response, 422, "appearance_box_outside_page")
    assert count(session_factory, Document) == 0


def test_box_outside_the_page_fails_the_batch_item_alone(
    client: TestClient, alice: Signer
) -> None:
    cropped, letter = (
        upload(client, alice.headers, CROPPED),
        upload(client, alice.headers),
    )
    response = client.post(
        "/api/v1/batches",
        json={
            "document_ids": [cropped["id"], letter["id"]],
            "certificate_id": alice.certificate_id,
            "appearance": {"page": 1, "box": [50, 50, 150, 150]},
        },
        headers=alice.headers,
    )
    assert response.status_code == 201, response.text
    items = response.json()["items"]
    assert [(i["status"], i["error_code"]) for i in items] == [
        ("failed", "appearance_box_outside_page"),
        ("signed", None),
    ]


def test_non_ascii_appearance_image_is_422(
    client: TestClient, alice: Signer, session_factory: sessionmaker[Session]
) -> None:
    document = upload(client, alice.headers)
    response = sign(
        client,
        alice,
        document["id"],
        appearance={
            "page": 1,
            "box": [50, 50, 250, 110],
            "image_base64": "iVBO\u00c4\u00d6==",
        },
    )
    body = assert_problem(response, 422, "appearance_image_invalid")
    assert [p["name"] for p in body["invalid_params"]] == ["appearance.image_base64"]
    assert count(session_factory, Signature) == 0
