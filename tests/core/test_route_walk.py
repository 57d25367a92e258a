"""Every route declares its entitlement, unless it is on the short public list."""

import re

from fastapi import FastAPI
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from starlette.routing import Mount

from app.access.entitlements import ALL
from app.access.policy import Require

PUBLIC = {
    ("GET", "/health"),
    ("GET", "/ready"),
    ("GET", "/docs"),
    ("GET", "/docs/oauth2-redirect"),
    ("GET", "/openapi.json"),
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


def test_every_route_declares_an_entitlement_or_is_public(app: FastAPI) -> None:
    unprotected, wrong = [], []
    for route in app.routes:
        if isinstance(route, Mount):
            assert route.path == "/docs-static", f"unexpected mount {route.path}"
            continue
        methods = getattr(route, "methods", None) or set()
        for method in methods - {"HEAD"}:
            key = (method, getattr(route, "path", ""))
            found = requirements(route.dependant) if isinstance(route, APIRoute) else []
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
    for route in app.routes:
        if not isinstance(route, APIRoute) or not requirements(route.dependant):
            continue
        if route.path == "/metrics":
            continue  # public by default; see tests/system
        path = re.sub(r"\{[a-z_]+\}", "00000000-0000-0000-0000-000000000000", route.path)
        for method in route.methods or ():
            response = client.request(method, path)
            assert response.status_code == 401, (method, path, response.text)
            assert response.headers["content-type"] == "application/problem+json"
