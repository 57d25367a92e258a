from fastapi.testclient import TestClient
from sqlalchemy.orm import Session, sessionmaker

from app.core.security import PasswordHasher
from app.settings import service as settings_service
from app.settings.models import SettingsSection
from app.settings.schemas import PasswordPolicy
from tests.factories import Credentials, login, make_user


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
