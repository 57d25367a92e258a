from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from app.core.security import PasswordHasher
from app.settings import service as settings_service
from app.settings.models import SettingsSection
from app.settings.schemas import PasswordPolicy
from tests.factories import (
    Credentials,
    assert_problem,
    audit_events,
    login,
    make_user,
)


def test_security_section_defaults_to_the_server_settings(
    client: TestClient, admin_headers: dict[str, str]
) -> None:
    body = client.get("/api/v1/settings/security", headers=admin_headers).json()
    assert body == {
        "access_token_ttl_seconds": None,
        "refresh_token_ttl_seconds": None,
        "require_2fa_for_administrators": False,
        "rate_limit_per_minute": None,
        "login_attempts_per_minute_per_ip": None,
    }


def test_token_lifetime_override_applies_to_the_next_login(
    client: TestClient, admin_headers: dict[str, str], admin: Credentials
) -> None:
    response = client.put(
        "/api/v1/settings/security",
        json={"access_token_ttl_seconds": 120},
        headers=admin_headers,
    )
    assert response.status_code == 200, response.text
    assert login(client, admin)["expires_in"] == 120  # type: ignore[comparison-overlap]


def test_a_stored_value_no_longer_valid_falls_back_to_the_default(
    session_factory: sessionmaker[Session],
) -> None:
    with session_factory.begin() as session:
        session.add(
            SettingsSection(
                name="password-policy", value={"min_length": 2, "history": 7}
            )
        )
    with session_factory() as session:
        policy = settings_service.password_policy(session)
    assert (policy.min_length, policy.history) == (PasswordPolicy().min_length, 7)


def test_reading_settings_needs_settings_read(
    client: TestClient,
    session_factory: sessionmaker[Session],
    hasher: PasswordHasher,
) -> None:
    bob = make_user(session_factory, hasher, username="bob")
    token = login(client, bob)["access_token"]
    response = client.get(
        "/api/v1/settings/security", headers={"Authorization": f"Bearer {token}"}
    )
    assert response.status_code == 403


def test_patch_merges_into_a_section_and_put_replaces_it_whole(
    client: TestClient,
    admin_headers: dict[str, str],
    session_factory: sessionmaker[Session],
) -> None:
    policy = "/api/v1/settings/password-policy"
    put = client.put(
        policy, json={"min_length": 14, "require_symbol": True}, headers=admin_headers
    )
    assert put.status_code == 200, put.text
    merge = {**admin_headers, "Content-Type": "application/merge-patch+json"}
    patched = client.patch(policy, content=b'{"history": 2}', headers=merge)
    assert patched.status_code == 200, patched.text
    body = patched.json()
    # Only `history` changed: what the PUT set stays.
    assert (body["min_length"], body["require_symbol"], body["history"]) == (
        14,
        True,
        2,
    )
    # null sets a member back to its default; plain JSON is taken too.
    reset = client.patch(policy, json={"min_length": None}, headers=admin_headers)
    assert (reset.status_code, reset.json()["min_length"]) == (200, 10)
    assert [
        e.details["after"] for e in audit_events(session_factory, "settings.updated")
    ][1:] == [{"history": 2}, {"min_length": 10}]
    # PUT still replaces the whole section: what it leaves out is at its default.
    replaced = client.put(policy, json={"history": 3}, headers=admin_headers).json()
    assert (replaced["require_symbol"], replaced["history"]) == (False, 3)


def test_patch_merges_nested_objects_and_names_bad_members(
    client: TestClient, admin_headers: dict[str, str]
) -> None:
    signing = "/api/v1/settings/signing"
    first = client.patch(
        signing,
        json={"default_appearance": {"visible": True, "page": 2}},
        headers=admin_headers,
    )
    assert first.status_code == 200, first.text
    second = client.patch(
        signing, json={"default_appearance": {"page": 3}}, headers=admin_headers
    ).json()
    assert (
        second["default_appearance"]["visible"],
        second["default_appearance"]["page"],
    ) == (True, 3)
    unknown = client.patch(signing, json={"colour": "red"}, headers=admin_headers)
    assert [
        p["name"]
        for p in assert_problem(unknown, 422, "validation_failed")["invalid_params"]
    ] == ["colour"]
    bad = client.patch(
        "/api/v1/settings/security",
        json={"access_token_ttl_seconds": "soon"},
        headers=admin_headers,
    )
    assert [
        p["name"]
        for p in assert_problem(bad, 422, "validation_failed")["invalid_params"]
    ] == ["access_token_ttl_seconds"]
    documents = client.patch(
        "/api/v1/settings/documents",
        json={"content_retention_days": 30},
        headers=admin_headers,
    )
    assert documents.status_code == 200, documents.text
    assert documents.json()["content_retention_days"] == 30
