"""No password, client secret or token appears in a log line, or in a response after creation."""

import base64
import logging

import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from tests.factories import Credentials, audit_events, bearer, login


def test_no_secret_reaches_the_logs_or_later_responses(
    client: TestClient,
    admin: Credentials,
    caplog: pytest.LogCaptureFixture,
    session_factory: sessionmaker[Session],
) -> None:
    caplog.set_level(logging.DEBUG)
    pair = login(client, admin)
    headers = bearer(pair["access_token"])
    client.post(
        "/api/v1/auth/login", json={"username": "admin", "password": "Wrong-Guess-123"}
    )
    created = client.post(
        "/api/v1/clients",
        json={"name": "c", "entitlements": ["documents:read"]},
        headers=headers,
    ).json()
    rotated = client.post(
        f"/api/v1/clients/{created['id']}/rotate-secret", headers=headers
    ).json()
    basic = base64.b64encode(
        f"{created['client_id']}:{rotated['client_secret']}".encode()
    ).decode()
    client_token = client.post(
        "/api/v1/auth/token",
        data={"grant_type": "client_credentials"},
        headers={"Authorization": f"Basic {basic}"},
    ).json()["access_token"]
    refreshed = client.post(
        "/api/v1/auth/refresh", json={"refresh_token": pair["refresh_token"]}
    ).json()
    later = [
        client.get(
            f"/api/v1/clients/{created['id']}",
            headers=bearer(refreshed["access_token"]),
        ).text,
        client.get("/api/v1/clients", headers=bearer(refreshed["access_token"])).text,
        client.get("/api/v1/auth/me", headers=bearer(refreshed["access_token"])).text,
    ]
    secrets = {
        "admin password": admin.password,
        "guessed password": "Wrong-Guess-123",
        "client secret": created["client_secret"],
        "rotated secret": rotated["client_secret"],
        "access token": pair["access_token"],
        "refresh token": pair["refresh_token"],
        "client token": client_token,
    }
    logged = "\n".join(record.getMessage() for record in caplog.records)
    stored_audit = "\n".join(
        f"{e.details} {e.actor_name}" for e in audit_events(session_factory)
    )
    for name, value in secrets.items():
        assert value not in logged, f"{name} was logged"
        assert value not in stored_audit, f"{name} is in the audit log"
        for body in later:
            assert value not in body, f"{name} came back in a response"
