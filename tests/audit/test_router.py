"""The audit-log API: search, one entry, export, verification, settings."""

import csv
import io
import json
import uuid
from datetime import UTC, datetime, timedelta

from fastapi.testclient import TestClient
from sqlalchemy import text
from sqlalchemy.orm import Session, sessionmaker

from app.audit import service as audit_service
from app.audit.chain import content_hash
from app.audit.service import Actor, ActorKind, Outcome
from app.core.security import PasswordHasher
from tests.factories import (
    assert_problem,
    audit_events,
    bearer,
    login,
    make_user,
)

ALICE = Actor(ActorKind.USER, "alice-id", "alice")
ERP = Actor(ActorKind.CLIENT, "erp-id", "erp")


def seed(session_factory: sessionmaker[Session]) -> None:
    """Six entries spread over three days, two actors, several actions."""
    base = datetime(2026, 1, 10, 12, 0, tzinfo=UTC)
    entries = [
        (ALICE, "certificate.imported", "certificate", "c1", Outcome.SUCCESS, 0),
        (ALICE, "certificate.assigned", "certificate", "c1", Outcome.SUCCESS, 1),
        (ERP, "document.signed", "document", "d1", Outcome.SUCCESS, 1),
        (ERP, "document.signed", "document", "d2", Outcome.FAILURE, 2),
        (ALICE, "certificates.listed", "certificate", "c2", Outcome.SUCCESS, 2),
        (ALICE, "certificate_x.weird", "certificate", "c3", Outcome.DENIED, 2),
    ]
    with session_factory.begin() as session:
        audit_service.append_many(
            session,
            (
                {
                    "id": uuid.uuid4(),
                    "occurred_at": base + timedelta(days=day, minutes=n),
                    "actor_kind": actor.kind.value,
                    "actor_id": actor.id,
                    "actor_name": actor.name,
                    "action": action,
                    "resource_type": rtype,
                    "resource_id": rid,
                    "outcome": outcome.value,
                    "ip": "10.0.0.1" if actor is ALICE else "10.0.0.2",
                    "details": {"n": n},
                }
                for n, (actor, action, rtype, rid, outcome, day) in enumerate(entries)
            ),
        )


def search(client: TestClient, headers: dict[str, str], query: str) -> list[str]:
    response = client.get(f"/api/v1/audit-logs?{query}", headers=headers)
    assert response.status_code == 200, response.text
    return [e["action"] for e in response.json()["data"]]


def test_search_filters_by_each_field(
    client: TestClient,
    admin_headers: dict[str, str],
    session_factory: sessionmaker[Session],
) -> None:
    seed(session_factory)
    h = admin_headers
    assert search(client, h, "action=certificate.&sort=seq") == [
        "certificate.imported",
        "certificate.assigned",
    ]
    assert search(client, h, "action=document.signed&outcome=failure") == [
        "document.signed"
    ]
    assert search(client, h, "actor_id=erp-id&sort=seq") == [
        "document.signed",
        "document.signed",
    ]
    assert search(client, h, "actor_kind=client&resource_id=d2") == ["document.signed"]
    assert search(client, h, "ip=10.0.0.2&resource_type=document") == [
        "document.signed",
        "document.signed",
    ]
    assert search(client, h, "outcome=denied&outcome=failure&sort=seq") == [
        "document.signed",
        "certificate_x.weird",
    ]
    assert search(
        client,
        h,
        "from=2026-01-11T00:00:00Z&to=2026-01-12T00:00:00Z&actor_id=alice-id",
    ) == ["certificate.assigned"]


def test_search_pages_newest_first_with_a_total(
    client: TestClient,
    admin_headers: dict[str, str],
    session_factory: sessionmaker[Session],
) -> None:
    seed(session_factory)
    page = client.get(
        "/api/v1/audit-logs?resource_type=certificate&limit=2", headers=admin_headers
    ).json()
    assert (page["total"], page["count"]) == (4, 2)
    assert [e["action"] for e in page["data"]] == [
        "certificate_x.weird",
        "certificates.listed",
    ]
    assert page["data"][0]["occurred_at"].endswith("Z")
    assert set(page["data"][0]) >= {"seq", "prev_hash", "hash", "details", "ip"}


