"""`signvault rotate-master-key`: one transaction, a safe key-file swap, no restart needed."""

import uuid
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from pydantic import SecretStr
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from app.certificates.errors import KeyUnavailable
from app.core import crypto
from app.core.config import Settings
from app.core.crypto import DataKey, EnvelopeCipher, MasterKey, MasterKeyError
from app.main import create_app
from tests.certificates.conftest import acting_as, import_signer, vault_of
from tests.certificates.pki import make_ca, make_signer
from tests.factories import Credentials, audit_events, login
from tests.served import signvault_env
from tests.test_cli import run


@pytest.fixture
def signing_setup(
    app: FastAPI,
    client: TestClient,
    admin: Credentials,
    admin_headers: dict[str, str],
) -> tuple[uuid.UUID, str]:
    """A certificate assigned to the administrator; its id and the admin's token."""
    ca = make_ca()
    created = import_signer(client, admin_headers, make_signer(ca), ca)
    response = client.post(
        f"/api/v1/certificates/{created['id']}/assignments",
        json={"user_id": str(admin.user_id)},
        headers=admin_headers,
    )
    assert response.status_code == 201
    return uuid.UUID(created["id"]), login(client, admin)["access_token"]


def sign_probe(
    app: FastAPI,
    session_factory: sessionmaker[Session],
    token: str,
    certificate_id: uuid.UUID,
) -> bytes:
    with acting_as(app, session_factory, token) as (session, principal):
        signer = vault_of(app).signer_for(session, principal, certificate_id)
    signature: bytes = signer.sign_raw(b"probe", "sha256")
    return signature


def stored_master_ids(session_factory: sessionmaker[Session]) -> set[str]:
    with session_factory() as session:
        return set(session.scalars(select(DataKey.master_key_id)))


def test_rotation_with_a_key_file_swaps_safely_and_running_processes_follow(
    app: FastAPI,
    client: TestClient,
    settings: Settings,
    database_url: str,
    session_factory: sessionmaker[Session],
    signing_setup: tuple[uuid.UUID, str],
    tmp_path: Path,
) -> None:
    certificate_id, token = signing_setup
    key_file = settings.data_dir / "master.key"
    old = MasterKey.from_base64(key_file.read_text())
    sign_probe(app, session_factory, token, certificate_id)

    result = run(
        signvault_env(settings.data_dir, database_url), tmp_path, "rotate-master-key"
    )

    assert result.returncode == 0, result.stderr
    assert result.stdout == ""  # a key file is never printed
    new = MasterKey.from_base64(key_file.read_text())
    assert new.id != old.id
    assert stored_master_ids(session_factory) == {new.id}
    [retired] = settings.data_dir.glob("master.key.retired-*")
    assert MasterKey.from_base64(retired.read_text()) == old
    assert retired.stat().st_mode & 0o777 == 0o600
    assert key_file.stat().st_mode & 0o777 == 0o600
    assert not crypto.pending_key_file(key_file).exists()
    # the running app follows without a restart: a fresh key load re-reads the key file
    loads = vault_of(app).loads
    assert sign_probe(app, session_factory, token, certificate_id)
    assert vault_of(app).loads == loads + 1
    assert app.state.cipher.master_key == new
    assert client.get("/ready").status_code == 200
    # the old master key no longer opens anything
    with session_factory() as session:
        row = session.scalars(select(DataKey)).first()
        assert row is not None
        with pytest.raises(MasterKeyError):
            EnvelopeCipher(old)._unwrap(row)
    [event] = audit_events(session_factory, "master_key.rotated")
    assert event.details == {
        "old_master_key_id": old.id,
        "new_master_key_id": new.id,
        "data_keys": 2,  # the certificate's key and the token signing key
    }


