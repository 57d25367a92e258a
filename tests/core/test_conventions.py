"""Cross-cutting conventions: problem+json errors, request ids, pagination, times."""

import re
from collections.abc import Iterator

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from app.core.errors import Conflict, TooManyRequests
from app.core.routing import AppRoute
from app.core.schemas import RequestSchema
from tests.factories import assert_problem


class Echo(RequestSchema):
    name: str


@pytest.fixture
def probe_client(app: FastAPI) -> Iterator[TestClient]:
    """The app plus a few routes that fail on purpose, to see how failures render."""

    def conflict() -> None:
        raise Conflict("Already there.")

    def throttled() -> None:
        raise TooManyRequests("Slow down.", headers={"Retry-After": "3"})

    def crash() -> None:
        raise RuntimeError("secret internals: password=hunter2")

    def echo(body: Echo) -> Echo:
        return body

    app.router.route_class = AppRoute
    app.add_api_route("/probe/conflict", conflict)
    app.add_api_route("/probe/throttled", throttled)
    app.add_api_route("/probe/crash", crash)
    app.add_api_route("/probe/echo", echo, methods=["POST"])
    with TestClient(app, raise_server_exceptions=False) as client:
        yield client


def test_unknown_path_is_a_404_problem(client: TestClient) -> None:
    assert_problem(client.get("/no/such/thing"), 404, "not_found")


def test_wrong_method_is_a_405_problem(client: TestClient) -> None:
    assert_problem(client.delete("/health"), 405, "method_not_allowed")


def test_missing_token_is_a_401_problem_with_challenge(client: TestClient) -> None:
    response = client.get("/api/v1/clients")
    assert_problem(response, 401, "not_authenticated")
    assert response.headers["www-authenticate"].startswith("Bearer")


def test_conflict_and_throttling_render_as_problems(probe_client: TestClient) -> None:
    assert (
        assert_problem(probe_client.get("/probe/conflict"), 409, "conflict")["detail"]
        == "Already there."
    )
    response = probe_client.get("/probe/throttled")
    assert_problem(response, 429, "too_many_requests")
    assert response.headers["retry-after"] == "3"


def test_unexpected_error_is_a_500_problem_without_internals(
    probe_client: TestClient,
) -> None:
    response = probe_client.get(
        "/probe/crash", headers={"X-Request-ID": "trace-me-123"}
    )
    body = assert_problem(response, 500, "internal_error")
    assert body["trace_id"] == "trace-me-123"
    assert "hunter2" not in response.text
    assert "Traceback" not in response.text
    assert "RuntimeError" not in response.text


def test_validation_error_lists_invalid_params(probe_client: TestClient) -> None:
    body = assert_problem(
        probe_client.post("/probe/echo", json={"name": 5, "extra": 1}),
        422,
        "validation_failed",
    )
    names = {param["name"] for param in body["invalid_params"]}
    assert names == {"name", "extra"}


def test_malformed_json_is_a_422_problem(probe_client: TestClient) -> None:
    response = probe_client.post(
        "/probe/echo", content=b"{nope", headers={"Content-Type": "application/json"}
    )
    assert_problem(response, 422, "validation_failed")


def test_form_body_on_a_json_route_is_a_415_problem(probe_client: TestClient) -> None:
    response = probe_client.post("/probe/echo", data={"name": "x"})
    body = assert_problem(response, 415, "unsupported_media_type")
    assert "application/json" in str(body["detail"])


def test_body_over_the_limit_is_a_413_problem(
    probe_client: TestClient, app: FastAPI
) -> None:
    limit = app.state.settings.max_json_bytes
    response = probe_client.post(
        "/probe/echo",
        content=b"x" * (limit + 1),
        headers={"Content-Type": "application/json"},
    )
    body = assert_problem(response, 413, "payload_too_large")
    assert str(limit) in str(body["detail"])
    assert "SIGNVAULT_MAX_JSON_BYTES" in str(body["detail"])


def test_streamed_body_over_the_limit_is_a_413_problem(
    probe_client: TestClient, app: FastAPI
) -> None:
    limit = app.state.settings.max_json_bytes

    def chunks() -> Iterator[bytes]:
        for _ in range(limit // 65536 + 2):
            yield b"x" * 65536

    response = probe_client.post(
        "/probe/echo", content=chunks(), headers={"Content-Type": "application/json"}
    )
    assert_problem(response, 413, "payload_too_large")


def test_request_id_is_echoed_or_generated(client: TestClient) -> None:
    assert (
        client.get("/health", headers={"X-Request-ID": "abc-123"}).headers[
            "x-request-id"
        ]
        == "abc-123"
    )
    generated = client.get("/health").headers["x-request-id"]
    assert re.fullmatch(r"[0-9a-f]{32}", generated)
    # a header that could forge log lines is replaced, not echoed
    forged = client.get("/health", headers={"X-Request-ID": "x" * 300}).headers[
        "x-request-id"
    ]
    assert forged != "x" * 300


def test_list_envelope_pagination_and_sorting(
    client: TestClient, admin_headers: dict[str, str]
) -> None:
    for name in ("charlie", "alpha", "bravo"):
        created = client.post(
            "/api/v1/clients",
            json={"name": name, "entitlements": ["documents:read"]},
            headers=admin_headers,
        )
        assert created.status_code == 201
    page = client.get(
        "/api/v1/clients?sort=+name&limit=2", headers=admin_headers
    ).json()
    assert {k: page[k] for k in ("offset", "limit", "count", "total")} == {
        "offset": 0,
        "limit": 2,
        "count": 2,
        "total": 3,
    }
    assert [c["name"] for c in page["data"]] == ["alpha", "bravo"]
    rest = client.get(
        "/api/v1/clients?sort=name&offset=2", headers=admin_headers
    ).json()
    assert [c["name"] for c in rest["data"]] == ["charlie"]
    newest_first = client.get("/api/v1/clients", headers=admin_headers).json()
    assert [c["name"] for c in newest_first["data"]] == ["bravo", "alpha", "charlie"]
    assert newest_first["limit"] == 100
    # ids are UUIDs and times are UTC with Z
    first = newest_first["data"][0]
    assert re.fullmatch(r"[0-9a-f-]{36}", first["id"])
    assert first["created_at"].endswith("Z")


def test_bad_pagination_parameters_are_422(
    client: TestClient, admin_headers: dict[str, str]
) -> None:
    body = assert_problem(
        client.get("/api/v1/clients?sort=secret_digest", headers=admin_headers),
        422,
        "validation_failed",
    )
    assert "secret_digest" in str(body["detail"])
    assert_problem(
        client.get("/api/v1/clients?limit=1001", headers=admin_headers),
        422,
        "validation_failed",
    )
    assert_problem(
        client.get("/api/v1/clients?offset=-1", headers=admin_headers),
        422,
        "validation_failed",
    )
