"""Anchors: a cut of the chain's tail, with the head moved back, is found against an earlier anchor."""

import base64
import csv
import functools
import io
import json
import subprocess
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import text
from sqlalchemy.orm import Session, sessionmaker

from app.audit import anchors
from app.audit import service as audit_service
from app.audit.models import AuditCheckpoint
from app.core.config import Settings
from app.core.security import PasswordHasher
from app.core.types import utcnow
from app.notifications.outbox import Event
from app.worker import periodic_jobs
from tests.audit.test_retention import set_retention
from tests.factories import assert_problem, audit_events, bearer, login, make_user
from tests.notifications.conftest import create_rule
from tests.notifications.outbox import outbox_payloads
from tests.notifications.servers import webhook_receiver
from tests.served import serve, signvault_env
from tests.test_cli import run

ANCHORS = "/api/v1/audit-logs/anchors"
VERIFY = "/api/v1/audit-logs/verify"


@pytest.fixture
def settings(settings: Settings, request: pytest.FixtureRequest) -> Settings:
    # No background loop by default: nothing appends behind the test's back.
    overrides: dict[str, Any] = {
        "background_in_process": False,
        "webhook_allowed_hosts": ["127.0.0.1"],
        "notification_poll_seconds": 0.5,
    }
    overrides.update(getattr(request, "param", {}))
    return settings.model_copy(update=overrides)


def append(session_factory: sessionmaker[Session], count: int) -> None:
    for n in range(count):
        with session_factory.begin() as session:
            audit_service.record(
                session,
                actor=audit_service.SYSTEM,
                action="test.entry",
                resource_type="thing",
                resource_id=str(n),
            )


def head(session_factory: sessionmaker[Session]) -> tuple[int, str]:
    with session_factory() as session:
        return audit_service.chain_head(session)


def cut_tail(session_factory: sessionmaker[Session], *, keep_through: int) -> None:
    """What an attacker with write access to the database does, in one transaction."""
    with session_factory.begin() as session:
        session.execute(
            text("DELETE FROM audit_events WHERE seq > :keep"), {"keep": keep_through}
        )
        session.execute(
            text(
                "UPDATE audit_chain_head SET seq = :keep, last_hash = "
                "(SELECT hash FROM audit_events WHERE seq = :keep) WHERE id = 1"
            ),
            {"keep": keep_through},
        )


def take_anchor(client: TestClient, headers: dict[str, str]) -> dict[str, Any]:
    response = client.post(ANCHORS, headers=headers)
    assert response.status_code == 201, response.text
    anchor: dict[str, Any] = response.json()
    return anchor


def verify_with(
    client: TestClient, headers: dict[str, str], anchor: str
) -> httpx.Response:
    return client.get(VERIFY, params={"anchor": anchor}, headers=headers)


def b64url(anchor: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(anchor).encode()).decode().rstrip("=")


def test_cut_tail_with_the_head_moved_back_fails_against_an_earlier_anchor(
    client: TestClient,
    admin_headers: dict[str, str],
    session_factory: sessionmaker[Session],
) -> None:
    append(session_factory, 5)
    anchor = take_anchor(client, admin_headers)
    assert anchor["seq"] == head(session_factory)[0]
    [anchored] = audit_events(session_factory, "audit.anchored")
    assert (anchored.seq, anchored.hash) == (anchor["seq"], anchor["hash"])
    assert anchored.details["reason"] == "requested"
    assert anchored.actor_name == "admin"
    matched = verify_with(client, admin_headers, json.dumps(anchor)).json()
    assert matched["intact"] is True
    assert matched["anchor"]["status"] == "matched"
    append(session_factory, 3)

    keep = anchor["seq"] - 4
    cut_tail(session_factory, keep_through=keep)

    # The chain alone still verifies: this is the cut the anchor exists for.
    alone = client.get(VERIFY, headers=admin_headers).json()
    assert alone["intact"] is True
    assert alone["head_seq"] == keep
    # Each verification appends its own entry after the cut: the gap closes by one each time.
    for presented in (json.dumps(anchor), b64url(anchor)):
        first_missing = head(session_factory)[0] + 1
        assert first_missing < anchor["seq"]
        body = verify_with(client, admin_headers, presented).json()
        assert body["intact"] is False
        assert body["anchor"]["status"] == "truncated"
        assert body["anchor"]["intact"] is False
        assert (
            body["anchor"]["missing_from_seq"],
            body["anchor"]["missing_to_seq"],
        ) == (first_missing, anchor["seq"])
        assert body["broken"]["seq"] == first_missing
        assert body["broken"]["event_id"] is None
        assert (
            f"entries {first_missing} to {anchor['seq']} are missing"
            in body["broken"]["reason"]
        )
        failed = audit_events(session_factory, "audit.verified", outcome="failure")
        assert failed[-1].details["anchor"] == {
            "seq": anchor["seq"],
            "status": "truncated",
            "missing_from_seq": first_missing,
            "missing_to_seq": anchor["seq"],
        }