def test_rotation_with_the_key_from_the_environment_prints_the_new_key_once(
    settings: Settings,
    database_url: str,
    tmp_path: Path,
) -> None:
    old = MasterKey.generate()
    env_settings = settings.model_copy(
        update={"master_key": SecretStr(old.to_base64()), "data_dir": tmp_path / "env"}
    )
    running = create_app(env_settings)
    try:
        with TestClient(running) as client:
            from app.access import service as access_service

            factory = running.state.sessionmaker
            with factory.begin() as session:
                created = access_service.bootstrap_admin(
                    session,
                    running.state.password_hasher,
                    username="root",
                    password="Root-Passw0rd!",
                )
                assert created is not None
                admin = Credentials("root", "Root-Passw0rd!", created[0].id)
            token = login(client, admin)["access_token"]
            headers = {"Authorization": f"Bearer {token}"}
            ca = make_ca()
            certificate = import_signer(client, headers, make_signer(ca), ca)
            client.post(
                f"/api/v1/certificates/{certificate['id']}/assignments",
                json={"user_id": str(admin.user_id)},
                headers=headers,
            )
            env = signvault_env(
                env_settings.data_dir,
                database_url,
                SIGNVAULT_MASTER_KEY=old.to_base64(),
            )
            result = run(env, tmp_path, "rotate-master-key")
            assert result.returncode == 0, result.stderr
            new = MasterKey.from_base64(result.stdout.strip())
            assert "SIGNVAULT_MASTER_KEY" in result.stderr
            assert not (env_settings.data_dir / "master.key").exists()
            assert stored_master_ids(factory) == {new.id}
            # this process cannot re-read an environment key: it needs the new value
            with pytest.raises(KeyUnavailable):
                sign_probe(running, factory, token, uuid.UUID(certificate["id"]))
            assert client.get("/ready").status_code == 503
        restarted = create_app(
            env_settings.model_copy(update={"master_key": SecretStr(new.to_base64())})
        )
        try:
            assert sign_probe(restarted, factory, token, uuid.UUID(certificate["id"]))
        finally:
            restarted.state.engine.dispose()
    finally:
        running.state.engine.dispose()


def test_rotation_with_a_wrong_key_changes_nothing(
    app: FastAPI,
    settings: Settings,
    database_url: str,
    session_factory: sessionmaker[Session],
    signing_setup: tuple[uuid.UUID, str],
    tmp_path: Path,
) -> None:
    before = stored_master_ids(session_factory)
    env = signvault_env(
        settings.data_dir,
        database_url,
        SIGNVAULT_MASTER_KEY=MasterKey.generate().to_base64(),
    )
    result = run(env, tmp_path, "rotate-master-key")
    assert result.returncode == 2
    assert "master key is not usable" in result.stderr
    assert result.stdout == ""
    assert stored_master_ids(session_factory) == before
    assert audit_events(session_factory, "master_key.rotated") == []


def test_interrupted_rotation_is_finished_not_lost(
    app: FastAPI,
    settings: Settings,
    database_url: str,
    session_factory: sessionmaker[Session],
    signing_setup: tuple[uuid.UUID, str],
    tmp_path: Path,
) -> None:
    certificate_id, token = signing_setup
    key_file = settings.data_dir / "master.key"
    old = MasterKey.from_base64(key_file.read_text())
    pending = MasterKey.generate()
    # committed, then the process died before the new key replaced the old file
    crypto.stage_key_file(key_file, pending)
    with session_factory.begin() as session:
        crypto.rotate_master_key(session, old=old, new=pending)
    restarted = create_app(settings)
    try:
        assert restarted.state.cipher.master_key == pending
        with TestClient(restarted) as client:
            assert client.get("/ready").status_code == 200
    finally:
        restarted.state.engine.dispose()
    result = run(
        signvault_env(settings.data_dir, database_url), tmp_path, "rotate-master-key"
    )
    assert result.returncode == 0, result.stderr
    assert "finished an interrupted rotation" in result.stderr
    final = MasterKey.from_base64(key_file.read_text())
    assert stored_master_ids(session_factory) == {final.id}
    assert final.id not in {old.id, pending.id}
    assert sign_probe(app, session_factory, token, certificate_id)


def test_cipher_seals_under_the_new_key_after_another_process_rotated(
    app: FastAPI,
    settings: Settings,
    database_url: str,
    session_factory: sessionmaker[Session],
    signing_setup: tuple[uuid.UUID, str],
    tmp_path: Path,
) -> None:
    stale: EnvelopeCipher = app.state.cipher
    result = run(
        signvault_env(settings.data_dir, database_url), tmp_path, "rotate-master-key"
    )
    assert result.returncode == 0, result.stderr
    with session_factory.begin() as session:
        blob = stale.seal(session, b"after rotation", purpose="test")
    new = MasterKey.from_base64((settings.data_dir / "master.key").read_text())
    assert stored_master_ids(session_factory) == {new.id}
    with session_factory() as session:
        assert (
            EnvelopeCipher(new).open(session, blob, purpose="test") == b"after rotation"
        )
