"""Typed factories and helpers shared by the tests."""

import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import httpx2
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from app.access import service as access_service
from app.access.models import Department, Role
from app.audit.models import AuditEvent
from app.audit.service import SYSTEM
from app.core.security import PasswordHasher
from app.settings.models import SettingsSection


@dataclass(frozen=True)
class Credentials:
    username: str
    password: str
    user_id: uuid.UUID


def make_user(
    session_factory: sessionmaker[Session],
    hasher: PasswordHasher,
    *,
    username: str,
    password: str = "User-Passw0rd!",
    roles: tuple[str, ...] = ("signer",),
    department_id: uuid.UUID | None = None,
) -> Credentials:
    with session_factory.begin() as session:
        user = access_service.create_user(
            session,
            hasher,
            actor=SYSTEM,
            username=username,
            password=password,
            roles=[access_service.get_role_by_name(session, name) for name in roles],
            department=session.get_one(Department, department_id)
            if department_id
            else None,
        )
        return Credentials(username, password, user.id)


def make_department(session_factory: sessionmaker[Session], name: str) -> uuid.UUID:
    with session_factory.begin() as session:
        department = Department(name=name)
        session.add(department)
        session.flush()
        return department.id


def login(client: TestClient, credentials: Credentials) -> dict[str, str]:
    response = client.post(
        "/api/v1/auth/login",
        json={"username": credentials.username, "password": credentials.password},
    )
    assert response.status_code == 200, response.text
    body: dict[str, str] = response.json()
    return body


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def audit_events(
    session_factory: sessionmaker[Session], action: str | None = None, **filters: Any
) -> list[AuditEvent]:
    """Stored audit events in chain order, optionally filtered by action and columns."""
    with session_factory() as session:
        statement = select(AuditEvent).order_by(AuditEvent.seq)
        if action is not None:
            statement = statement.where(AuditEvent.action == action)
        for column, value in filters.items():
            statement = statement.where(getattr(AuditEvent, column) == value)
        return list(session.scalars(statement))


PROBLEM_FIELDS = {"type", "title", "status", "detail", "code", "trace_id"}


def assert_problem(response: httpx2.Response, status: int, code: str) -> dict[str, Any]:
    """The response is an RFC 9457 problem with this status and code; returns its body."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = response.json()
    assert set(body) >= PROBLEM_FIELDS
    assert (body["status"], body["code"]) == (status, code)
    assert body["type"] == f"urn:signvault:problem:{code}"
    assert body["trace_id"] == response.headers["x-request-id"]
    return body


def make_role(
    session_factory: sessionmaker[Session], *, name: str, entitlements: Iterable[str]
) -> uuid.UUID:
    with session_factory.begin() as session:
        role = Role(name=name, entitlements=sorted(set(entitlements)))
        session.add(role)
        session.flush()
        return role.id


def mint_token(app: FastAPI, user_id: uuid.UUID) -> dict[str, str]:
    """Bearer headers for a user without a login (no session, no login throttle)."""
    token, _claims = app.state.token_keys.issue(
        sub=str(user_id), kind="user", sid=None, scope=None
    )
    return bearer(token)


def set_rate_limits(session_factory: sessionmaker[Session], **limits: int) -> None:
    """Store `limits` in the `security` section, then wait for a rate-limit window
    with at least 20 s left.

    Windows are fixed wall-clock minutes: a test's requests that straddled a
    minute boundary would be counted in two windows and never reach the limit.
    """
    with session_factory.begin() as session:
        session.merge(SettingsSection(name="security", value=limits))
    left = 60 - time.time() % 60
    if left < 20:
        time.sleep(left + 0.05)


def stored_blobs(app: Any) -> set[tuple[str, str]]:
    """(namespace, sha256) of every blob in the app's store, whichever backend it is."""
    return {(blob.namespace, blob.sha256) for blob in app.state.blobs.blob_files()}
