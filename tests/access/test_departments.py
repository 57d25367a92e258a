import unicodedata
from typing import Any

from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from tests.factories import assert_problem, audit_events


def test_department_crud_is_audited(
    client: TestClient,
    admin_headers: dict[str, str],
    session_factory: sessionmaker[Session],
) -> None:
    created = client.post(
        "/api/v1/departments",
        json={"name": "Finance", "description": "Invoices"},
        headers=admin_headers,
    )
    assert created.status_code == 201, created.text
    url = f"/api/v1/departments/{created.json()['id']}"
    assert_problem(
        client.post(
            "/api/v1/departments", json={"name": "FINANCE"}, headers=admin_headers
        ),
        409,
        "name_taken",
    )
    renamed = client.patch(url, json={"name": "Accounts"}, headers=admin_headers)
    assert renamed.json()["name"] == "Accounts"
    listed = client.get(
        "/api/v1/departments", params={"q": "acc"}, headers=admin_headers
    ).json()
    assert [d["name"] for d in listed["data"]] == ["Accounts"]
    assert client.delete(url, headers=admin_headers).status_code == 204
    assert_problem(client.get(url, headers=admin_headers), 404, "department_not_found")
    [change] = audit_events(session_factory, "department.updated")
    assert change.details == {
        "before": {"name": "Finance"},
        "after": {"name": "Accounts"},
    }
    assert audit_events(session_factory, "department.deleted")


def test_department_with_users_or_clients_cannot_be_deleted(
    client: TestClient, admin_headers: dict[str, str]
) -> None:
    department = client.post(
        "/api/v1/departments", json={"name": "Legal"}, headers=admin_headers
    ).json()
    user = client.post(
        "/api/v1/users",
        json={
            "username": "lea",
            "password": "Legal-Passw0rd",
            "department_id": department["id"],
        },
        headers=admin_headers,
    ).json()
    url = f"/api/v1/departments/{department['id']}"
    body = assert_problem(
        client.delete(url, headers=admin_headers), 409, "still_referenced"
    )
    assert body["remaining"] == {"users": 1}
    assert "1 users" in body["detail"]
    client.patch(
        f"/api/v1/users/{user['id']}",
        json={"department_id": None},
        headers=admin_headers,
    )
    assert client.delete(url, headers=admin_headers).status_code == 204


def test_unknown_department_on_a_user_is_404(
    client: TestClient, admin_headers: dict[str, str]
) -> None:
    response = client.post(
        "/api/v1/users",
        json={
            "username": "lea",
            "password": "Legal-Passw0rd",
            "department_id": "00000000-0000-0000-0000-000000000000",
        },
        headers=admin_headers,
    )
    assert_problem(response, 404, "department_not_found")


def test_names_differing_only_by_non_ascii_case_are_409(
    client: TestClient, admin_headers: dict[str, str]
) -> None:
    def create(name: str) -> Any:
        return client.post(
            "/api/v1/departments", json={"name": name}, headers=admin_headers
        )

    assert create("ÄRZTE").status_code == 201
    decomposed = unicodedata.normalize("NFD", "ärzte")
    for duplicate in ("ÄRZTE", "ärzte", "Ärzte", decomposed):
        body = assert_problem(create(duplicate), 409, "name_taken")
        assert duplicate in body["detail"]
    # Folding is Unicode's, not lower(): ß and SS are one name.
    assert create("Straße").status_code == 201
    assert_problem(create("STRASSE"), 409, "name_taken")
    other = create("Pflege")
    assert other.status_code == 201
    renamed = client.patch(
        f"/api/v1/departments/{other.json()['id']}",
        json={"name": "ärzte"},
        headers=admin_headers,
    )
    assert_problem(renamed, 409, "name_taken")
    names = [
        d["name"]
        for d in client.get("/api/v1/departments", headers=admin_headers).json()["data"]
    ]
    assert sorted(names) == ["Pflege", "Straße", "ÄRZTE"]
