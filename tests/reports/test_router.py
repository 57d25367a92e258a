"""Usage reports: dashboard summary and audit activity, computed in SQL."""

import uuid
from datetime import UTC, datetime, timedelta

from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from app.audit import service as audit_service
from app.core.security import PasswordHasher
from app.core.types import utcnow
from tests.factories import assert_problem, bearer, login, make_user


def seed(
    session_factory: sessionmaker[Session],
    entries: list[tuple[datetime, str, str, str]],
) -> None:
    """(time, actor id, action, outcome) entries."""
    with session_factory.begin() as session:
        audit_service.append_many(
            session,
            (
                {
                    "id": uuid.uuid4(),
                    "occurred_at": moment,
                    "actor_kind": "user",
                    "actor_id": actor,
                    "actor_name": f"name-{actor}",
                    "action": action,
                    "outcome": outcome,
                    "details": {},
                }
                for moment, actor, action, outcome in entries
            ),
        )


def at(day: int, hour: int = 12) -> datetime:
    return datetime(2026, 3, day, hour, tzinfo=UTC)


ENTRIES = [
    (at(1), "a", "document.signed", "success"),
    (at(1, 23), "a", "document.signed", "failure"),
    (at(3), "b", "document.signed", "success"),
    (at(3), "b", "auth.login", "success"),
    (at(3), "a", "auth.login", "failure"),
    (datetime(2026, 4, 2, tzinfo=UTC), "b", "document.signed", "success"),
]


def test_activity_by_day_is_zero_filled(
    client: TestClient,
    admin_headers: dict[str, str],
    session_factory: sessionmaker[Session],
) -> None:
    seed(session_factory, ENTRIES)
    body = client.get(
        "/api/v1/reports/activity?group_by=day&from=2026-03-01T00:00:00Z&to=2026-03-04T00:00:00Z",
        headers=admin_headers,
    ).json()
    assert (body["from"], body["to"], body["group_by"], body["total"]) == (
        "2026-03-01T00:00:00Z",
        "2026-03-04T00:00:00Z",
        "day",
        5,
    )
    assert [(b["key"], b["count"], b["failures"]) for b in body["buckets"]] == [
        ("2026-03-01", 2, 1),
        ("2026-03-02", 0, 0),
        ("2026-03-03", 3, 1),
    ]


def test_activity_by_month_with_an_action_prefix(
    client: TestClient,
    admin_headers: dict[str, str],
    session_factory: sessionmaker[Session],
) -> None:
    seed(session_factory, ENTRIES)
    body = client.get(
        "/api/v1/reports/activity?group_by=month&action=document.&from=2026-02-15T00:00:00Z&to=2026-05-01T00:00:00Z",
        headers=admin_headers,
    ).json()
    assert [(b["key"], b["count"]) for b in body["buckets"]] == [
        ("2026-02", 0),
        ("2026-03", 3),
        ("2026-04", 1),
    ]


def test_activity_by_actor_action_and_outcome_ranks_the_top(
    client: TestClient,
    admin_headers: dict[str, str],
    session_factory: sessionmaker[Session],
) -> None:
    seed(session_factory, ENTRIES)
    window = "from=2026-03-01T00:00:00Z&to=2026-05-01T00:00:00Z"
    actors = client.get(
        f"/api/v1/reports/activity?group_by=actor&{window}", headers=admin_headers
    ).json()["buckets"]
    assert [(b["key"], b["label"], b["count"], b["failures"]) for b in actors] == [
        ("user:a", "name-a", 3, 2),
        ("user:b", "name-b", 3, 0),
    ]
    actions = client.get(
        f"/api/v1/reports/activity?group_by=action&top=1&{window}",
        headers=admin_headers,
    ).json()["buckets"]
    assert [(b["key"], b["count"]) for b in actions] == [("document.signed", 4)]
    outcomes = client.get(
        f"/api/v1/reports/activity?group_by=outcome&outcome=failure&{window}",
        headers=admin_headers,
    ).json()["buckets"]
    assert [(b["key"], b["count"]) for b in outcomes] == [("failure", 2)]


def test_activity_rejects_a_reversed_or_huge_range(
    client: TestClient, admin_headers: dict[str, str]
) -> None:
    for query in (
        "from=2026-03-02T00:00:00Z&to=2026-03-01T00:00:00Z",
        "group_by=day&from=2000-01-01T00:00:00Z&to=2026-01-01T00:00:00Z",
        "group_by=week",
        "top=0",
    ):
        assert_problem(
            client.get(f"/api/v1/reports/activity?{query}", headers=admin_headers),
            422,
            "validation_failed",
        )


def test_activity_defaults_to_the_last_30_days(
    client: TestClient, admin_headers: dict[str, str]
) -> None:
    body = client.get("/api/v1/reports/activity", headers=admin_headers).json()
    assert len(body["buckets"]) == 30
    assert body["buckets"][-1]["key"] == utcnow().date().isoformat()
    assert body["total"] >= 1  # the admin's log-in


def test_summary_counts_users_clients_and_audit_activity(
    client: TestClient,
    admin_headers: dict[str, str],
    session_factory: sessionmaker[Session],
    hasher: PasswordHasher,
) -> None:
    make_user(session_factory, hasher, username="sam")
    client.post("/api/v1/auth/login", json={"username": "sam", "password": "wrong"})
    client.post(
        "/api/v1/clients",
        json={"name": "erp", "entitlements": ["documents:read"]},
        headers=admin_headers,
    )
    seed(
        session_factory, [(utcnow() - timedelta(days=400), "x", "old.thing", "success")]
    )
    body = client.get("/api/v1/reports/summary", headers=admin_headers).json()
    assert body["users"] == {"total": 2, "by_status": {"active": 2}}
    assert body["api_clients"] == {"total": 1, "by_status": {"active": 1}}
    assert body["departments"] == 0
    audit = body["audit"]
    assert audit["failed_logins_last_24h"] == 1
    assert audit["failures_last_24h"] == 1
    assert audit["events_stored"] == audit["chain_head_seq"]
    assert audit["events_today"] == audit["events_stored"] - 1  # all but the old one
    assert audit["events_this_month"] == audit["events_today"]


def test_reports_need_reports_read(
    client: TestClient, session_factory: sessionmaker[Session], hasher: PasswordHasher
) -> None:
    signer = make_user(session_factory, hasher, username="sam")
    headers = bearer(login(client, signer)["access_token"])
    for path in ("/api/v1/reports/summary", "/api/v1/reports/activity"):
        assert_problem(client.get(path, headers=headers), 403, "forbidden")
