"""The RBAC matrix, generated from the app's routes: every route x every catalogue entitlement.

For each route requiring entitlement E and each entitlement X of the
catalogue, a user holding only X is refused with 403 exactly when X != E.
Routes added later are covered without editing this test.
"""

import re
import uuid
from collections.abc import Callable

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from app.access.entitlements import Entitlement
from app.audit.service import SYSTEM
from app.core.config import Settings
from app.core.security import PasswordHasher
from app.license import service as license_service
from app.settings.models import SettingsSection
from tests.core.test_route_walk import walk
from tests.factories import make_role, make_user, mint_token
from tests.license.conftest import issuer, make_license, public_key_text

ZERO_ID = "00000000-0000-0000-0000-000000000000"
__all__ = ["issuer"]  # the licence issuer fixture of tests/license


@pytest.fixture
def settings(settings: Settings, issuer: Ed25519PrivateKey) -> Settings:
    # /metrics then needs metrics:read like any other protected route; one user per
    # entitlement is more than evaluation mode allows, so a test licence is installed.
    return settings.model_copy(
        update={"metrics_public": False, "license_public_key": public_key_text(issuer)}
    )


def protected_routes(app: FastAPI) -> list[tuple[str, str, Entitlement]]:
    """(method, path with zero ids, the entitlement it requires) of every protected route."""
    routes = []
    for method, path, found in walk(app):
        needed = {r.entitlement for r in found or [] if r.entitlement is not None}
        if needed:
            [entitlement] = needed
            routes.append((method, re.sub(r"\{[a-z_]+\}", ZERO_ID, path), entitlement))
    return routes


def test_each_route_is_refused_exactly_to_holders_of_other_entitlements(
    app: FastAPI,
    client: TestClient,
    session_factory: sessionmaker[Session],
    hasher: PasswordHasher,
    issuer: Ed25519PrivateKey,
    record_property: Callable[[str, object], None],
) -> None:
    with session_factory.begin() as session:
        session.add(
            SettingsSection(name="security", value={"rate_limit_per_minute": 0})
        )
        license_service.install_license(
            session, actor=SYSTEM, content=make_license(issuer)
        )
    holders: dict[Entitlement, dict[str, str]] = {}
    for entitlement in Entitlement:
        slug = entitlement.value.replace(":", "-")
        make_role(session_factory, name=f"only-{slug}", entitlements=[entitlement])
        user = make_user(
            session_factory, hasher, username=f"holder-{slug}", roles=(f"only-{slug}",)
        )
        holders[entitlement] = mint_token(app, user.user_id)

    routes = list(protected_routes(app))
    assert len(routes) >= 30
    wrong: list[tuple[str, str, str, int]] = []
    for method, path, needed in routes:
        for held, headers in holders.items():
            response = client.request(
                method, path, headers=headers, json={} if method != "GET" else None
            )
            refused = (
                response.status_code == 403 and response.json()["code"] == "forbidden"
            )
            if refused != (held != needed):
                wrong.append((method, path, held.value, response.status_code))
    assert wrong == []
    # The matrix size, for the record (pytest -rA shows it).
    record_property(
        "rbac_matrix", f"{len(routes)} routes x {len(holders)} entitlements"
    )


def test_matrix_counts_a_route_once_per_method(app: FastAPI) -> None:
    routes = list(protected_routes(app))
    assert len(routes) == len(set(routes))
    assert ("GET", f"/api/v1/users/{ZERO_ID}", Entitlement.USERS_READ) in routes
    assert (
        "POST",
        f"/api/v1/users/{ZERO_ID}/unlock",
        Entitlement.USERS_WRITE,
    ) in routes
    assert uuid.UUID(ZERO_ID).int == 0
