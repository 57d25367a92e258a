"""`vault.signer_for`: who may sign with what, the per-process signer cache, damaged secrets."""

import uuid
from collections.abc import Callable

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import select, update
from sqlalchemy.orm import Session, sessionmaker

from app.certificates.errors import KeyUnavailable
from app.certificates.models import SigningCertificate
from app.certificates.service import KEY_PURPOSE as VAULT_KEY_PURPOSE
from app.certificates.vault import Vault
from app.core.config import Settings
from app.core.crypto import DataKey
from app.core.errors import AppError
from app.core.security import PasswordHasher
from app.main import create_app
from tests.certificates.conftest import acting_as, import_signer, vault_of
from tests.certificates.pki import Issued, make_signer
from tests.certificates.test_router import (
    BASE,
    make_department,
    put_in_department,
    set_not_after,
)
from tests.factories import (
    Credentials,
    assert_problem,
    audit_events,
    login,
    make_user,
)


def verify(issued: Issued, signature: bytes, data: bytes) -> None:
    public_key = issued.certificate.public_key()
    if isinstance(public_key, rsa.RSAPublicKey):
        public_key.verify(signature, data, padding.PKCS1v15(), hashes.SHA256())
    else:
        assert isinstance(public_key, ec.EllipticCurvePublicKey)
        public_key.verify(signature, data, ec.ECDSA(hashes.SHA256()))


class World:
    """An imported certificate, a signer user, and a way to ask the vault as them."""

    def __init__(
        self,
        app: FastAPI,
        client: TestClient,
        admin_headers: dict[str, str],
        session_factory: sessionmaker[Session],
        hasher: PasswordHasher,
        ca: Issued,
        issued: Issued,
    ) -> None:
        self.app, self.client, self.admin_headers = app, client, admin_headers
        self.session_factory = session_factory
        self.issued = issued
        self.certificate = import_signer(client, admin_headers, issued, ca)
        self.id = uuid.UUID(self.certificate["id"])
        self.user = make_user(session_factory, hasher, username="signer")
        self.token = login(client, self.user)["access_token"]

    def post(self, path: str, json: object = None) -> None:
        response = self.client.post(
            f"{BASE}/{self.id}{path}", json=json, headers=self.admin_headers
        )
        assert response.status_code in (200, 201), response.text

    def assign_user(self, user: Credentials | None = None) -> None:
        self.post("/assignments", {"user_id": str((user or self.user).user_id)})

    def signer(self, vault: Vault | None = None) -> object:
        with acting_as(self.app, self.session_factory, self.token) as (session, who):
            return (vault or vault_of(self.app)).signer_for(session, who, self.id)

    def refusal(self) -> AppError:
        with pytest.raises(AppError) as refused:
            self.signer()
        return refused.value


@pytest.fixture
def world(
    app: FastAPI,
    client: TestClient,
    admin_headers: dict[str, str],
    session_factory: sessionmaker[Session],
    hasher: PasswordHasher,
    ca: Issued,
) -> World:
    return World(
        app,
        client,
        admin_headers,
        session_factory,
        hasher,
        ca,
        make_signer(ca, key_type="rsa2048"),
    )


def test_assigned_user_gets_a_signer_that_signs_with_the_imported_key(
    world: World,
) -> None:
    world.assign_user()
    signer = world.signer()
    signature = signer.sign_raw(b"to be signed", "sha256")  # type: ignore[attr-defined]
    verify(world.issued, signature, b"to be signed")


def test_department_member_gets_a_signer(
    world: World, session_factory: sessionmaker[Session]
) -> None:
    department = make_department(session_factory, "Finance")
    put_in_department(session_factory, world.user, department)
    world.post("/assignments", {"department_id": str(department)})
    assert world.signer() is not None


def test_unassigned_user_is_refused_as_for_a_missing_certificate(world: World) -> None:
    # The signer may not see the certificate: its existence is not confirmed.
    refusal = world.refusal()
    assert (refusal.status, refusal.code) == (404, "certificate_not_found")


def test_user_of_another_department_is_refused_as_for_a_missing_certificate(
    world: World, session_factory: sessionmaker[Session]
) -> None:
    mine = make_department(session_factory, "Mine")
    other = make_department(session_factory, "Other")
    put_in_department(session_factory, world.user, mine)
    world.post("/assignments", {"department_id": str(other)})
    refusal = world.refusal()
    assert (refusal.status, refusal.code) == (404, "certificate_not_found")


def test_vault_manager_not_assigned_is_told_why(
    world: World,
    session_factory: sessionmaker[Session],
    hasher: PasswordHasher,
) -> None:
    """A manager sees every certificate, so the refusal may say it is not theirs."""
    manager = make_user(
        session_factory,
        hasher,
        username="manager",
        roles=("signer", "certificate-manager"),
    )
    world.token = login(world.client, manager)["access_token"]
    refusal = world.refusal()
    assert (refusal.status, refusal.code) == (403, "certificate_not_assigned")
    mine = make_department(session_factory, "Mine")
    other = make_department(session_factory, "Other")
    put_in_department(session_factory, manager, mine)
    world.post("/assignments", {"department_id": str(other)})
    refusal = world.refusal()
    assert (refusal.status, refusal.code) == (403, "certificate_other_department")


