"""A non-administrator assigns certificates only within its own department."""

import uuid

import httpx2
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from app.core.security import PasswordHasher
from tests.certificates.conftest import import_signer
from tests.certificates.pki import Issued, make_signer
from tests.factories import (
    assert_problem,
    make_department,
    make_role,
    make_user,
    mint_token,
)

BASE = "/api/v1/certificates"


def test_assigner_stays_within_its_department(
    app: FastAPI,
    client: TestClient,
    admin_headers: dict[str, str],
    ca: Issued,
    session_factory: sessionmaker[Session],
    hasher: PasswordHasher,
) -> None:
    ops, legal = (make_department(session_factory, n) for n in ("ops", "legal"))
    make_role(
        session_factory,
        name="ops-assigner",
        entitlements=["certificates:read", "certificates:assign", "users:read"],
    )
    assigner = make_user(
        session_factory,
        hasher,
        username="ann",
        roles=("ops-assigner",),
        department_id=ops,
    )
    headers = mint_token(app, assigner.user_id)
    colleague = make_user(session_factory, hasher, username="carl", department_id=ops)
    stranger = make_user(session_factory, hasher, username="lena", department_id=legal)
    free = import_signer(client, admin_headers, make_signer(ca, cn="Free"), ca)
    seal = import_signer(client, admin_headers, make_signer(ca, cn="Legal seal"), ca)
    assert (
        client.post(
            f"{BASE}/{seal['id']}/assignments",
            json={"department_id": str(legal)},
            headers=admin_headers,
        ).status_code
        == 201
    )

    def assign(certificate: dict[str, str], **target: uuid.UUID) -> httpx2.Response:
        return client.post(
            f"{BASE}/{certificate['id']}/assignments",
            json={k: str(v) for k, v in target.items()},
            headers=headers,
        )

    # A user of another department answers as a missing one.
    assert_problem(assign(free, user_id=stranger.user_id), 422, "validation_failed")
    assert_problem(assign(free, department_id=legal), 403, "department_out_of_scope")
    # Another department's seal cannot be handed to this one.
    assert_problem(assign(seal, department_id=ops), 403, "department_out_of_scope")
    [legal_assignment] = client.get(f"{BASE}/{seal['id']}", headers=headers).json()[
        "assignments"
    ]
    assert_problem(
        client.delete(
            f"{BASE}/{seal['id']}/assignments/{legal_assignment['id']}", headers=headers
        ),
        403,
        "department_out_of_scope",
    )
    assert assign(free, user_id=colleague.user_id).status_code == 201
    assert assign(free, department_id=ops).status_code == 201
    assert_problem(
        client.put(
            f"/api/v1/users/{stranger.user_id}/default-certificate",
            json={"certificate_id": free["id"]},
            headers=headers,
        ),
        404,
        "user_not_found",
    )
