"""A certificate the caller may not see answers exactly as a missing one, on every route."""

import json
import re
import uuid
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from app.core.security import PasswordHasher
from tests.certificates.conftest import import_signer
from tests.certificates.pki import Issued, make_signer
from tests.certificates.test_router import make_department, put_in_department
from tests.factories import Credentials, bearer, login, make_user
from tests.pdfs import make_pdf

UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def shape(response: httpx.Response) -> dict[str, Any]:
    """What may be compared: status, code, detail and fields, with ids blanked."""
    if response.headers.get("content-type") != "application/problem+json":
        return {"status": response.status_code, "body": UUID.sub("<id>", response.text)}
    body = response.json()
    return {
        "status": response.status_code,
        "code": body["code"],
        "title": body["title"],
        "detail": UUID.sub("<id>", body.get("detail") or ""),
        "invalid_params": body.get("invalid_params"),
        "extra": sorted(set(body) - {"trace_id", "detail"}),
    }


def batch_outcome(response: httpx.Response) -> dict[str, Any]:
    """A batch answers 201 either way: its one item's failure is what must match."""
    assert response.status_code == 201, response.text
    [item] = response.json()["items"]
    return {
        "status": item["status"],
        "error_code": item["error_code"],
        "error_detail": UUID.sub("<id>", item["error_detail"] or ""),
    }


@pytest.fixture
def reader(
    session_factory: sessionmaker[Session], hasher: PasswordHasher
) -> Credentials:
    """A signer: `certificates:read`, not a vault manager, sees only what is assigned to it."""
    return make_user(session_factory, hasher, username="reader")


@pytest.mark.parametrize("assignee", ["another user", "another department"])
def test_invisible_certificate_answers_as_a_missing_one_on_every_route(
    client: TestClient,
    admin_headers: dict[str, str],
    session_factory: sessionmaker[Session],
    hasher: PasswordHasher,
    reader: Credentials,
    ca: Issued,
    assignee: str,
) -> None:
    # Someone else's certificate: it exists and is assigned, not to the reader.
    hidden = import_signer(client, admin_headers, make_signer(ca, cn="Hidden"), ca)
    if assignee == "another user":
        other = make_user(session_factory, hasher, username="other")
        assign_to = {"user_id": str(other.user_id)}
    else:
        put_in_department(
            session_factory, reader, make_department(session_factory, "Mine")
        )
        assign_to = {"department_id": str(make_department(session_factory, "Other"))}
    assigned = client.post(
        f"/api/v1/certificates/{hidden['id']}/assignments",
        json=assign_to,
        headers=admin_headers,
    )
    assert assigned.status_code == 201, assigned.text
    assignment_id = assigned.json()["id"]
    headers = bearer(login(client, reader)["access_token"])
    uploaded = client.post(
        "/api/v1/documents",
        files={"file": ("doc.pdf", make_pdf(), "application/pdf")},
        headers=headers,
    )
    assert uploaded.status_code == 201, uploaded.text
    document_id = uploaded.json()["id"]

    def calls(certificate_id: str) -> dict[str, httpx.Response]:
        base = f"/api/v1/certificates/{certificate_id}"
        options = {"certificate_id": certificate_id}
        return {
            "read": client.get(base, headers=headers),
            "chain": client.get(f"{base}/chain", headers=headers),
            "rename": client.patch(base, json={"name": "x"}, headers=headers),
            "delete": client.delete(base, headers=headers),
            "disable": client.post(f"{base}/disable", headers=headers),
            "enable": client.post(f"{base}/enable", headers=headers),
            "revoke": client.post(f"{base}/revoke", json={}, headers=headers),
            "assign": client.post(
                f"{base}/assignments",
                json={"user_id": str(reader.user_id)},
                headers=headers,
            ),
            "unassign": client.delete(
                f"{base}/assignments/{assignment_id}", headers=headers
            ),
            "set default": client.put(
                f"/api/v1/users/{reader.user_id}/default-certificate",
                json=options,
                headers=headers,
            ),
            "sign": client.post(
                f"/api/v1/documents/{document_id}/sign", json=options, headers=headers
            ),
            "sign upload": client.post(
                "/api/v1/sign",
                files={"file": ("doc.pdf", make_pdf(), "application/pdf")},
                data={"options": json.dumps(options)},
                headers=headers,
            ),
        }

    invisible = calls(hidden["id"])
    missing = calls(str(uuid.uuid4()))
    for route, answer in invisible.items():
        assert answer.status_code >= 400, (route, answer.text)
        assert shape(answer) == shape(missing[route]), route

    def batch(certificate_id: str) -> httpx.Response:
        return client.post(
            "/api/v1/batches",
            json={"document_ids": [document_id], "certificate_id": certificate_id},
            headers=headers,
        )

    assert batch_outcome(batch(hidden["id"])) == batch_outcome(batch(str(uuid.uuid4())))


def test_default_certificate_the_caller_cannot_see_is_answered_as_none(
    client: TestClient,
    admin_headers: dict[str, str],
    session_factory: sessionmaker[Session],
    hasher: PasswordHasher,
    reader: Credentials,
    ca: Issued,
) -> None:
    other = make_user(session_factory, hasher, username="other")
    without = make_user(session_factory, hasher, username="without")
    hidden = import_signer(client, admin_headers, make_signer(ca, cn="Hidden"), ca)
    assert (
        client.post(
            f"/api/v1/certificates/{hidden['id']}/assignments",
            json={"user_id": str(other.user_id)},
            headers=admin_headers,
        ).status_code
        == 201
    )
    set_default = client.put(
        f"/api/v1/users/{other.user_id}/default-certificate",
        json={"certificate_id": hidden["id"]},
        headers=admin_headers,
    )
    assert set_default.status_code == 200, set_default.text
    headers = bearer(login(client, reader)["access_token"])

    answer = client.get(
        f"/api/v1/users/{other.user_id}/default-certificate", headers=headers
    )
    none_set = client.get(
        f"/api/v1/users/{without.user_id}/default-certificate", headers=headers
    )
    assert hidden["id"] not in answer.text
    assert shape(answer) == shape(none_set)
    assert answer.status_code == 404
    # Its owner and a vault manager still read it.
    for who in (bearer(login(client, other)["access_token"]), admin_headers):
        seen = client.get(
            f"/api/v1/users/{other.user_id}/default-certificate", headers=who
        )
        assert seen.status_code == 200, seen.text
        assert seen.json()["certificate_id"] == hidden["id"]
