from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr

from app.core.config import Settings, SettingsError, load_settings
from app.main import create_app

README = Path(__file__).resolve().parents[2] / "README.md"


def test_readme_documents_every_setting() -> None:
    text = README.read_text()
    missing = [
        name
        for name in Settings.model_fields
        if f"`SIGNVAULT_{name.upper()}`" not in text
    ]
    assert missing == []


def test_cors_origins_are_read_comma_separated(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SIGNVAULT_CORS_ORIGINS", "https://a.example, https://b.example")
    assert load_settings().cors_origins == ["https://a.example", "https://b.example"]


@pytest.mark.parametrize(
    "variable", ["SIGNVAULT_BACKGROUND_IN_PROCESS", "SIGNVAULT_BATCH_IN_PROCESS"]
)
def test_background_work_can_be_moved_out_under_either_name(
    monkeypatch: pytest.MonkeyPatch, variable: str
) -> None:
    # SIGNVAULT_BATCH_IN_PROCESS was the name before notifications joined batches.
    assert load_settings().background_in_process is True
    monkeypatch.setenv(variable, "false")
    assert load_settings().background_in_process is False


def test_invalid_settings_name_every_bad_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("SIGNVAULT_ACCESS_TOKEN_TTL_SECONDS", "5")
    monkeypatch.setenv("SIGNVAULT_METRICS_PUBLIC", "maybe")
    with pytest.raises(SettingsError) as error:
        load_settings()
    message = str(error.value)
    assert "\n" not in message
    assert "SIGNVAULT_ACCESS_TOKEN_TTL_SECONDS" in message
    assert "SIGNVAULT_METRICS_PUBLIC" in message


def test_cors_allows_configured_origins_only(settings: Settings) -> None:
    app = create_app(
        settings.model_copy(update={"cors_origins": ["https://portal.example"]})
    )
    try:
        with TestClient(app) as client:
            allowed = client.options(
                "/api/v1/auth/me",
                headers={
                    "Origin": "https://portal.example",
                    "Access-Control-Request-Method": "GET",
                },
            )
            assert (
                allowed.headers["access-control-allow-origin"]
                == "https://portal.example"
            )
            other = client.get("/health", headers={"Origin": "https://evil.example"})
            assert "access-control-allow-origin" not in other.headers
    finally:
        app.state.engine.dispose()


def test_the_token_key_lives_in_the_database_not_the_data_dir(
    settings: Settings,
) -> None:
    first = create_app(settings)
    master_key = (settings.data_dir / "master.key").read_text()
    other_host = settings.model_copy(
        update={
            "data_dir": settings.data_dir / "other-host",
            "master_key": SecretStr(master_key),
        }
    )
    second = create_app(other_host)
    try:
        assert not (settings.data_dir / "jwt-signing-key.pem").exists()
        assert first.state.token_keys.kid == second.state.token_keys.kid
    finally:
        first.state.engine.dispose()
        second.state.engine.dispose()
