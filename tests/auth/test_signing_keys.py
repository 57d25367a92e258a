"""Token signing keys in the database: first key, imports, rotation, retirement, the JWK set."""

import threading
from datetime import timedelta
from pathlib import Path

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from fastapi import FastAPI
from fastapi.testclient import TestClient
from pydantic import SecretStr
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from app.auth import signing_keys
from app.auth.models import TokenSigningKey
from app.auth.tokens import key_id
from app.core.config import Settings
from app.core.crypto import DataKey, EnvelopeCipher, MasterKey, MasterKeyError
from app.core.types import utcnow
from app.main import create_app
from tests.factories import Credentials, assert_problem, audit_events, bearer, login
from tests.served import signvault_env
from tests.test_cli import run

ME = "/api/v1/auth/me"
JWKS = "/.well-known/jwks.json"


def _pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _stored(factory: sessionmaker[Session]) -> list[TokenSigningKey]:
    with factory() as session:
        return list(
            session.scalars(
                select(TokenSigningKey).order_by(TokenSigningKey.generation)
            )
        )


def _rotate(app: FastAPI, **options: bool) -> signing_keys.Rotation:
    with app.state.sessionmaker.begin() as session:
        return signing_keys.rotate(
            session, app.state.cipher, app.state.settings, **options
        )


def _kid(token: str) -> str:
    kid: str = jwt.get_unverified_header(token)["kid"]
    return kid


def test_an_access_token_verifies_with_the_published_jwk_set(
    client: TestClient, admin: Credentials, settings: Settings
) -> None:
    token = login(client, admin)["access_token"]
    response = client.get(JWKS)  # no token needed
    assert response.status_code == 200
    assert response.headers["cache-control"] == "public, max-age=60"
    [jwk] = response.json()["keys"]
    assert {k: jwk[k] for k in ("kty", "crv", "use", "alg")} == {
        "kty": "EC",
        "crv": "P-256",
        "use": "sig",
        "alg": "ES256",
    }
    key = jwt.PyJWKSet.from_dict(response.json())[_kid(token)]
    claims = jwt.decode(
        token,
        key.key,
        algorithms=["ES256"],
        audience=settings.audience,
        issuer=settings.issuer,
    )
    assert claims["sub"] == str(admin.user_id)
    # another key's signature does not verify with it
    forged = jwt.encode(
        claims,
        ec.generate_private_key(ec.SECP256R1()),
        algorithm="ES256",
        headers={"kid": _kid(token)},
    )
    with pytest.raises(jwt.InvalidSignatureError):
        jwt.decode(forged, key.key, algorithms=["ES256"], audience=settings.audience)


def test_the_first_start_creates_one_key_sealed_under_the_master_key(
    app: FastAPI, session_factory: sessionmaker[Session]
) -> None:
    [stored] = _stored(session_factory)
    assert (stored.generation, stored.source) == (1, "generated")
    assert stored.kid == app.state.token_keys.kid
    assert stored.sealed_private_key is not None
    assert b"PRIVATE KEY" not in stored.sealed_private_key
    with session_factory() as session:
        [data_key] = session.scalars(select(DataKey)).all()
    assert data_key.purpose == signing_keys.KEY_PURPOSE