@pytest.mark.parametrize(
    ("change", "status", "code"),
    [
        (lambda w: w.post("/disable"), 409, "certificate_disabled"),
        (lambda w: w.post("/revoke"), 409, "certificate_revoked"),
        (
            lambda w: set_not_after(w.session_factory, str(w.id), -0.01),
            422,
            "certificate_expired",
        ),
    ],
    ids=["disabled", "revoked", "expired"],
)
def test_unusable_certificate_is_refused_with_its_own_code(
    world: World, change: Callable[[World], None], status: int, code: str
) -> None:
    world.assign_user()
    assert world.signer() is not None
    change(world)
    refusal = world.refusal()
    assert (refusal.status, refusal.code) == (status, code)


def test_signer_is_cached_and_dropped_when_the_vault_version_moves(
    world: World,
) -> None:
    world.assign_user()
    vault = vault_of(world.app)
    first = world.signer()
    assert world.signer() is first
    assert vault.loads == 1
    world.post("/disable")
    world.post("/enable")
    assert world.signer() is not first
    assert vault.loads == 2


def test_another_process_drops_its_cached_signer_on_disable(
    world: World, settings: Settings
) -> None:
    world.assign_user()
    other_process = Vault(cipher=world.app.state.cipher, settings=settings)
    cached = world.signer(other_process)
    assert world.signer(other_process) is cached
    world.post("/disable")
    with pytest.raises(AppError, match="disabled"):
        world.signer(other_process)
    world.post("/enable")
    assert world.signer(other_process) is not cached


def test_zero_ttl_loads_the_key_every_time(world: World, settings: Settings) -> None:
    world.assign_user()
    no_cache = Vault(
        cipher=world.app.state.cipher,
        settings=settings.model_copy(update={"signer_cache_ttl_seconds": 0}),
    )
    world.signer(no_cache)
    world.signer(no_cache)
    assert no_cache.loads == 2


def test_key_use_is_recorded_with_the_fingerprint(world: World) -> None:
    from app.certificates import service as vault_service

    world.assign_user()
    with acting_as(world.app, world.session_factory, world.token) as (session, who):
        certificate = session.get(SigningCertificate, world.id)
        assert certificate is not None
        vault_service.record_key_use(
            session, who.actor, certificate=certificate, details={"document_id": "d1"}
        )
    [event] = audit_events(world.session_factory, "certificate.key_used")
    assert (
        event.details["fingerprint_sha256"] == world.certificate["fingerprint_sha256"]
    )
    assert event.actor_id == str(world.user.user_id)
    read = world.client.get(f"{BASE}/{world.id}", headers=world.admin_headers)
    assert read.json()["last_used_at"] is not None


def _tamper(
    session_factory: sessionmaker[Session], certificate_id: uuid.UUID, what: str
) -> None:
    with session_factory.begin() as session:
        row = session.get(SigningCertificate, certificate_id)
        assert row is not None
        assert row.sealed_private_key is not None
        if what == "ciphertext":
            blob = bytearray(row.sealed_private_key)
            blob[-5] ^= 0x01
            row.sealed_private_key = bytes(blob)
        else:
            key = session.scalars(
                select(DataKey).where(DataKey.purpose == VAULT_KEY_PURPOSE)
            ).one()
            wrapped = bytearray(key.wrapped_key)
            wrapped[20] ^= 0x01
            session.execute(
                update(DataKey)
                .where(DataKey.id == key.id)
                .values(wrapped_key=bytes(wrapped))
            )


@pytest.mark.parametrize("what", ["ciphertext", "wrapped_key"])
def test_tampered_secret_is_a_clear_error_not_a_crash(world: World, what: str) -> None:
    world.assign_user()
    _tamper(world.session_factory, world.id, what)
    refusal = world.refusal()
    assert isinstance(refusal, KeyUnavailable)
    assert refusal.status == 503
    assert "damaged" in refusal.detail


def test_missing_master_key_makes_signing_unavailable(
    world: World, settings: Settings
) -> None:
    world.assign_user()
    (settings.data_dir / "master.key").unlink()
    restarted = create_app(settings)
    try:
        assert restarted.state.cipher is None
        with pytest.raises(KeyUnavailable):
            world.signer(vault_of(restarted))
        with TestClient(restarted) as client:
            response = client.post(
                f"{BASE}/base64",
                json={"pkcs12_base64": "AAAA", "password": "x"},
                headers=world.admin_headers,
            )
        assert_problem(response, 503, "service_unavailable")
    finally:
        restarted.state.engine.dispose()
