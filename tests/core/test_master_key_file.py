"""SIGNVAULT_MASTER_KEY_FILE: the master key from a mounted secret, read only."""

from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from app.core.config import Settings, SettingsError, load_settings
from app.core.crypto import MASTER_KEY_FILE_NAME, MasterKey
from app.main import create_app
from tests.served import serve, signvault_env
from tests.test_cli import run


@pytest.fixture
def master_key(app: FastAPI) -> MasterKey:
    """The master key of the test database (it seals the token signing key)."""
    key: MasterKey = app.state.cipher.master_key
    app.state.engine.dispose()
    return key


def secret_file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "secrets" / "signvault-master-key"
    path.parent.mkdir(exist_ok=True)
    path.write_text(text)
    path.chmod(0o400)  # as Docker and Kubernetes mount secrets
    return path


def one_line(stderr: str) -> str:
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    return lines[0]


def test_a_secret_file_with_a_trailing_newline_serves_and_nothing_is_written(
    master_key: MasterKey, settings: Settings, tmp_path: Path
) -> None:
    secret = secret_file(tmp_path, master_key.to_base64() + "\n")
    other_host = settings.model_copy(
        update={"data_dir": tmp_path / "other-host", "master_key_file": secret}
    )
    app = create_app(other_host)
    try:
        assert app.state.cipher.master_key == master_key
        with TestClient(app) as client:
            assert client.get("/ready").status_code == 200
        assert not (other_host.data_dir / MASTER_KEY_FILE_NAME).exists()
        assert secret.read_text() == master_key.to_base64() + "\n"
    finally:
        app.state.engine.dispose()


def test_both_the_variable_and_the_file_refuse_to_start(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, database_url: str
) -> None:
    key = MasterKey.generate().to_base64()
    secret = secret_file(tmp_path, key)
    monkeypatch.setenv("SIGNVAULT_MASTER_KEY", key)
    monkeypatch.setenv("SIGNVAULT_MASTER_KEY_FILE", str(secret))
    with pytest.raises(SettingsError, match="both set"):
        load_settings()
    env = signvault_env(
        tmp_path / "data",
        database_url,
        SIGNVAULT_MASTER_KEY=key,
        SIGNVAULT_MASTER_KEY_FILE=str(secret),
    )
    result = run(env, tmp_path, "serve")
    assert result.returncode == 2
    line = one_line(result.stderr)
    assert line.startswith("signvault: invalid setting SIGNVAULT_MASTER_KEY_FILE:")
    assert "SIGNVAULT_MASTER_KEY and SIGNVAULT_MASTER_KEY_FILE are both set" in line


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (None, "does not exist"),
        ("a directory", "cannot read"),
        ("not base64!\n", "is malformed: the master key is not valid base64"),
        ("c2hvcnQ=\n", "is malformed: the master key must be 32 bytes"),
    ],
)
@pytest.mark.parametrize("command", ["serve", "worker"])
def test_an_unusable_secret_file_refuses_to_start_naming_it(
    tmp_path: Path,
    database_url: str,
    command: str,
    content: str | None,
    expected: str,
) -> None:
    path = tmp_path / "secrets" / "signvault-master-key"
    if content == "a directory":
        path.mkdir(parents=True)
    elif content is not None:
        path = secret_file(tmp_path, content)
    env = signvault_env(
        tmp_path / "data", database_url, SIGNVAULT_MASTER_KEY_FILE=str(path)
    )

    result = run(env, tmp_path, command)

    assert result.returncode == 2, result.stderr
    line = one_line(result.stderr)
    assert line.startswith("signvault: the master key is not usable:")
    assert f"the master key file {path} (SIGNVAULT_MASTER_KEY_FILE)" in line
    assert expected in line
    assert not (tmp_path / "data" / MASTER_KEY_FILE_NAME).exists()


def test_rotation_with_a_secret_file_prints_the_key_and_leaves_the_file(
    master_key: MasterKey, settings: Settings, database_url: str, tmp_path: Path
) -> None:
    secret = secret_file(tmp_path, master_key.to_base64() + "\n")
    host = settings.model_copy(
        update={"data_dir": tmp_path / "host", "master_key_file": secret}
    )
    running = create_app(host)
    try:
        env = signvault_env(
            host.data_dir, database_url, SIGNVAULT_MASTER_KEY_FILE=str(secret)
        )
        result = run(env, tmp_path, "rotate-master-key")

        assert result.returncode == 0, result.stderr
        new = MasterKey.from_base64(result.stdout.strip())
        assert new != master_key
        assert f"the secret SIGNVAULT_MASTER_KEY_FILE names ({secret})" in one_line(
            result.stderr
        )
        assert secret.read_text() == master_key.to_base64() + "\n"  # never written
        assert not list(secret.parent.glob("*.new")) + list(
            host.data_dir.glob("master.key*")
        )
        with TestClient(running) as client:
            assert client.get("/ready").status_code == 503  # the secret is the old key
            # the operator updates the secret: the running process re-reads it
            secret.chmod(0o600)
            secret.write_text(new.to_base64() + "\n")
            assert client.get("/ready").status_code == 200
            assert running.state.cipher.master_key == new
    finally:
        running.state.engine.dispose()


def test_serve_starts_with_the_key_from_a_secret_file(
    master_key: MasterKey, database_url: str, tmp_path: Path
) -> None:
    secret = secret_file(tmp_path, master_key.to_base64() + "\n")
    env = signvault_env(
        tmp_path / "other-host", database_url, SIGNVAULT_MASTER_KEY_FILE=str(secret)
    )
    with serve(env, tmp_path) as served:  # ready: /ready answered 200
        assert "master key" not in served.log
    assert not (tmp_path / "other-host" / MASTER_KEY_FILE_NAME).exists()
