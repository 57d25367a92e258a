"""No request makes the server parse, validate or report more than a bounded amount."""

import base64
import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import anyio
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker
from starlette.types import Message, Scope

from app.auth.router import UNAUTHENTICATED_PATHS
from app.core.errors import MAX_INVALID_PARAMS
from app.core.schemas import RequestSchema
from app.core.security import PasswordHasher, max_concurrent_hashes
from tests.core.test_route_walk import PUBLIC
from tests.factories import assert_problem, set_rate_limits


def _many_keys(count: int) -> bytes:
    return json.dumps({f"k{i}": 0 for i in range(count)}).encode()


# -- JSON and form bodies are capped before they are parsed -------------------


def test_json_body_over_the_json_limit_is_413_before_parsing(
    client: TestClient, app: FastAPI
) -> None:
    limit = app.state.settings.max_json_bytes
    body = _many_keys(200_000)
    assert limit < len(body) < app.state.settings.max_upload_bytes
    response = client.post(
        "/api/v1/auth/login",
        content=body,
        headers={"Content-Type": "application/json"},
    )
    problem = assert_problem(response, 413, "payload_too_large")
    assert "SIGNVAULT_MAX_JSON_BYTES" in problem["detail"]
    assert problem["max_bytes"] == limit


def test_streamed_json_body_over_the_limit_is_413(
    client: TestClient, app: FastAPI
) -> None:
    limit = app.state.settings.max_json_bytes

    def chunks() -> Iterator[bytes]:  # no Content-Length: the bytes are counted
        yield b'{"username": "'
        for _ in range(limit // 65536 + 1):
            yield b"x" * 65536
        yield b'"}'

    response = client.post(
        "/api/v1/auth/refresh",
        content=chunks(),
        headers={"Content-Type": "application/json"},
    )
    assert_problem(response, 413, "payload_too_large")


def test_urlencoded_body_over_the_limit_is_413(
    client: TestClient, app: FastAPI
) -> None:
    limit = app.state.settings.max_json_bytes
    response = client.post(
        "/api/v1/auth/token",
        content=b"grant_type=password&username=a&password=" + b"x" * limit,
        headers={"Content-Type": "application/x-www-form-urlencoded"},
    )
    assert_problem(response, 413, "payload_too_large")


def test_untyped_body_is_held_to_the_json_limit(
    client: TestClient, app: FastAPI
) -> None:
    response = client.post(
        "/api/v1/auth/login",
        content=b" " * (app.state.settings.max_json_bytes + 1),
        headers={"Content-Type": ""},
    )
    assert_problem(response, 413, "payload_too_large")


def test_base64_pkcs12_route_allows_its_file_above_the_json_limit(
    client: TestClient, app: FastAPI, admin_headers: dict[str, str]
) -> None:
    # A file just under SIGNVAULT_PKCS12_MAX_BYTES is over 1 MiB once in base64.
    data = b"\x00" * (app.state.settings.pkcs12_max_bytes - 10)
    body = {"data_base64": base64.b64encode(data).decode()}
    assert len(json.dumps(body)) > app.state.settings.max_json_bytes
    response = client.post(
        "/api/v1/certificates/inspect/base64", json=body, headers=admin_headers
    )
    assert response.status_code == 422, response.text  # read and refused, not 413


def test_multipart_upload_keeps_the_upload_limit(
    client: TestClient, app: FastAPI, admin_headers: dict[str, str]
) -> None:
    # 2 MiB of multipart is over the JSON limit but far under the upload limit.
    response = client.post(
        "/api/v1/certificates/inspect",
        files={
            "file": ("big.p12", b"\x00" * (2 * 1024 * 1024), "application/x-pkcs12")
        },
        headers=admin_headers,
    )
    # Refused by the PKCS#12 file's own limit, not the body's.
    assert_problem(response, 422, "pkcs12_too_large")


# -- validation errors are bounded -------------------------------------------


def test_a_million_unknown_keys_make_one_short_error(client: TestClient) -> None:
    # 80,000 keys fit in the 1 MiB JSON limit; each used to be an error of its own.
    body = _many_keys(80_000)
    response = client.post(
        "/api/v1/auth/login",
        content=body,
        headers={"Content-Type": "application/json"},
    )
    problem = assert_problem(response, 422, "validation_failed")
    assert len(response.content) < 4096
    unknown = [p for p in problem["invalid_params"] if p["name"] == "body"]
    assert len(unknown) == 1
    assert "80000 unknown fields" in unknown[0]["reason"]
    assert "k0, k1" in unknown[0]["reason"]


def test_invalid_params_are_capped_with_a_count_of_the_rest(
    client: TestClient,
) -> None:
    # 20 unknown fields (each reported) plus the two missing ones: 22 errors.
    body = {f"extra{i}": 1 for i in range(MAX_INVALID_PARAMS)}
    response = client.post("/api/v1/auth/login", json=body)
    problem = assert_problem(response, 422, "validation_failed")
    assert len(problem["invalid_params"]) == MAX_INVALID_PARAMS
    assert problem["invalid_params_omitted"] == 2
    assert "2 more" in problem["detail"]


def test_few_unknown_fields_are_still_named_each(client: TestClient) -> None:
    response = client.post(
        "/api/v1/auth/login",
        json={"username": "a", "password": "b", "colour": "red"},
    )
    problem = assert_problem(response, 422, "validation_failed")
    assert [p["name"] for p in problem["invalid_params"]] == ["colour"]
    assert "invalid_params_omitted" not in problem


def _request_schemas() -> set[type[RequestSchema]]:
    found: set[type[RequestSchema]] = set()
    pending = [RequestSchema]
    while pending:
        for sub in pending.pop().__subclasses__():
            found.add(sub)
            pending.append(sub)
    return found


def _unbounded_arrays(node: Any, path: str) -> Iterator[str]:
    if isinstance(node, dict):
        if node.get("type") == "array" and not {"maxItems", "prefixItems"} & set(node):
            yield path
        for key, value in node.items():
            yield from _unbounded_arrays(value, f"{path}/{key}")
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _unbounded_arrays(value, f"{path}/{index}")


def test_every_list_in_a_request_body_has_a_maximum_length(app: FastAPI) -> None:
    # One error per item at most: a bounded list bounds the errors it can cause.
    schemas = _request_schemas()
    assert len(schemas) > 20
    unbounded = [
        path
        for schema in schemas
        for path in _unbounded_arrays(schema.model_json_schema(), schema.__name__)
    ]
    assert unbounded == []


# -- routes that need no token are throttled before their bodies are read -----


def _limit_unauthenticated(factory: sessionmaker[Session], per_minute: int) -> None:
    set_rate_limits(factory, login_attempts_per_minute_per_ip=per_minute)


def test_every_public_post_route_is_throttled(app: FastAPI) -> None:
    public_posts = {path for method, path in PUBLIC if method == "POST"}
    assert public_posts == set(UNAUTHENTICATED_PATHS)


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/auth/login",
        "/api/v1/auth/token",
        "/api/v1/auth/refresh",
        "/api/v1/auth/revoke",
    ],
)
def test_over_the_limit_the_body_is_never_read(
    client: TestClient,
    app: FastAPI,
    session_factory: sessionmaker[Session],
    path: str,
) -> None:
    _limit_unauthenticated(session_factory, 1)
    first = client.post(path, json={})
    assert first.status_code != 429
    reads: list[Message] = []
    sent: list[Message] = []

    async def receive() -> Message:
        reads.append({})
        return {"type": "http.request", "body": b"{}", "more_body": False}

    async def send(message: Message) -> None:
        sent.append(message)

    scope: Scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [
            (b"host", b"testserver"),
            (b"content-type", b"application/json"),
            (b"content-length", b"2"),
        ],
        "client": ("testclient", 50000),
        "server": ("testserver", 80),
        "app": app,
        "state": {},
    }
    anyio.run(app, scope, receive, send)
    start = next(m for m in sent if m["type"] == "http.response.start")
    headers = dict(start["headers"])
    assert start["status"] == 429
    assert headers[b"content-type"] == b"application/problem+json"
    assert 1 <= int(headers[b"retry-after"]) <= 60
    assert reads == []