def test_entries_forged_over_the_cut_do_not_match_the_anchor(
    client: TestClient,
    admin_headers: dict[str, str],
    session_factory: sessionmaker[Session],
) -> None:
    append(session_factory, 4)
    anchor = take_anchor(client, admin_headers)
    cut_tail(session_factory, keep_through=anchor["seq"] - 2)
    append(session_factory, 5)  # a well-linked chain grows again past the anchor's seq
    assert head(session_factory)[0] > anchor["seq"]
    body = verify_with(client, admin_headers, json.dumps(anchor)).json()
    assert body["intact"] is False
    assert body["anchor"]["status"] == "mismatch"
    assert (
        body["anchor"]["missing_from_seq"]
        == body["anchor"]["missing_to_seq"]
        == anchor["seq"]
    )
    [replacement] = audit_events(session_factory, None, seq=anchor["seq"])
    assert body["broken"]["event_id"] == str(replacement.id)


def test_forged_unsigned_or_unknown_anchors_are_422_and_recorded(
    client: TestClient,
    admin_headers: dict[str, str],
    session_factory: sessionmaker[Session],
) -> None:
    append(session_factory, 2)
    anchor = take_anchor(client, admin_headers)
    unsigned = {k: v for k, v in anchor.items() if k != "signature"}
    moved = {**anchor, "seq": anchor["seq"] - 1}
    stranger = {**anchor, "seal_fingerprint_sha256": "ab" * 32}
    stranger.pop("seal_certificate")
    bad_signature = {**anchor, "signature": base64.b64encode(b"x" * 256).decode()}
    cases = {
        json.dumps(unsigned): "not signed",
        json.dumps(moved): "forged or was altered",
        json.dumps(bad_signature): "forged or was altered",
        json.dumps(stranger): "not a seal of this server",
        "not an anchor": "neither JSON nor base64url",
        json.dumps({**anchor, "format": "other"}): "format",
        json.dumps([anchor]): "JSON object",
    }
    for presented, expected in cases.items():
        problem = assert_problem(
            verify_with(client, admin_headers, presented), 422, "audit_anchor_invalid"
        )
        assert expected in problem["detail"], (presented, problem["detail"])
    refused = audit_events(session_factory, "audit.verified", outcome="failure")
    assert len(refused) == len(cases)
    assert "forged" in refused[1].details["anchor"]["invalid"]


def test_anchor_of_a_retired_seal_still_verifies(
    client: TestClient,
    admin_headers: dict[str, str],
    session_factory: sessionmaker[Session],
) -> None:
    append(session_factory, 2)
    anchor = take_anchor(client, admin_headers)
    rotated = client.post("/api/v1/audit-logs/seal/rotate", headers=admin_headers)
    assert rotated.status_code == 200
    assert rotated.json()["fingerprint_sha256"] != anchor["seal_fingerprint_sha256"]
    body = verify_with(client, admin_headers, json.dumps(anchor)).json()
    assert body["intact"] is True
    assert (body["anchor"]["status"], body["anchor"]["seal_active"]) == (
        "matched",
        False,
    )
    assert (
        take_anchor(client, admin_headers)["seal_fingerprint_sha256"]
        == (rotated.json()["fingerprint_sha256"])
    )


