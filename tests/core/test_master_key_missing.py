"""A host without the database's master key refuses to start, in one line that says where it looked."""

from pathlib import Path

import pytest
from fastapi import FastAPI
from sqlalchemy.orm import Session, sessionmaker

from app.core.config import Settings
from app.core.crypto import MASTER_KEY_FILE_NAME, EnvelopeCipher, MasterKey
from tests.served import serve, signvault_env
from tests.test_cli import run


@pytest.fixture
def sealed_database(
    app: FastAPI, session_factory: sessionmaker[Session], settings: Settings
) -> MasterKey:
    """The test database holds a sealed secret; returns the master key that wraps it."""
    cipher: EnvelopeCipher = app.state.cipher
    with session_factory.begin() as session:
        cipher.seal(session, b"a secret", purpose="test")
    app.state.engine.dispose()
    assert (settings.data_dir / MASTER_KEY_FILE_NAME).exists()
    return cipher.master_key


@pytest.mark.parametrize("command", ["serve", "worker"])
def test_a_host_without_the_key_file_refuses_to_start(
    sealed_database: MasterKey, database_url: str, tmp_path: Path, command: str
) -> None:
    other_host = tmp_path / "other-host"  # a data dir without master.key
    env = signvault_env(other_host, database_url)

    result = run(env, tmp_path, command)

    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("signvault: the master key is missing:")
    assert "SIGNVAULT_MASTER_KEY is not set" in lines[0]
    assert str((other_host / MASTER_KEY_FILE_NAME).resolve()) in lines[0]
    assert sealed_database.id in lines[0]
    assert not (other_host / MASTER_KEY_FILE_NAME).exists()  # not replaced by a new key


def test_a_wrong_key_in_the_environment_refuses_to_start_the_right_one_serves(
    sealed_database: MasterKey, database_url: str, tmp_path: Path
) -> None:
    wrong = MasterKey.generate()
    env = signvault_env(
        tmp_path / "other-host", database_url, SIGNVAULT_MASTER_KEY=wrong.to_base64()
    )

    result = run(env, tmp_path, "serve")

    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("signvault: the master key is not usable:")
    assert "SIGNVAULT_MASTER_KEY" in lines[0]
    assert wrong.id in lines[0]
    assert sealed_database.id in lines[0]

    env["SIGNVAULT_MASTER_KEY"] = sealed_database.to_base64()
    with serve(env, tmp_path) as served:  # ready: /ready answered 200
        assert "master key" not in served.log
