"""Hostile PDFs on upload and on /verify: 422 `pdf_unreadable` with a reason, never a 500."""

from collections.abc import Iterator

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from app.documents.models import Document
from app.signing.engine import MAX_PAGE_TREE_DEPTH, MAX_PAGES
from tests.factories import assert_problem
from tests.pdfs import (
    LETTER_PAGE,
    make_pdf,
    nested_arrays,
    pdf_with_pages,
    raw_pdf,
)

DOCS = "/api/v1/documents"
CATALOG = b"<< /Type /Catalog /Pages 2 0 R >>"
DEEP = nested_arrays(100_000)


@pytest.fixture
def client(app: FastAPI) -> Iterator[TestClient]:
    # A 500 is an answer to assert on here, not an exception in the test.
    with TestClient(app, raise_server_exceptions=False) as test_client:
        yield test_client


def deep_page_tree(levels: int) -> bytes:
    """A chain of `levels` /Pages nodes (objects 2, 3, ...) above one page."""
    nodes = [
        b"<< /Type /Pages /Kids [%d 0 R] /Count 1 >>" % (3 + level)
        for level in range(levels)
    ]
    page = b"<< /Type /Page /MediaBox [0 0 612 792] >>"
    return raw_pdf([CATALOG, *nodes, page])


HOSTILE = {
    "page-count-1e23": (
        pdf_with_pages([LETTER_PAGE], count=b"100000000000000000000000"),
        "declares 100000000000000000000000 pages",
    ),
    "page-count-negative": (pdf_with_pages([LETTER_PAGE], count=b"-1"), "declares -1"),
    "page-count-not-a-number": (
        pdf_with_pages([LETTER_PAGE], count=b"(x)"),
        "declares",
    ),
    "page-count-above-the-cap": (
        pdf_with_pages([LETTER_PAGE], count=b"%d" % (MAX_PAGES + 1)),
        f"at most {MAX_PAGES}",
    ),
    "page-count-false": (pdf_with_pages([LETTER_PAGE] * 2, count=b"1"), "more pages"),
    "page-count-short": (pdf_with_pages([LETTER_PAGE], count=b"3"), "holds 1"),
    "tree-references-itself": (
        raw_pdf([CATALOG, b"<< /Type /Pages /Kids [2 0 R] /Count 1 >>"]),
        "loops back on itself",
    ),
    "child-references-the-root": (
        raw_pdf(
            [
                CATALOG,
                b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
                b"<< /Type /Pages /Parent 2 0 R /Kids [2 0 R] /Count 1 >>",
            ]
        ),
        "loops back on itself",
    ),
    "tree-too-deep": (deep_page_tree(MAX_PAGE_TREE_DEPTH + 1), "deeper than"),
    "nested-arrays-in-the-catalog": (
        pdf_with_pages([LETTER_PAGE], catalog_extra=b" /Deep " + DEEP),
        "nested too deeply",
    ),
    "nested-arrays-in-a-page": (
        pdf_with_pages([LETTER_PAGE[:-2] + b"/Deep " + DEEP + b" >>"]),
        "nested too deeply",
    ),
    "nested-arrays-in-the-info": (
        raw_pdf(
            [
                CATALOG,
                b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
                LETTER_PAGE,
                b"<< /Title " + DEEP + b" >>",
            ],
            info=4,
        ),
        "nested too deeply",
    ),
}


@pytest.mark.parametrize(("pdf", "reason"), HOSTILE.values(), ids=HOSTILE.keys())
def test_hostile_pdf_upload_is_422_and_stores_nothing(
    client: TestClient,
    admin_headers: dict[str, str],
    session_factory: sessionmaker[Session],
    pdf: bytes,
    reason: str,
) -> None:
    response = client.post(
        DOCS,
        files={"file": ("hostile.pdf", pdf, "application/pdf")},
        headers=admin_headers,
    )
    body = assert_problem(response, 422, "pdf_unreadable")
    assert reason in body["detail"]
    with session_factory() as session:
        assert session.scalar(select(func.count()).select_from(Document)) == 0


def test_nested_arrays_on_verify_are_422_and_the_server_goes_on(
    client: TestClient, admin_headers: dict[str, str]
) -> None:
    hostile = pdf_with_pages([LETTER_PAGE], catalog_extra=b" /Deep " + DEEP)
    for _ in range(3):  # on whichever worker threads answer
        response = client.post(
            "/api/v1/verify",
            files={"file": ("hostile.pdf", hostile, "application/pdf")},
            headers=admin_headers,
        )
        body = assert_problem(response, 422, "pdf_unreadable")
        assert "nested too deeply" in body["detail"]
        uploaded = client.post(
            DOCS,
            files={"file": ("hostile.pdf", hostile, "application/pdf")},
            headers=admin_headers,
        )
        assert_problem(uploaded, 422, "pdf_unreadable")
    # The threads that met the recursion still parse, validate and store.
    fine = make_pdf(pages=2)
    verified = client.post(
        "/api/v1/verify",
        files={"file": ("fine.pdf", fine, "application/pdf")},
        headers=admin_headers,
    )
    assert verified.status_code == 200, verified.text
    stored = client.post(
        DOCS,
        files={"file": ("fine.pdf", fine, "application/pdf")},
        headers=admin_headers,
    )
    assert (stored.status_code, stored.json()["page_count"]) == (201, 2)


def test_a_page_tree_of_nodes_is_counted_through_its_levels(
    client: TestClient, admin_headers: dict[str, str]
) -> None:
    response = client.post(
        DOCS,
        files={
            "file": (
                "deep.pdf",
                deep_page_tree(MAX_PAGE_TREE_DEPTH - 1),
                "application/pdf",
            )
        },
        headers=admin_headers,
    )
    assert (response.status_code, response.json()["page_count"]) == (201, 1)