def test_an_anchored_entry_purged_by_retention_passes_but_a_forged_checkpoint_does_not(
    client: TestClient,
    admin_headers: dict[str, str],
    session_factory: sessionmaker[Session],
) -> None:
    append(session_factory, 2)
    anchor = take_anchor(client, admin_headers)
    with session_factory.begin() as session:
        # A checkpoint that claims a purge whose cutoff is older than the anchor.
        session.add(
            AuditCheckpoint(
                through_seq=anchor["seq"],
                through_hash=anchor["hash"],
                purged_count=anchor["seq"],
                total_purged=anchor["seq"],
                cutoff=utcnow() - timedelta(days=30),
            )
        )
        session.execute(
            text("DELETE FROM audit_events WHERE seq <= :seq"), {"seq": anchor["seq"]}
        )
    forged = verify_with(client, admin_headers, json.dumps(anchor)).json()
    assert forged["intact"] is False
    assert forged["anchor"]["status"] == "truncated"
    assert "which is newer" in forged["anchor"]["reason"]

    with session_factory.begin() as session:
        session.execute(text("DELETE FROM audit_checkpoints"))
    append(session_factory, 1)
    later = take_anchor(client, admin_headers)
    set_retention(session_factory, 30)
    purged = audit_service.purge_expired(
        session_factory, now=utcnow() + timedelta(days=31)
    )
    assert purged.through_seq is not None
    assert purged.through_seq >= later["seq"]
    body = verify_with(client, admin_headers, json.dumps(later)).json()
    assert body["anchor"]["status"] == "purged"
    assert body["anchor"]["intact"] is True


def test_anchors_need_audit_export(
    client: TestClient, session_factory: sessionmaker[Session], hasher: PasswordHasher
) -> None:
    signer = make_user(session_factory, hasher, username="sam")
    assert_problem(
        client.post(ANCHORS, headers=bearer(login(client, signer)["access_token"])),
        403,
        "forbidden",
    )
    auditor = make_user(session_factory, hasher, username="aud", roles=("auditor",))
    anchor = take_anchor(client, bearer(login(client, auditor)["access_token"]))
    [entry] = audit_events(session_factory, "audit.anchored")
    assert (entry.actor_name, entry.seq) == ("aud", anchor["seq"])


def test_exports_end_with_an_anchor_of_the_head(
    client: TestClient,
    admin_headers: dict[str, str],
    session_factory: sessionmaker[Session],
) -> None:
    append(session_factory, 3)
    jsonl = client.get("/api/v1/audit-logs/export?format=jsonl", headers=admin_headers)
    *lines, last = jsonl.text.splitlines()
    anchor = json.loads(last)["anchor"]
    assert anchor["seq"] == json.loads(lines[-1])["seq"]
    assert anchor["hash"] == json.loads(lines[-1])["hash"]
    [exported] = audit_events(session_factory, "audit.exported")
    assert exported.details["through_seq"] == anchor["seq"]
    [anchored] = audit_events(session_factory, "audit.anchored")
    assert anchored.details["reason"] == "export"
    # The export's last line is itself an anchor to verify against later.
    body = verify_with(client, admin_headers, last).json()
    assert (body["intact"], body["anchor"]["status"]) == (True, "matched")

    csv_export = client.get(
        "/api/v1/audit-logs/export?format=csv&action=test.entry", headers=admin_headers
    )
    *rows, anchor_row = csv.DictReader(io.StringIO(csv_export.text))
    assert [r["action"] for r in rows] == ["test.entry"] * 3
    assert anchor_row["id"] == "anchor"
    carried = json.loads(anchor_row["details"])
    assert (anchor_row["seq"], anchor_row["hash"]) == (
        str(carried["seq"]),
        carried["hash"],
    )
    assert (
        carried["seq"] == head(session_factory)[0] - 1
    )  # then its audit.exported entry
    body = verify_with(client, admin_headers, json.dumps(carried)).json()
    assert body["anchor"]["status"] == "matched"


