"""Envelope encryption: per-secret data keys wrapped by the master key."""

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from pydantic import SecretStr
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from app.core.config import Settings
from app.core.crypto import (
    CryptoError,
    DataKey,
    EnvelopeCipher,
    MasterKey,
    MasterKeyError,
    rotate_master_key,
)
from app.main import create_app
from tests.factories import assert_problem


def test_seal_and_open_round_trip_with_a_key_per_secret(
    app: FastAPI, session_factory: sessionmaker[Session]
) -> None:
    cipher: EnvelopeCipher = app.state.cipher
    with session_factory.begin() as session:
        first = cipher.seal(session, b"private key bytes", purpose="pkcs12")
        second = cipher.seal(session, b"private key bytes", purpose="pkcs12")
    assert b"private key bytes" not in first
    assert first != second
    with session_factory() as session:
        assert cipher.open(session, first, purpose="pkcs12") == b"private key bytes"
        stored = session.scalars(select(DataKey).where(DataKey.purpose == "pkcs12"))
        assert len(stored.all()) == 2
        with pytest.raises(CryptoError, match="another purpose"):
            cipher.open(session, first, purpose="totp")
        with pytest.raises(MasterKeyError):
            EnvelopeCipher(MasterKey.generate()).open(session, first, purpose="pkcs12")
        damaged = first[:-1] + bytes([first[-1] ^ 1])
        with pytest.raises(CryptoError, match="damaged"):
            cipher.open(session, damaged, purpose="pkcs12")


def test_destroying_the_data_key_destroys_the_secret(
    app: FastAPI, session_factory: sessionmaker[Session]
) -> None:
    cipher: EnvelopeCipher = app.state.cipher
    with session_factory.begin() as session:
        blob = cipher.seal(session, b"s3cret", purpose="pkcs12")
    with session_factory.begin() as session:
        cipher.destroy(session, blob)
    with session_factory() as session, pytest.raises(CryptoError, match="destroyed"):
        cipher.open(session, blob, purpose="pkcs12")


def test_rotation_rewraps_keys_without_touching_ciphertexts(
    app: FastAPI, session_factory: sessionmaker[Session]
) -> None:
    old, new = app.state.cipher.master_key, MasterKey.generate()
    with session_factory.begin() as session:
        blobs = [
            EnvelopeCipher(old).seal(session, f"secret {n}".encode(), purpose="totp")
            for n in range(3)
        ]
    with session_factory.begin() as session:
        # the three, and the token signing key sealed at start
        assert rotate_master_key(session, old=old, new=new) == 4
    with session_factory() as session:
        assert [
            EnvelopeCipher(new).open(session, b, purpose="totp") for b in blobs
        ] == [b"secret 0", b"secret 1", b"secret 2"]
        with pytest.raises(MasterKeyError):
            EnvelopeCipher(old).open(session, blobs[0], purpose="totp")


def test_master_key_file_is_generated_private_and_kept(
    app: object, settings: Settings
) -> None:
    key_file = settings.data_dir / "master.key"
    assert key_file.stat().st_mode & 0o777 == 0o600
    before = key_file.read_text()
    again = create_app(settings)
    again.state.engine.dispose()
    assert key_file.read_text() == before


def test_lost_key_file_is_not_replaced_while_secrets_exist(
    settings: Settings, app: object, session_factory: sessionmaker[Session]
) -> None:
    key_file = settings.data_dir / "master.key"
    cipher = EnvelopeCipher(MasterKey.from_base64(key_file.read_text()))
    with session_factory.begin() as session:
        cipher.seal(session, b"s", purpose="totp")
    key_file.unlink()
    restarted = create_app(settings)
    try:
        assert not key_file.exists()
        with TestClient(restarted) as client:
            body = assert_problem(client.get("/ready"), 503, "service_unavailable")
        assert "no master key is loaded" in body["detail"]
    finally:
        restarted.state.engine.dispose()


def test_wrong_master_key_makes_ready_fail(
    settings: Settings, app: object, session_factory: sessionmaker[Session]
) -> None:
    key_file = settings.data_dir / "master.key"
    with session_factory.begin() as session:
        EnvelopeCipher(MasterKey.from_base64(key_file.read_text())).seal(
            session, b"s", purpose="totp"
        )
    wrong = settings.model_copy(
        update={"master_key": SecretStr(MasterKey.generate().to_base64())}
    )
    restarted = create_app(wrong)
    try:
        with TestClient(restarted) as client:
            body = assert_problem(client.get("/ready"), 503, "service_unavailable")
        assert "wrapped by master key" in body["detail"]
    finally:
        restarted.state.engine.dispose()


def test_malformed_master_key_is_refused() -> None:
    with pytest.raises(MasterKeyError, match="base64"):
        MasterKey.from_base64("not base64!")
    with pytest.raises(MasterKeyError, match="32 bytes"):
        MasterKey.from_base64("c2hvcnQ=")
