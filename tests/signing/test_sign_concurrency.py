"""Parallel sign requests against a real server process (two workers): counted, audited and idempotent."""

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import httpx
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from app.signing.models import Signature
from tests.certificates.conftest import P12_PASSWORD
from tests.certificates.pki import make_ca, make_pkcs12, make_signer
from tests.factories import audit_events
from tests.pdfs import make_pdf
from tests.served import admin_with_assigned_certificate, serve, signvault_env

PARALLEL = 20
T = TypeVar("T")


@dataclass(frozen=True)
class SigningServer:
    base_url: str
    headers: dict[str, str]
    certificate_id: str
    pid: int  # of `signvault serve`, the supervisor of the workers


@contextmanager
def signing_server(tmp_path: Path, database_url: str) -> Iterator[SigningServer]:
    """`signvault serve --workers 2` with the admin's token and an assigned certificate."""
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
        token, certificate_id = admin_with_assigned_certificate(
            http, "Admin-Passw0rd!", p12, P12_PASSWORD
        )
        # A new connection per request: keep-alive would pin a client to one worker.
        headers = {"Authorization": f"Bearer {token}", "Connection": "close"}
        yield SigningServer(served.base_url, headers, certificate_id, served.pid)


def all_at_once(base_url: str, request: Callable[[httpx.Client], T]) -> list[T]:
    """`request` from PARALLEL threads released together, each with its own client."""
    results: list[T] = []
    start = threading.Barrier(PARALLEL)

    def run() -> None:
        with httpx.Client(base_url=base_url, timeout=120) as own:
            start.wait()
            results.append(request(own))

    threads = [threading.Thread(target=run) for _ in range(PARALLEL)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


def test_parallel_sign_requests_all_succeed_and_are_counted_once(
    tmp_path: Path, database_url: str, session_factory: sessionmaker[Session]
) -> None:
    with signing_server(tmp_path, database_url) as server:
        with httpx.Client(base_url=server.base_url, timeout=120) as http:
            documents = iter(
                [
                    http.post(
                        "/api/v1/documents",
                        content=make_pdf(),
                        headers={**server.headers, "Content-Type": "application/pdf"},
                    ).json()["id"]
                    for _ in range(PARALLEL)
                ]
            )
        claim = threading.Lock()

        def sign(own: httpx.Client) -> int:
            with claim:
                document_id = next(documents)
            return own.post(
                f"/api/v1/documents/{document_id}/sign",
                json={"certificate_id": server.certificate_id},
                headers=server.headers,
            ).status_code

        statuses = all_at_once(server.base_url, sign)
        assert statuses == [201] * PARALLEL
        with httpx.Client(base_url=server.base_url, timeout=120) as http:
            usage = http.get("/api/v1/license/usage", headers=server.headers).json()
    assert usage["signatures_total"]["used"] == PARALLEL
    signed = audit_events(session_factory, "document.signed")
    assert len(signed) == PARALLEL
    assert len({e.resource_id for e in signed}) == PARALLEL


def test_parallel_one_shot_requests_with_one_idempotency_key_sign_once(
    tmp_path: Path, database_url: str, session_factory: sessionmaker[Session]
) -> None:
    pdf = make_pdf()
    with signing_server(tmp_path, database_url) as server:

        def sign(own: httpx.Client) -> tuple[int, str | None, bytes]:
            response = own.post(
                "/api/v1/sign",
                files={"file": ("in.pdf", pdf, "application/pdf")},
                data={"options": f'{{"certificate_id": "{server.certificate_id}"}}'},
                headers={**server.headers, "Idempotency-Key": "invoice-7"},
            )
            return (
                response.status_code,
                response.headers.get("x-signature-id"),
                response.content,
            )

        answers = all_at_once(server.base_url, sign)
        with httpx.Client(base_url=server.base_url, timeout=120) as http:
            usage = http.get("/api/v1/license/usage", headers=server.headers).json()
    assert [status for status, _, _ in answers] == [200] * PARALLEL
    assert len({signature for _, signature, _ in answers}) == 1
    assert len({content for _, _, content in answers}) == 1
    assert usage["signatures_total"]["used"] == 1
    with session_factory() as session:
        assert session.scalar(select(func.count()).select_from(Signature)) == 1
    assert len(audit_events(session_factory, "document.signed")) == 1