def test_worker_anchors_after_n_entries_and_after_m_minutes(
    app: FastAPI, session_factory: sessionmaker[Session], settings: Settings
) -> None:
    configured = settings.model_copy(
        update={"audit_anchor_every_entries": 5, "audit_anchor_every_minutes": 10}
    )
    cipher = app.state.cipher
    [job] = [
        j
        for j in periodic_jobs(app.state.blobs, settings=configured, cipher=cipher)
        if j.name == "audit anchors"
    ]
    assert job.every_seconds == anchors.CHECK_SECONDS
    append(session_factory, 4)
    assert job.run(session_factory) is None  # 4 entries, and none 10 minutes old
    append(session_factory, 1)
    made = job.run(session_factory)
    assert isinstance(made, anchors.Anchor)
    assert (made.seq, made.hash) == head(session_factory)
    assert job.run(session_factory) is None  # nothing appended since
    [entry] = audit_events(session_factory, "audit.anchored")
    assert entry.details["reason"] == "entries"

    append(session_factory, 1)
    due = functools.partial(
        anchors.anchor_if_due, cipher=cipher, every_entries=5, every_minutes=10
    )
    assert due(session_factory) is None
    later = due(session_factory, now=utcnow() + timedelta(minutes=11))
    assert later is not None
    assert (
        audit_events(session_factory, "audit.anchored")[-1].details["reason"]
        == "minutes"
    )
    # Both are published as `audit.anchor` events.
    assert [p["seq"] for p in outbox_payloads(session_factory, Event.AUDIT_ANCHOR)] == [
        made.seq,
        later.seq,
    ]
    off = settings.model_copy(
        update={"audit_anchor_every_entries": 0, "audit_anchor_every_minutes": 0}
    )
    assert "audit anchors" not in [
        j.name for j in periodic_jobs(app.state.blobs, settings=off, cipher=cipher)
    ]


@pytest.mark.parametrize("settings", [{"background_in_process": True}], indirect=True)
def test_anchor_reaches_a_webhook_rule_on_audit_anchor(
    client: TestClient, admin_headers: dict[str, str]
) -> None:
    with webhook_receiver() as receiver:
        rule = create_rule(
            client,
            admin_headers,
            event="audit.anchor",
            channel="webhook",
            url=receiver.url,
        )
        assert rule["event"] == "audit.anchor"
        anchor = take_anchor(client, admin_headers)
        [hit] = receiver.wait_for(lambda hits: len(hits) == 1)
    assert hit.headers["x-signvault-event"] == "audit.anchor"
    assert hit.json()["data"] == anchor


def test_cli_anchor_then_verify_names_the_missing_range(
    tmp_path: Path, database_url: str, session_factory: sessionmaker[Session]
) -> None:
    append(session_factory, 6)
    env = signvault_env(tmp_path / "data", database_url)
    anchor_file = tmp_path / "anchor.json"
    made = run(env, tmp_path, "audit", "anchor", "--output", str(anchor_file))
    assert made.returncode == 0, made.stderr
    anchor = json.loads(anchor_file.read_text())
    assert anchor["seq"] == head(session_factory)[0]
    assert anchor_file.read_text().strip() in made.stderr  # the process log line
    intact = run(env, tmp_path, "audit", "verify", "--anchor", str(anchor_file))
    assert intact.returncode == 0, intact.stdout + intact.stderr
    assert f"(seq {anchor['seq']}, seal " in intact.stdout
    assert "matched" in intact.stdout

    append(session_factory, 2)
    keep = anchor["seq"] - 3
    cut_tail(session_factory, keep_through=keep)
    assert run(env, tmp_path, "audit", "verify").returncode == 0  # the hole alone
    first_missing = head(session_factory)[0] + 1  # that verification's entry is kept
    cut = run(env, tmp_path, "audit", "verify", "--anchor", str(anchor_file))
    assert cut.returncode == 1, cut.stdout + cut.stderr
    assert (
        f"TRUNCATED below the anchor of {anchor['anchored_at']}: "
        f"entries {first_missing} to {anchor['seq']} missing"
    ) in cut.stdout
    assert f"BROKEN at seq {first_missing}" in cut.stdout

    forged = tmp_path / "forged.json"
    forged.write_text(json.dumps({**anchor, "seq": keep}))
    refused = run(env, tmp_path, "audit", "verify", "--anchor", str(forged))
    assert refused.returncode == 2
    assert "forged or was altered" in refused.stderr


