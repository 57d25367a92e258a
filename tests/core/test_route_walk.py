"""Every route declares its entitlement, unless it is on the short public list."""

import re
from collections.abc import Iterator

from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.routing import iter_route_contexts
from fastapi.testclient import TestClient

from app.access.entitlements import ALL
from app.access.policy import Require

PUBLIC = {
    ("GET", "/"),  # a redirect to the web console
    ("GET", "/health"),
    ("GET", "/ready"),
    ("GET", "/docs"),
    ("GET", "/docs/oauth2-redirect"),
    ("GET", "/openapi.json"),
    ("GET", "/.well-known/jwks.json"),
    ("POST", "/api/v1/auth/login"),
    ("POST", "/api/v1/auth/token"),
    ("POST", "/api/v1/auth/refresh"),
    ("POST", "/api/v1/auth/revoke"),
}
# Routes about the caller itself: a valid token, no entitlement.
AUTHENTICATED_ONLY = {
    ("POST", "/api/v1/auth/logout"),
    ("GET", "/api/v1/auth/me"),
    ("POST", "/api/v1/auth/password"),
    ("POST", "/api/v1/auth/2fa/setup"),
    ("POST", "/api/v1/auth/2fa/enable"),
    ("POST", "/api/v1/auth/2fa/disable"),
}


def requirements(dependant: Dependant) -> list[Require]:
    found = [dependant.call] if isinstance(dependant.call, Require) else []
    for sub in dependant.dependencies:
        found.extend(requirements(sub))
    return found


def walk(app: FastAPI) -> Iterator[tuple[str, str, list[Require] | None]]:
    """Every (method, path) the app serves, with its `Require`s (None: not a FastAPI route).

    Since FastAPI 0.16x `app.routes` holds included routers unexpanded;
    `iter_route_contexts` yields the routes inside them.
    """
    for context in iter_route_contexts(app.routes):
        dependant = getattr(context, "dependant", None)
        found = requirements(dependant) if isinstance(dependant, Dependant) else None
        for method in sorted((context.methods or set()) - {"HEAD"}):
            yield method, context.path or "", found


def test_walk_sees_the_routes_of_included_routers(app: FastAPI) -> None:
    paths = {path for _method, path, _found in walk(app)}
    assert {"/api/v1/auth/login", "/api/v1/clients", "/api/v1/users"} <= paths


def test_every_route_declares_an_entitlement_or_is_public(app: FastAPI) -> None:
    unprotected, wrong = [], []
    for method, path, found in walk(app):
        key = (method, path)
        if key in PUBLIC:
            assert not found, f"{key} is public but requires {found}"
            continue
        if not found:
            unprotected.append(key)
        elif key in AUTHENTICATED_ONLY:
            assert all(r.entitlement is None for r in found)
        elif not any(r.entitlement in ALL for r in found):
            wrong.append(key)
    assert unprotected == [], f"routes without a declared entitlement: {unprotected}"
    assert wrong == [], f"routes requiring only authentication: {wrong}"


def test_protected_routes_answer_401_without_a_token(
    client: TestClient, app: FastAPI
) -> None:
    for method, route_path, found in walk(app):
        if not found or route_path == "/metrics":
            continue  # /metrics is public by default; see tests/system
        path = re.sub(
            r"\{[a-z_]+\}", "00000000-0000-0000-0000-000000000000", route_path
        )
        response = client.request(method, path)
        assert response.status_code == 401, (method, path, response.text)
        assert response.headers["content-type"] == "application/problem+json"