def test_bad_search_parameters_are_422(
    client: TestClient, admin_headers: dict[str, str]
) -> None:
    for query in (
        "outcome=maybe",
        "actor_kind=robot",
        "from=yesterday",
        "from=2026-01-01T00:00:00",  # no time zone
        "sort=hash",
    ):
        assert_problem(
            client.get(f"/api/v1/audit-logs?{query}", headers=admin_headers),
            422,
            "validation_failed",
        )


def test_one_entry_or_404(
    client: TestClient,
    admin_headers: dict[str, str],
    session_factory: sessionmaker[Session],
) -> None:
    seed(session_factory)
    first = audit_events(session_factory, "certificate.imported")[0]
    body = client.get(f"/api/v1/audit-logs/{first.id}", headers=admin_headers).json()
    assert (body["seq"], body["hash"], body["details"]) == (
        first.seq,
        first.hash,
        {"n": 0},
    )
    assert_problem(
        client.get(f"/api/v1/audit-logs/{uuid.uuid4()}", headers=admin_headers),
        404,
        "audit_event_not_found",
    )


def test_reading_the_log_needs_audit_read(
    client: TestClient, session_factory: sessionmaker[Session], hasher: PasswordHasher
) -> None:
    signer = make_user(session_factory, hasher, username="sam")
    headers = bearer(login(client, signer)["access_token"])
    for path in (
        "/api/v1/audit-logs",
        "/api/v1/audit-logs/verify",
        "/api/v1/audit-logs/export",
        "/api/v1/audit-logs/settings",
        "/api/v1/audit-logs/trail?resource_type=user&resource_id=x",
    ):
        assert_problem(client.get(path, headers=headers), 403, "forbidden")
    assert_problem(client.get("/api/v1/audit-logs"), 401, "not_authenticated")


def test_auditor_reads_and_exports_but_cannot_configure(
    client: TestClient, session_factory: sessionmaker[Session], hasher: PasswordHasher
) -> None:
    auditor = make_user(session_factory, hasher, username="aud", roles=("auditor",))
    headers = bearer(login(client, auditor)["access_token"])
    assert client.get("/api/v1/audit-logs", headers=headers).status_code == 200
    assert client.get("/api/v1/audit-logs/export", headers=headers).status_code == 200
    assert_problem(
        client.put(
            "/api/v1/audit-logs/settings", json={"retention_days": 1}, headers=headers
        ),
        403,
        "forbidden",
    )


def test_jsonl_export_carries_hashes_that_recompute(
    client: TestClient,
    admin_headers: dict[str, str],
    session_factory: sessionmaker[Session],
    admin: object,
) -> None:
    seed(session_factory)
    response = client.get(
        "/api/v1/audit-logs/export?format=jsonl&actor_id=erp-id", headers=admin_headers
    )
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/x-ndjson"
    assert "attachment" in response.headers["content-disposition"]
    *rows, anchor = [json.loads(line) for line in response.text.splitlines()]
    assert [r["resource_id"] for r in rows] == ["d1", "d2"]
    assert anchor["anchor"]["seq"] > rows[-1]["seq"]
    for row in rows:
        assert content_hash(row) == row["hash"]
    [exported] = audit_events(session_factory, "audit.exported")
    assert exported.details["format"] == "jsonl"
    assert exported.details["filters"] == {"actor_id": "erp-id"}


def test_csv_export_has_a_header_and_the_chain_columns(
    client: TestClient,
    admin_headers: dict[str, str],
    session_factory: sessionmaker[Session],
) -> None:
    seed(session_factory)
    response = client.get(
        "/api/v1/audit-logs/export?format=csv&action=certificate.",
        headers=admin_headers,
    )
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/csv; charset=utf-8"
    *rows, anchor = list(csv.DictReader(io.StringIO(response.text)))
    assert [r["action"] for r in rows] == [
        "certificate.imported",
        "certificate.assigned",
    ]
    assert (anchor["id"], anchor["action"]) == ("anchor", "audit.anchor")
    assert rows[1]["prev_hash"] == rows[0]["hash"]
    assert json.loads(rows[0]["details"]) == {"n": 0}
    assert_problem(
        client.get("/api/v1/audit-logs/export?format=xml", headers=admin_headers),
        422,
        "validation_failed",
    )


