"""Nothing in clear at rest: the database holds neither key, password nor PKCS#12 file."""

import base64
import shutil
import subprocess
import uuid
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import make_url
from sqlalchemy.orm import Session, sessionmaker

from app.certificates.models import SigningCertificate
from tests.certificates.conftest import import_p12
from tests.certificates.pki import Issued, make_pkcs12, make_signer

PASSWORD = "Unmistakable-P12-Passw0rd-4711"


def database_bytes(app: FastAPI, database_url: str) -> bytes:
    """The raw SQLite file (with its WAL), or a plain pg_dump of the PostgreSQL database."""
    app.state.engine.dispose()
    url = make_url(database_url)
    if url.get_backend_name() == "sqlite":
        assert url.database is not None
        path = Path(url.database)
        return b"".join(
            candidate.read_bytes()
            for candidate in sorted(path.parent.glob(path.name + "*"))
            if candidate.is_file()  # not the wake-socket folder beside it
        )
    pg_dump = shutil.which("pg_dump")
    if pg_dump is None:
        pytest.skip("pg_dump is not installed")
    result = subprocess.run(  # noqa: S603
        [
            pg_dump,
            "--host",
            url.host or "127.0.0.1",
            "--port",
            str(url.port or 5432),
            "--username",
            url.username or "postgres",
            "--no-password",
            url.database or "",
        ],
        capture_output=True,
        check=True,
        timeout=60,
    )
    return result.stdout


def secrets_of(issued: Issued, p12: bytes) -> dict[str, bytes]:
    key = issued.key
    assert isinstance(key, rsa.RSAPrivateKey)
    pkcs8 = issued.key_pkcs8_der()
    traditional = key.private_bytes(
        serialization.Encoding.DER,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )
    pem_body = b"".join(issued.key_pem().splitlines()[1:-1])
    private_exponent = key.private_numbers().d.to_bytes(256, "big")
    found = {
        "pkcs8 der": pkcs8,
        "traditional der": traditional,
        "pem": issued.key_pem(),
        "pem body": pem_body,
        "private exponent": private_exponent,
        "password": PASSWORD.encode(),
        "p12": p12,
        "p12 base64": base64.b64encode(p12),
    }
    # bytea appears as hex in a dump
    found.update(
        {f"{name} hex": value.hex().encode() for name, value in list(found.items())}
    )
    return found


def test_database_holds_no_key_password_or_pkcs12_in_clear(
    app: FastAPI,
    client: TestClient,
    admin_headers: dict[str, str],
    ca: Issued,
    session_factory: sessionmaker[Session],
    database_url: str,
) -> None:
    issued = make_signer(ca, key_type="rsa2048")
    p12 = make_pkcs12(issued, PASSWORD, chain=(ca,))
    created = import_p12(client, admin_headers, p12, PASSWORD)
    assert created.status_code == 201, created.text
    with session_factory() as session:
        row = session.get(SigningCertificate, uuid.UUID(created.json()["id"]))
        assert row is not None
        assert row.sealed_private_key is not None
        sealed = row.sealed_private_key
    raw = database_bytes(app, database_url)
    # The scan sees the database's binary columns: the sealed key is there.
    assert sealed in raw or sealed.hex().encode() in raw
    assert (
        issued.certificate_der() in raw
        or issued.certificate_der().hex().encode() in raw
    )
    leaked = [name for name, value in secrets_of(issued, p12).items() if value in raw]
    assert leaked == []
