"""A test issuer key pair (generated here; the built-in issuer's private key is nowhere)."""

import base64
from collections.abc import Generator, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from types import SimpleNamespace
from typing import cast

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fastapi import FastAPI
from sqlalchemy.orm import Session, sessionmaker

from app.core.config import Settings
from app.core.db import get_session
from app.core.types import utcnow
from app.license.verifier import Limits, new_payload, sign_license


def public_key_text(key: Ed25519PrivateKey) -> str:
    raw = key.public_key().public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )
    return base64.b64encode(raw).decode()


@pytest.fixture(scope="session")
def issuer() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


@pytest.fixture
def settings(settings: Settings, issuer: Ed25519PrivateKey) -> Settings:
    return settings.model_copy(update={"license_public_key": public_key_text(issuer)})


@pytest.fixture
def sessions(app: FastAPI) -> sessionmaker[Session]:
    """The app's own session factory: its sessions carry the configured issuer key."""
    factory: sessionmaker[Session] = app.state.sessionmaker
    return factory


def make_license(
    issuer: Ed25519PrivateKey,
    *,
    valid_from: datetime | None = None,
    valid_until: datetime | None = None,
    features: tuple[str, ...] = ("batch", "ltv", "pkcs11"),
    licensee: str = "Acme Ltd",
    license_id: str | None = None,
    users: int | None = None,
    certificates: int | None = None,
    signatures_per_month: int | None = None,
    signatures_total: int | None = None,
) -> bytes:
    start = valid_from or utcnow() - timedelta(days=1)
    payload = new_payload(
        licensee=licensee,
        license_id=license_id,
        issued_at=start,
        valid_from=start,
        valid_until=valid_until or start + timedelta(days=366),
        limits=Limits(
            users=users,
            certificates=certificates,
            signatures_per_month=signatures_per_month,
            signatures_total=signatures_total,
        ),
        features=features,
    )
    return sign_license(payload, issuer).encode()


@contextmanager
def request_transaction(factory: sessionmaker[Session]) -> Iterator[Session]:
    """A transaction run the way a request runs it: isolated audit entries are written
    after it ends, even when it fails."""
    request = SimpleNamespace(
        app=SimpleNamespace(state=SimpleNamespace(sessionmaker=factory))
    )
    dependency = cast(Generator[Session], get_session(request))  # type: ignore[arg-type]
    session = next(dependency)
    try:
        yield session
    except Exception as exc:
        try:
            dependency.throw(exc)
        except type(exc):
            pass
        raise
    else:
        next(dependency, None)