def test_processes_starting_together_make_one_first_key(
    app: FastAPI, session_factory: sessionmaker[Session]
) -> None:
    with session_factory.begin() as session:
        for row in session.scalars(select(TokenSigningKey)):
            session.delete(row)
    starters = 4
    barrier = threading.Barrier(starters)
    failures: list[BaseException] = []

    def start() -> None:
        barrier.wait()
        try:
            signing_keys.ensure_signing_key(
                session_factory, app.state.cipher, app.state.settings
            )
        except BaseException as exc:
            failures.append(exc)

    threads = [threading.Thread(target=start) for _ in range(starters)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert failures == []
    assert [row.generation for row in _stored(session_factory)] == [1]


def test_an_older_release_key_file_is_imported_and_its_tokens_keep_verifying(
    settings: Settings,
) -> None:
    legacy = ec.generate_private_key(ec.SECP256R1())
    settings.data_dir.mkdir(parents=True)
    (settings.data_dir / "jwt-signing-key.pem").write_bytes(_pem(legacy))
    app = create_app(settings)
    try:
        [stored] = _stored(app.state.sessionmaker)
        assert (stored.kid, stored.source) == (
            key_id(legacy.public_key()),
            "jwt-signing-key.pem",
        )
        # a token an older release signed before the upgrade
        now = int(utcnow().timestamp())
        old_token = jwt.encode(
            {
                "iss": settings.issuer,
                "aud": settings.audience,
                "sub": "00000000-0000-0000-0000-000000000001",
                "iat": now,
                "exp": now + 600,
                "jti": "j" * 32,
                "kind": "user",
            },
            legacy,
            algorithm="ES256",
            headers={"kid": key_id(legacy.public_key())},
        )
        with TestClient(app) as client:
            body = assert_problem(
                client.get(ME, headers=bearer(old_token)), 401, "invalid_token"
            )
        # the signature verified: refused only because no such user exists
        assert "no longer exists" in body["detail"]
    finally:
        app.state.engine.dispose()


def test_the_key_in_the_setting_is_imported_once_and_a_rotation_stays(
    settings: Settings,
) -> None:
    configured = ec.generate_private_key(ec.SECP256R1())
    with_key = settings.model_copy(
        update={"jwt_private_key": SecretStr(_pem(configured).decode())}
    )
    first = create_app(with_key)
    try:
        assert first.state.token_keys.kid == key_id(configured.public_key())
        rotation = _rotate(first)
    finally:
        first.state.engine.dispose()
    restarted = create_app(with_key)  # the variable is still set
    try:
        assert restarted.state.token_keys.kid == rotation.kid
        sources = [row.source for row in _stored(restarted.state.sessionmaker)]
        assert sources == ["SIGNVAULT_JWT_PRIVATE_KEY", "rotated"]
    finally:
        restarted.state.engine.dispose()


def test_a_setting_that_is_not_an_ec_key_stops_serve_with_one_line(
    settings: Settings, database_url: str, tmp_path: Path
) -> None:
    result = run(
        signvault_env(
            settings.data_dir,
            database_url,
            SIGNVAULT_JWT_PRIVATE_KEY="-----BEGIN PRIVATE KEY-----\nnope\n-----END PRIVATE KEY-----\n",
        ),
        tmp_path,
        "serve",
        "--port",
        "1",
    )
    assert result.returncode == 2
    [line] = result.stderr.strip().splitlines()[-1:]
    assert line.startswith("signvault: invalid setting SIGNVAULT_JWT_PRIVATE_KEY:")


def test_rotation_signs_with_the_new_key_and_the_old_verifies_until_retired(
    app: FastAPI,
    client: TestClient,
    admin: Credentials,
    settings: Settings,
    database_url: str,
    session_factory: sessionmaker[Session],
    tmp_path: Path,
) -> None:
    old_token = login(client, admin)["access_token"]
    old_kid = _kid(old_token)

    result = run(
        signvault_env(settings.data_dir, database_url), tmp_path, "rotate-token-key"
    )

    assert result.returncode == 0, result.stderr
    old_row, new_row = _stored(session_factory)
    assert (old_row.kid, new_row.generation) == (old_kid, 2)
    assert f"token key {new_row.kid} signs new access tokens" in result.stderr
    # the running app signs with the new key at once (a fresh read: its copy is 0.5 s old at most)
    new_token = login(client, admin)["access_token"]
    assert _kid(new_token) in (new_row.kid, old_kid)
    app.state.token_keys._keys(fresh=True)
    assert _kid(login(client, admin)["access_token"]) == new_row.kid
    # both verify; the JWK set holds both, the signing key first
    for token in (old_token, new_token):
        assert client.get(ME, headers=bearer(token)).status_code == 200
    assert [k["kid"] for k in client.get(JWKS).json()["keys"]] == [
        new_row.kid,
        old_kid,
    ]
    # the old private key is destroyed; its public half verifies for the token lifetime + 5 s
    assert old_row.sealed_private_key is None
    assert old_row.superseded_at is not None
    assert old_row.retire_at is not None
    assert old_row.retire_at - old_row.superseded_at == timedelta(
        seconds=settings.access_token_ttl_seconds + 5
    )
    with session_factory() as session:
        purposes = session.scalars(select(DataKey.purpose)).all()
        assert purposes == [signing_keys.KEY_PURPOSE]  # the new key's only
        before = signing_keys.load_keyset(
            session, None, now=old_row.retire_at - timedelta(seconds=1)
        )
        after = signing_keys.load_keyset(session, None, now=old_row.retire_at)
    assert set(before.verifying) == {old_kid, new_row.kid}
    assert set(after.verifying) == {new_row.kid}
    [event] = audit_events(session_factory, "token_key.rotated")
    assert event.details is not None
    assert (event.details["kid"], event.details["previous_kid"]) == (
        new_row.kid,
        old_kid,
    )


def test_retire_previous_refuses_the_old_keys_tokens_at_once(
    app: FastAPI,
    client: TestClient,
    admin: Credentials,
    settings: Settings,
    database_url: str,
    tmp_path: Path,
) -> None:
    old_token = login(client, admin)["access_token"]
    assert client.get(ME, headers=bearer(old_token)).status_code == 200  # remembered

    result = run(
        signvault_env(settings.data_dir, database_url),
        tmp_path,
        "rotate-token-key",
        "--retire-previous",
    )

    assert result.returncode == 0, result.stderr
    assert "stopped verifying now" in result.stderr
    app.state.token_keys._keys(fresh=True)
    body = assert_problem(
        client.get(ME, headers=bearer(old_token)), 401, "invalid_token"
    )
    assert "unknown key" in body["detail"]
    assert len(client.get(JWKS).json()["keys"]) == 1


def test_without_the_master_key_tokens_are_not_signed_and_ready_says_why(
    app: FastAPI, settings: Settings, admin: Credentials
) -> None:
    (settings.data_dir / "master.key").unlink()
    restarted = create_app(settings)
    try:
        with TestClient(restarted) as other:
            refused = other.post(
                "/api/v1/auth/login",
                json={"username": admin.username, "password": admin.password},
            )
            assert_problem(refused, 503, "service_unavailable")
            body = assert_problem(other.get("/ready"), 503, "service_unavailable")
            assert "master key" in body["detail"]
            # verifying needs only the public keys
            assert len(other.get(JWKS).json()["keys"]) == 1
    finally:
        restarted.state.engine.dispose()


def test_a_cipher_under_another_master_key_cannot_rotate(
    app: FastAPI,
) -> None:
    stranger = EnvelopeCipher(MasterKey.generate())
    with (
        pytest.raises(MasterKeyError, match="wrapped by master key"),
        app.state.sessionmaker.begin() as session,
    ):
        signing_keys.rotate(session, stranger, app.state.settings)
    assert len(_stored(app.state.sessionmaker)) == 1
