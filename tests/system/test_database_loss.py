"""The server's PostgreSQL connections terminated mid-burst: 503 database_unavailable, then recovery."""

import threading
import time
from pathlib import Path

import httpx
import pytest
from sqlalchemy import make_url, text

from app.core.db import make_engine
from tests.conftest import POSTGRES_URL
from tests.pdfs import make_pdf
from tests.served import serve, signvault_env

pytestmark = pytest.mark.skipif(
    not POSTGRES_URL,
    reason="terminates PostgreSQL backends (SQLite has no connections to lose)",
)

PASSWORD = "Admin-Passw0rd!"
CLIENTS = 6
TERMINATIONS = 4


def test_terminated_backends_answer_503_then_recover_without_restart(
    tmp_path: Path, database_url: str
) -> None:
    env = signvault_env(
        tmp_path / "data",
        database_url,
        SIGNVAULT_ADMIN_PASSWORD=PASSWORD,
        SIGNVAULT_RATE_LIMIT_PER_MINUTE="0",
    )
    assert POSTGRES_URL
    admin = make_engine(POSTGRES_URL).execution_options(isolation_level="AUTOCOMMIT")
    with (
        serve(env, tmp_path, "--workers", "2") as served,
        httpx.Client(base_url=served.base_url, timeout=30) as http,
    ):
        token = http.post(
            "/api/v1/auth/login", json={"username": "admin", "password": PASSWORD}
        ).json()["access_token"]
        headers = {"Authorization": f"Bearer {token}", "Connection": "close"}
        stop = threading.Event()
        during: list[httpx.Response] = []
        clients = [
            threading.Thread(
                target=_requests_until, args=(served.base_url, headers, stop, during)
            )
            for _ in range(CLIENTS)
        ]
        for client in clients:
            client.start()
        terminated = 0
        try:
            with admin.connect() as sql:
                for _ in range(TERMINATIONS):
                    time.sleep(0.5)
                    terminated += sql.execute(
                        text(
                            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                            "WHERE datname = :db AND pid <> pg_backend_pid()"
                        ),
                        {"db": make_url(database_url).database},
                    ).scalar_one()
                time.sleep(0.5)
        finally:
            stop.set()
            for client in clients:
                client.join()
            admin.dispose()
        after = [http.get("/api/v1/documents", headers=headers) for _ in range(20)] + [
            _upload(http, headers) for _ in range(4)
        ]
        log = served.log

    assert terminated >= TERMINATIONS  # each round found the server's connections
    unavailable = [r for r in during if r.status_code == 503]
    assert unavailable, "no request met a terminated connection"
    for response in during:
        assert response.is_success or response.status_code == 503, response.text
    for response in unavailable:
        assert response.headers["content-type"] == "application/problem+json"
        assert response.json()["code"] == "database_unavailable"
        assert int(response.headers["retry-after"]) > 0
    assert [r.status_code for r in after] == [200] * 20 + [201] * 4
    assert "Traceback" not in log
    print(  # noqa: T201 (the figures of the closing note: pytest -s)
        f"\nduring: {len(during)} requests, {len(unavailable)} answered 503; "
        f"{terminated} backends terminated"
    )


def _upload(http: httpx.Client, headers: dict[str, str]) -> httpx.Response:
    return http.post(
        "/api/v1/documents",
        content=make_pdf(),
        headers={**headers, "Content-Type": "application/pdf"},
    )


def _requests_until(
    base_url: str,
    headers: dict[str, str],
    stop: threading.Event,
    answers: list[httpx.Response],
) -> None:
    """Reads and writes in turn (list.append is atomic: no lock needed)."""
    with httpx.Client(base_url=base_url, timeout=30) as http:
        while not stop.is_set():
            answers.append(http.get("/api/v1/documents", headers=headers))
            answers.append(_upload(http, headers))
