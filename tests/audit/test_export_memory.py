"""Exporting 100,000 entries from a served process keeps its memory flat."""

import json
import uuid
from datetime import timedelta
from pathlib import Path

import httpx
from sqlalchemy.orm import Session, sessionmaker

from app.audit import service as audit_service
from app.audit.chain import content_hash
from app.core.types import utcnow
from tests.served import serve, signvault_env

ROWS = 100_000
BOUND_MB = 50


def memory_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise AssertionError(f"{field} not in /proc/{pid}/status")


def test_export_of_100k_rows_streams_with_bounded_memory(
    database_url: str, session_factory: sessionmaker[Session], tmp_path: Path
) -> None:
    start = utcnow() - timedelta(days=1)
    with session_factory.begin() as session:
        audit_service.append_many(
            session,
            (
                {
                    "id": uuid.uuid4(),
                    "occurred_at": start + timedelta(milliseconds=n),
                    "actor_kind": "user",
                    "actor_id": f"user-{n % 50}",
                    "actor_name": f"user {n % 50}",
                    "action": ("document.signed", "document.viewed", "auth.login")[
                        n % 3
                    ],
                    "resource_type": "document",
                    "resource_id": f"doc-{n}",
                    "outcome": "success",
                    "ip": f"10.0.{n % 200}.{n % 250}",
                    "user_agent": "bench/1.0",
                    "request_id": uuid.uuid4().hex,
                    "details": {"n": n, "sha256": f"{n:064x}"},
                }
                for n in range(ROWS)
            ),
        )
    env = signvault_env(
        tmp_path / "data", database_url, SIGNVAULT_ADMIN_PASSWORD="Export-Passw0rd!"
    )
    with serve(env, tmp_path) as served:
        token = httpx.post(
            f"{served.base_url}/api/v1/auth/login",
            json={"username": "admin", "password": "Export-Passw0rd!"},
            timeout=30,
        ).json()["access_token"]
        headers = {"Authorization": f"Bearer {token}"}
        export = f"{served.base_url}/api/v1/audit-logs/export?format=jsonl"
        warm = httpx.get(export + "&actor_id=user-7", headers=headers, timeout=120)
        assert len(warm.text.splitlines()) == ROWS // 50 + 1  # and the anchor
        baseline = memory_kib(served.pid, "VmRSS")
        # Reset the high-water mark to now (Linux clear_refs), so the peak is the export's.
        Path(f"/proc/{served.pid}/clear_refs").write_text("5")
        lines = 0
        entry = last = b""
        with httpx.stream("GET", export, headers=headers, timeout=300) as response:
            assert response.status_code == 200
            for line in response.iter_lines():
                lines += 1
                entry, last = last, line.encode()
        peak = memory_kib(served.pid, "VmHWM")
    growth_mb = (peak - baseline) / 1024
    assert lines >= ROWS
    row = json.loads(entry)
    assert content_hash(row) == row["hash"]
    assert json.loads(last)["anchor"]["hash"] == row["hash"]
    assert growth_mb < BOUND_MB
