"""`signvault audit verify [--file]` and `signvault audit purge`, run as processes."""

import json
from pathlib import Path

from fastapi.testclient import TestClient
from sqlalchemy import text
from sqlalchemy.orm import Session, sessionmaker

from app.audit import service as audit_service
from tests.audit.test_retention import seed_ages, set_retention
from tests.factories import audit_events
from tests.served import signvault_env
from tests.test_cli import run


def test_verify_against_the_database_passes_then_names_the_edited_entry(
    tmp_path: Path, database_url: str, session_factory: sessionmaker[Session]
) -> None:
    seed_ages(session_factory, [1, 1, 1, 1])
    env = signvault_env(tmp_path / "data", database_url)
    intact = run(env, tmp_path, "audit", "verify")
    assert intact.returncode == 0, intact.stderr
    assert "audit chain intact: 4 entries from genesis, head at 4" in intact.stdout
    with session_factory.begin() as session:
        session.execute(
            text("UPDATE audit_events SET outcome = 'denied' WHERE seq = 3")
        )
    broken = run(env, tmp_path, "audit", "verify")
    assert broken.returncode == 1
    assert "BROKEN at seq 3" in broken.stdout
    assert "content does not match its hash" in broken.stdout
    assert [e.outcome for e in audit_events(session_factory, "audit.verified")] == [
        "success",
        "failure",
    ]


def export_file(
    client: TestClient, headers: dict[str, str], path: Path, query: str = ""
) -> list[str]:
    response = client.get(
        f"/api/v1/audit-logs/export?format=jsonl{query}", headers=headers
    )
    assert response.status_code == 200
    lines = response.text.splitlines(keepends=True)
    path.write_text("".join(lines))
    return lines


def test_offline_verification_of_an_export(
    tmp_path: Path,
    client: TestClient,
    admin_headers: dict[str, str],
    session_factory: sessionmaker[Session],
) -> None:
    seed_ages(session_factory, [2, 2, 1, 1, 1])
    env = signvault_env(tmp_path / "data", "sqlite://")  # --file needs no database
    full = tmp_path / "full.jsonl"
    lines = export_file(client, admin_headers, full)
    assert set(json.loads(lines[-1])) == {"anchor"}  # the export ends with its anchor
    entries = len(lines) - 1
    result = run(env, tmp_path, "audit", "verify", "--file", str(full))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"export intact: {entries} entries" in result.stdout
    assert f"{entries - 1} links checked" in result.stdout
    assert "the anchored entry matches" in result.stdout
    assert "gaps" not in result.stdout

    edited = tmp_path / "edited.jsonl"
    row = json.loads(lines[3])
    row["ip"] = "203.0.113.9"
    edited.write_text("".join([*lines[:3], json.dumps(row) + "\n", *lines[4:]]))
    result = run(env, tmp_path, "audit", "verify", "--file", str(edited))
    assert result.returncode == 1
    assert f"BROKEN at seq {row['seq']} ({row['id']})" in result.stdout

    dropped = tmp_path / "dropped.jsonl"
    dropped.write_text("".join([*lines[:2], *lines[3:]]))
    result = run(env, tmp_path, "audit", "verify", "--file", str(dropped))
    assert result.returncode == 0  # a gap alone looks like a filtered export...
    assert "1 gaps" in result.stdout  # ...and says so

    swapped = tmp_path / "swapped.jsonl"
    swapped.write_text("".join([lines[0], lines[2], lines[1], *lines[3:]]))
    result = run(env, tmp_path, "audit", "verify", "--file", str(swapped))
    assert result.returncode == 1
    assert "out of order" in result.stdout

    garbage = tmp_path / "garbage.jsonl"
    garbage.write_text("not json\n")
    result = run(env, tmp_path, "audit", "verify", "--file", str(garbage))
    assert result.returncode == 2
    assert "line 1" in result.stderr


def test_offline_verification_of_a_filtered_export_checks_each_entry(
    tmp_path: Path,
    client: TestClient,
    admin_headers: dict[str, str],
    session_factory: sessionmaker[Session],
) -> None:
    seed_ages(session_factory, [1, 1, 1])
    path = tmp_path / "filtered.jsonl"
    lines = export_file(client, admin_headers, path, "&action=test.aged")
    assert len(lines) == 3 + 1  # and the anchor
    result = run(
        signvault_env(tmp_path / "data", "sqlite://"),
        tmp_path,
        "audit",
        "verify",
        "--file",
        str(path),
    )
    assert result.returncode == 0, result.stdout
    assert "export intact: 3 entries" in result.stdout


def test_purge_command_applies_retention_and_leaves_a_verifiable_chain(
    tmp_path: Path, database_url: str, session_factory: sessionmaker[Session]
) -> None:
    env = signvault_env(tmp_path / "data", database_url)
    seed_ages(session_factory, [90, 90, 90, 1])
    off = run(env, tmp_path, "audit", "purge")
    assert (off.returncode, off.stdout.strip()) == (
        0,
        "retention is off (retention_days is null): nothing purged",
    )
    set_retention(session_factory, 30)
    result = run(env, tmp_path, "audit", "purge", "--batch-size", "2")
    assert result.returncode == 0, result.stderr
    assert "purged 3 entries" in result.stdout
    assert "in 2 batches, checkpoint at seq 3" in result.stdout
    assert run(env, tmp_path, "audit", "verify").returncode == 0
    with session_factory() as session:
        assert audit_service.verify_chain(session) is None
