"""Hostile input to lists, base64 fields and partial updates: a 4xx problem, never a 500."""

from typing import Any

import pytest
from fastapi.testclient import TestClient

from app.core.pagination import MAX_OFFSET
from tests.conftest import POSTGRES_URL
from tests.factories import Credentials, assert_problem
from tests.pdfs import make_pdf


@pytest.fixture
def client(app: Any) -> Any:
    # A 500 is an answer to assert on here, not an exception in the test.
    with TestClient(app, raise_server_exceptions=False) as test_client:
        yield test_client


def list_paths(client: TestClient) -> list[str]:
    """Every operation that takes the shared `offset` parameter."""
    return sorted(
        path
        for path, operations in client.app.openapi()["paths"].items()  # type: ignore[attr-defined]
        for method, operation in operations.items()
        if method == "get"
        and any(p["name"] == "offset" for p in operation.get("parameters", []))
    )


def test_offset_beyond_the_documented_maximum_is_422_on_every_list(
    client: TestClient, admin_headers: dict[str, str]
) -> None:
    paths = list_paths(client)
    assert len(paths) >= 10, paths
    for path in paths:
        for offset in (2**63, MAX_OFFSET + 1):
            response = client.get(
                path, params={"offset": offset}, headers=admin_headers
            )
            body = assert_problem(response, 422, "validation_failed")
            assert [p["name"] for p in body["invalid_params"]] == ["offset"], path
        # The maximum itself still fits every database's integers (offset + limit too).
        at_cap = client.get(
            path, params={"offset": MAX_OFFSET, "limit": 1000}, headers=admin_headers
        )
        assert at_cap.status_code == 200, (path, at_cap.text)
        assert (at_cap.json()["offset"], at_cap.json()["data"]) == (MAX_OFFSET, [])
    searched = client.get(
        "/api/v1/audit-logs",
        params={"offset": MAX_OFFSET, "action": "user."},
        headers=admin_headers,
    )
    assert searched.status_code == 200, searched.text


NON_ASCII = "QUJD\u00c4\u00d6=="  # base64 letters with two non-ASCII ones among them


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/api/v1/license", {"license_base64": NON_ASCII}, "license_base64"),
        (
            "/api/v1/certificates/base64",
            {"pkcs12_base64": NON_ASCII, "password": "secret"},
            "pkcs12_base64",
        ),
        (
            "/api/v1/certificates/inspect/base64",
            {"data_base64": NON_ASCII},
            "data_base64",
        ),
    ],
    ids=["license", "pkcs12-import", "inspect"],
)
def test_non_ascii_in_a_base64_field_is_422_naming_the_field(
    client: TestClient,
    admin_headers: dict[str, str],
    path: str,
    body: dict[str, Any],
    field: str,
) -> None:
    response = client.post(path, json=body, headers=admin_headers)
    problem = assert_problem(response, 422, "validation_failed")
    assert [p["name"] for p in problem["invalid_params"]] == [field]
    assert field in problem["detail"]
    assert NON_ASCII not in response.text  # the content is never echoed


def test_non_ascii_http_basic_credentials_are_401(client: TestClient) -> None:
    response = client.post(
        "/api/v1/auth/token",
        data={"grant_type": "client_credentials"},
        # Latin-1 bytes on the wire: Starlette reads them as non-ASCII text.
        headers={"Authorization": b"Basic \xc4\xd6\xdc="},  # type: ignore[dict-item]
    )
    assert response.status_code == 401, response.text
    assert response.json()["error"] == "invalid_client"


@pytest.mark.parametrize(
    ("path", "field"),
    [
        ("/api/v1/audit-logs/settings", "audit_trail_enabled"),
        ("/api/v1/users/{admin}", "full_name"),
        ("/api/v1/documents/{document}", "description"),
    ],
    ids=["audit-settings", "user", "document"],
)
def test_null_for_a_field_that_cannot_be_null_is_422(
    client: TestClient,
    admin: Credentials,
    admin_headers: dict[str, str],
    path: str,
    field: str,
) -> None:
    document = client.post(
        "/api/v1/documents",
        files={"file": ("a.pdf", make_pdf(), "application/pdf")},
        headers=admin_headers,
    ).json()["id"]
    url = path.format(admin=admin.user_id, document=document)
    method = client.put if "settings" in path else client.patch
    before = client.get(url, headers=admin_headers).json()
    response = method(url, json={field: None}, headers=admin_headers)
    problem = assert_problem(response, 422, "validation_failed")
    assert [p["name"] for p in problem["invalid_params"]] == [field]
    assert client.get(url, headers=admin_headers).json() == before
    # Leaving the field out still leaves it unchanged.
    assert method(url, json={}, headers=admin_headers).status_code == 200
    assert client.get(url, headers=admin_headers).json()[field] == before[field]


def test_a_nul_character_in_a_search_is_never_a_500(
    client: TestClient, admin_headers: dict[str, str]
) -> None:
    # PostgreSQL refuses NUL in text (a DataError, found by the fuzz test); SQLite searches for it.
    response = client.get("/api/v1/users?q=a%00b", headers=admin_headers)
    if POSTGRES_URL:
        assert_problem(response, 422, "validation_failed")
    else:
        assert response.status_code == 200, response.text
    created = client.post(
        "/api/v1/departments", json={"name": "a\u0000b"}, headers=admin_headers
    )
    assert created.status_code in (201, 422), created.text