def test_verify_reports_intact_then_the_tampered_entry_and_is_audited(
    client: TestClient,
    admin_headers: dict[str, str],
    session_factory: sessionmaker[Session],
) -> None:
    seed(session_factory)
    body = client.get("/api/v1/audit-logs/verify", headers=admin_headers).json()
    assert body["intact"] is True
    assert body["broken"] is None
    assert body["checked"] == body["head_seq"] == body["last_seq"]
    target = audit_events(session_factory, "document.signed")[0]
    with session_factory.begin() as session:
        session.execute(
            text("UPDATE audit_events SET ip = '6.6.6.6' WHERE seq = :seq"),
            {"seq": target.seq},
        )
    body = client.get("/api/v1/audit-logs/verify", headers=admin_headers).json()
    assert body["intact"] is False
    assert body["broken"] == {
        "seq": target.seq,
        "event_id": str(target.id),
        "reason": "content does not match its hash",
    }
    verifications = audit_events(session_factory, "audit.verified")
    assert [v.outcome for v in verifications] == ["success", "failure"]
    assert verifications[1].details["broken_seq"] == target.seq


def test_settings_read_update_and_audited(
    client: TestClient,
    admin_headers: dict[str, str],
    session_factory: sessionmaker[Session],
) -> None:
    body = client.get("/api/v1/audit-logs/settings", headers=admin_headers).json()
    assert (body["retention_days"], body["audit_trail_enabled"]) == (None, True)
    changed = client.put(
        "/api/v1/audit-logs/settings",
        json={"retention_days": 365},
        headers=admin_headers,
    )
    assert changed.status_code == 200, changed.text
    assert (
        changed.json()["retention_days"],
        changed.json()["audit_trail_enabled"],
    ) == (
        365,
        True,
    )
    client.put(
        "/api/v1/audit-logs/settings",
        json={"retention_days": None, "audit_trail_enabled": False},
        headers=admin_headers,
    )
    body = client.get("/api/v1/audit-logs/settings", headers=admin_headers).json()
    assert (body["retention_days"], body["audit_trail_enabled"]) == (None, False)
    updates = audit_events(session_factory, "audit.settings_updated")
    assert updates[0].details == {
        "before": {"retention_days": None},
        "after": {"retention_days": 365},
    }
    for bad in ({"retention_days": 0}, {"retention_days": "x"}, {"keep": True}):
        assert_problem(
            client.put("/api/v1/audit-logs/settings", json=bad, headers=admin_headers),
            422,
            "validation_failed",
        )


def test_prefix_search_merges_actions_newest_first_across_pages(
    client: TestClient,
    admin_headers: dict[str, str],
    session_factory: sessionmaker[Session],
) -> None:
    seed(session_factory)
    h = admin_headers
    assert search(client, h, "action=certificate.") == [
        "certificate.assigned",
        "certificate.imported",
    ]
    assert search(client, h, "action=certificate.&sort=occurred_at") == [
        "certificate.imported",
        "certificate.assigned",
    ]
    page = client.get(
        "/api/v1/audit-logs?action=certificate.&limit=1&offset=1", headers=h
    ).json()
    assert (page["total"], [e["action"] for e in page["data"]]) == (
        2,
        ["certificate.imported"],
    )
    failed = client.get(
        "/api/v1/audit-logs?action=document.&outcome=failure", headers=h
    ).json()
    assert (failed["total"], [e["resource_id"] for e in failed["data"]]) == (1, ["d2"])
    assert (
        client.get("/api/v1/audit-logs?action=nothing.", headers=h).json()["total"] == 0
    )
