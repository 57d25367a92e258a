"""20 parallel sign requests against a real server process: all succeed, counted and audited once each."""

import base64
import threading
from pathlib import Path

import httpx
from sqlalchemy.orm import Session, sessionmaker

from tests.certificates.conftest import P12_PASSWORD
from tests.certificates.pki import make_ca, make_pkcs12, make_signer
from tests.factories import audit_events
from tests.pdfs import make_pdf
from tests.served import serve, signvault_env

PARALLEL = 20


def test_parallel_sign_requests_all_succeed_and_are_counted_once(
    tmp_path: Path, database_url: str, session_factory: sessionmaker[Session]
) -> None:
    env = signvault_env(
        tmp_path / "data", database_url, SIGNVAULT_ADMIN_PASSWORD="Admin-Passw0rd!"
    )
    ca = make_ca()
    p12 = make_pkcs12(
        make_signer(ca, cn="Parallel Signer", key_type="rsa2048"),
        P12_PASSWORD,
        chain=(ca,),
    )
    with (
        serve(env, tmp_path, "--workers", "2") as served,
        httpx.Client(base_url=served.base_url, timeout=120) as http,
    ):
        token = http.post(
            "/api/v1/auth/login",
            json={"username": "admin", "password": "Admin-Passw0rd!"},
        ).json()["access_token"]
        headers = {"Authorization": f"Bearer {token}", "Connection": "close"}
        certificate = http.post(
            "/api/v1/certificates/base64",
            json={
                "pkcs12_base64": base64.b64encode(p12).decode(),
                "password": P12_PASSWORD,
            },
            headers=headers,
        ).json()
        me = http.get("/api/v1/auth/me", headers=headers).json()
        assigned = http.post(
            f"/api/v1/certificates/{certificate['id']}/assignments",
            json={"user_id": me["id"]},
            headers=headers,
        )
        assert assigned.status_code == 201, assigned.text
        documents = [
            http.post(
                "/api/v1/documents",
                content=make_pdf(),
                headers={**headers, "Content-Type": "application/pdf"},
            ).json()["id"]
            for _ in range(PARALLEL)
        ]
        statuses: list[int] = []
        start = threading.Barrier(PARALLEL)

        def sign(document_id: str) -> None:
            with httpx.Client(base_url=served.base_url, timeout=120) as own:
                start.wait()
                response = own.post(
                    f"/api/v1/documents/{document_id}/sign",
                    json={"certificate_id": certificate["id"]},
                    headers=headers,
                )
                statuses.append(response.status_code)

        threads = [
            threading.Thread(target=sign, args=(document_id,))
            for document_id in documents
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert statuses == [201] * PARALLEL
        usage = http.get("/api/v1/license/usage", headers=headers).json()
    assert usage["signatures_total"]["used"] == PARALLEL
    assert len(audit_events(session_factory, "document.signed")) == PARALLEL
    assert (
        len({e.resource_id for e in audit_events(session_factory, "document.signed")})
        == PARALLEL
    )