def test_offline_export_verification_checks_its_anchor(
    tmp_path: Path,
    client: TestClient,
    admin_headers: dict[str, str],
    session_factory: sessionmaker[Session],
) -> None:
    append(session_factory, 3)
    lines = client.get(
        "/api/v1/audit-logs/export?format=jsonl", headers=admin_headers
    ).text.splitlines(keepends=True)
    env = signvault_env(tmp_path / "data", "sqlite://")

    def verify_file(content: list[str]) -> subprocess.CompletedProcess[str]:
        path = tmp_path / "export.jsonl"
        path.write_text("".join(content))
        return run(env, tmp_path, "audit", "verify", "--file", str(path))

    ok = verify_file(lines)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert "the anchored entry matches" in ok.stdout
    anchor = json.loads(lines[-1])["anchor"]
    altered = json.dumps({"anchor": {**anchor, "hash": "0" * 64}}) + "\n"
    result = verify_file([*lines[:-1], altered])
    assert result.returncode == 1
    assert "forged or altered" in result.stdout
    dropped = verify_file(lines[:-1])
    assert "no anchor line" in dropped.stdout
    assert (
        verify_file([lines[-1], *lines[:-1]]).returncode == 2
    )  # the anchor must be last


def test_served_worker_logs_anchors_a_third_party_verifies_with_openssl(
    tmp_path: Path, database_url: str
) -> None:
    env = signvault_env(
        tmp_path / "data",
        database_url,
        SIGNVAULT_ADMIN_PASSWORD="Anchor-Passw0rd!",
        SIGNVAULT_AUDIT_ANCHOR_EVERY_ENTRIES="1",
        SIGNVAULT_AUDIT_ANCHOR_EVERY_MINUTES="0.05",
    )
    with serve(env, tmp_path) as served:
        deadline = time.monotonic() + 30
        while anchors.FORMAT not in served.log and time.monotonic() < deadline:
            time.sleep(0.2)
        token = httpx.post(
            f"{served.base_url}/api/v1/auth/login",
            json={"username": "admin", "password": "Anchor-Passw0rd!"},
            timeout=30,
        ).json()["access_token"]
        seal = httpx.get(
            f"{served.base_url}/api/v1/audit-logs/seal",
            headers={"Authorization": f"Bearer {token}"},
            timeout=30,
        ).json()
        log = served.log
    [line] = [line for line in log.splitlines() if anchors.FORMAT in line][:1]
    anchor_file = tmp_path / "anchor.json"
    anchor_file.write_text(line)
    anchor = json.loads(line)
    assert anchor["seal_fingerprint_sha256"] == seal["fingerprint_sha256"]
    (tmp_path / "root.pem").write_text(seal["root_certificate_pem"])

    def sh(script: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(  # noqa: S603
            ["/bin/sh", "-c", script],  # openssl and jq: tools nobody here wrote
            cwd=tmp_path,
            capture_output=True,
            text=True,
            check=False,
        )

    # The recipe the README gives, as a third party would run it.
    recipe = (
        "jq -jcS '{format, seq, hash, anchored_at, seal_fingerprint_sha256}' anchor.json > anchor.msg"
        " && jq -r .signature anchor.json | base64 -d > anchor.sig"
        " && jq -r .seal_certificate anchor.json | base64 -d > seal.der"
        " && openssl x509 -inform DER -in seal.der -out seal.pem"
        " && openssl x509 -in seal.pem -pubkey -noout > seal.pub"
        " && openssl dgst -sha256 -verify seal.pub -signature anchor.sig anchor.msg"
        " && openssl verify -CAfile root.pem seal.pem"
        " && sha256sum seal.der"
    )
    checked = sh(recipe)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "Verified OK" in checked.stdout
    assert "seal.pem: OK" in checked.stdout
    assert anchor["seal_fingerprint_sha256"] in checked.stdout
    anchor_file.write_text(json.dumps({**anchor, "seq": anchor["seq"] + 1}))
    forged = sh(recipe)
    assert forged.returncode != 0
    assert "Verification failure" in forged.stdout + forged.stderr
