"""The client-credentials flow with a real OAuth2 library against the app served by uvicorn."""

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from authlib.integrations.base_client.errors import OAuthError
from authlib.integrations.httpx_client import OAuth2Client

from tests.served import Served, serve, signvault_env

ADMIN_PASSWORD = "Served-Passw0rd!"


@pytest.fixture
def served(tmp_path: Path, database_url: str) -> Iterator[Served]:
    env = signvault_env(
        tmp_path / "data", database_url, SIGNVAULT_ADMIN_PASSWORD=ADMIN_PASSWORD
    )
    with serve(env, tmp_path) as running:
        yield running


@pytest.fixture
def machine(served: Served) -> dict[str, Any]:
    token = httpx.post(
        f"{served.base_url}/api/v1/auth/login",
        json={"username": "admin", "password": ADMIN_PASSWORD},
    ).json()
    response = httpx.post(
        f"{served.base_url}/api/v1/clients",
        json={"name": "batch-job", "entitlements": ["documents:sign", "clients:read"]},
        headers={"Authorization": f"Bearer {token['access_token']}"},
    )
    assert response.status_code == 201
    body: dict[str, Any] = response.json()
    return body


@pytest.mark.parametrize("auth_method", ["client_secret_basic", "client_secret_post"])
def test_authlib_client_credentials_flow(
    served: Served, machine: dict[str, Any], auth_method: str
) -> None:
    with OAuth2Client(
        client_id=machine["client_id"],
        client_secret=machine["client_secret"],
        token_endpoint_auth_method=auth_method,
        scope="clients:read",
    ) as oauth:
        token = oauth.fetch_token(
            f"{served.base_url}/api/v1/auth/token", grant_type="client_credentials"
        )
        assert token["token_type"] == "bearer"
        assert token["scope"] == "clients:read"
        me = oauth.get(f"{served.base_url}/api/v1/auth/me").json()
        assert (me["kind"], me["id"]) == ("client", machine["id"])
        assert me["entitlements"] == ["clients:read"]
        listed = oauth.get(f"{served.base_url}/api/v1/clients")
        assert listed.status_code == 200
        assert listed.json()["total"] == 1


def test_authlib_sees_rfc6749_errors(served: Served, machine: dict[str, Any]) -> None:
    with OAuth2Client(
        client_id=machine["client_id"],
        client_secret="wrong",
        token_endpoint_auth_method="client_secret_basic",
    ) as oauth:
        with pytest.raises(OAuthError) as refused:
            oauth.fetch_token(
                f"{served.base_url}/api/v1/auth/token", grant_type="client_credentials"
            )
        assert refused.value.error == "invalid_client"
    with OAuth2Client(
        client_id=machine["client_id"],
        client_secret=machine["client_secret"],
        scope="users:write",
    ) as oauth:
        with pytest.raises(OAuthError) as scoped:
            oauth.fetch_token(
                f"{served.base_url}/api/v1/auth/token", grant_type="client_credentials"
            )
        assert scoped.value.error == "invalid_scope"
