"""Vault fixtures: a CA, signers, and helpers to import and to act as a principal."""

import base64
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import httpx2
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from app.access.principal import Principal
from app.auth import service as auth_service
from app.certificates.vault import Vault
from tests.certificates.pki import Issued, make_ca, make_pkcs12, make_signer

P12_PASSWORD = "p12-Passw0rd!"


@pytest.fixture(scope="session")
def ca() -> Issued:
    return make_ca()


@pytest.fixture
def signer(ca: Issued) -> Issued:
    return make_signer(ca)


def import_p12(
    client: TestClient,
    headers: dict[str, str],
    data: bytes,
    password: str = P12_PASSWORD,
    name: str | None = None,
) -> httpx2.Response:
    form = {"password": password} | ({"name": name} if name else {})
    return client.post(
        "/api/v1/certificates",
        files={"file": ("signer.p12", data, "application/x-pkcs12")},
        data=form,
        headers=headers,
    )


def import_signer(
    client: TestClient, headers: dict[str, str], issued: Issued, ca: Issued
) -> dict[str, Any]:
    response = client.post(
        "/api/v1/certificates/base64",
        json={
            "pkcs12_base64": base64.b64encode(
                make_pkcs12(issued, P12_PASSWORD, chain=(ca,))
            ).decode(),
            "password": P12_PASSWORD,
        },
        headers=headers,
    )
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


@contextmanager
def acting_as(
    app: FastAPI, session_factory: sessionmaker[Session], token: str
) -> Iterator[tuple[Session, Principal]]:
    """A request-like transaction and the principal the token speaks for."""
    with session_factory.begin() as session:
        yield (
            session,
            auth_service.principal_from_access_token(
                session, app.state.token_keys, token
            ),
        )


def vault_of(app: FastAPI) -> Vault:
    vault: Vault = app.state.vault
    return vault


def uuid_of(body: dict[str, Any]) -> uuid.UUID:
    return uuid.UUID(body["id"])
