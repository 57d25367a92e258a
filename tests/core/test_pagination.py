"""List totals are counted up to a bound, and pages keep one order across requests."""

import pytest
from fastapi.testclient import TestClient

from app.core import pagination
from tests.documents.test_documents import DOCS, upload
from tests.pdfs import make_pdf


@pytest.fixture
def five_documents(client: TestClient, admin_headers: dict[str, str]) -> list[str]:
    return [
        upload(client, admin_headers, make_pdf(), title=f"Doc {n}").json()["id"]
        for n in range(5)
    ]


def test_a_total_past_the_count_limit_is_a_lower_bound(
    client: TestClient,
    admin_headers: dict[str, str],
    five_documents: list[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    exact = client.get(f"{DOCS}?limit=2", headers=admin_headers).json()
    assert (exact["total"], exact["total_exact"]) == (5, True)

    monkeypatch.setattr(pagination, "COUNT_LIMIT", 3)
    first = client.get(f"{DOCS}?limit=2", headers=admin_headers).json()
    assert (first["count"], first["total"], first["total_exact"]) == (2, 3, False)
    # Rows seen past the bound raise it: the total never claims fewer than were shown.
    last = client.get(f"{DOCS}?limit=2&offset=4", headers=admin_headers).json()
    assert (last["count"], last["total"], last["total_exact"]) == (1, 5, False)
    audit = client.get("/api/v1/audit-logs?limit=1", headers=admin_headers).json()
    assert (audit["total"], audit["total_exact"]) == (3, False)
    prefix = client.get(
        "/api/v1/audit-logs?limit=1&action=document.", headers=admin_headers
    ).json()
    assert (prefix["total"], prefix["total_exact"]) == (3, False)

    monkeypatch.setattr(pagination, "COUNT_LIMIT", 5)
    at_the_bound = client.get(f"{DOCS}?limit=2", headers=admin_headers).json()
    assert (at_the_bound["total"], at_the_bound["total_exact"]) == (5, True)


@pytest.mark.parametrize("sort", ["-created_at", "created_at"])
def test_pages_of_rows_created_together_follow_one_order(
    client: TestClient,
    admin_headers: dict[str, str],
    five_documents: list[str],
    sort: str,
) -> None:
    seen = [
        d["id"]
        for offset in range(0, 5, 2)
        for d in client.get(
            f"{DOCS}?limit=2&offset={offset}&sort={sort}", headers=admin_headers
        ).json()["data"]
    ]
    whole = [
        d["id"]
        for d in client.get(f"{DOCS}?sort={sort}", headers=admin_headers).json()["data"]
    ]
    assert seen == whole
    assert sorted(seen) == sorted(five_documents)
    if sort.startswith("-"):
        assert whole[0] == five_documents[-1]
    else:
        assert whole[0] == five_documents[0]