def test_refused_logins_are_answered_429_with_retry_after(
    client: TestClient, session_factory: sessionmaker[Session]
) -> None:
    _limit_unauthenticated(session_factory, 2)
    for _ in range(2):
        assert (
            client.post("/api/v1/auth/refresh", json={"refresh_token": "x"}).status_code
            == 401
        )
    response = client.post(
        "/api/v1/auth/login",
        content=_many_keys(50_000),
        headers={"Content-Type": "application/json"},
    )
    assert_problem(response, 429, "too_many_requests")
    assert 1 <= int(response.headers["retry-after"]) <= 60


def test_raw_licence_upload_is_held_to_the_small_limit(
    client: TestClient, app: FastAPI, admin_headers: dict[str, str]
) -> None:
    # A licence file is at most 64 KiB; a raw body used to be read up to 50 MB first.
    response = client.post(
        "/api/v1/license",
        content=b"x" * (app.state.settings.max_json_bytes + 1),
        headers={**admin_headers, "Content-Type": "application/octet-stream"},
    )
    assert_problem(response, 413, "payload_too_large")


def test_password_hashes_run_at_most_one_per_core_at_once_on_as_many_threads(
    app: FastAPI,
) -> None:
    # Each argon2 hash holds SIGNVAULT_ARGON2_MEMORY_KIB (19 MiB by default) while it
    # runs, and a thread that ever hashed keeps it in its malloc arena afterwards.
    hasher: PasswordHasher = app.state.password_hasher
    running, peak = 0, 0
    hashing_threads: set[int] = set()
    lock = threading.Lock()
    real_verify = hasher._context.verify

    def counting_verify(secret: str, stored: str) -> bool:
        nonlocal running, peak
        with lock:
            running += 1
            peak = max(peak, running)
            hashing_threads.add(threading.get_ident())
        time.sleep(0.05)
        with lock:
            running -= 1
        return bool(real_verify(secret, stored))

    hasher._context.verify = counting_verify  # type: ignore[method-assign]
    threads = [
        threading.Thread(target=hasher.verify, args=("guess", None)) for _ in range(8)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert 1 <= peak <= max_concurrent_hashes() < 8
    assert len(hashing_threads) <= max_concurrent_hashes()
