"""Token signing keys in the database, so every process and host signs and verifies alike.

The newest generation signs; `signvault rotate-token-key` adds one. Each process
keeps a copy (`KeyRing`) and looks for a newer generation at most every
`POLL_SECONDS` (one indexed read), or at once when a token names a key it does
not know: a rotation on one host is followed by every other within a second.
"""

import threading
import time
from contextlib import suppress
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from sqlalchemy import func, or_, select
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.orm import Session, sessionmaker

from app.audit import service as audit_service
from app.audit.service import SYSTEM
from app.auth.models import TokenSigningKey
from app.auth.tokens import (
    KeySet,
    TokenKeys,
    VerifyingKey,
    key_id,
    load_private_key,
)
from app.core.config import Settings
from app.core.crypto import CryptoError, EnvelopeCipher, destroy_sealed
from app.core.types import utcnow
from app.settings import service as settings_service

KEY_PURPOSE = "token-signing-key"
# Where releases before issue #18 kept the key; imported as the first key.
LEGACY_KEY_FILE_NAME = "jwt-signing-key.pem"
POLL_SECONDS = 0.5
# A superseded key verifies this much longer than the access-token lifetime (clock skew).
RETIRE_LEEWAY = timedelta(seconds=5)


class KeySourceKind(StrEnum):
    GENERATED = "generated"
    LEGACY_FILE = LEGACY_KEY_FILE_NAME
    SETTING = "SIGNVAULT_JWT_PRIVATE_KEY"
    ROTATED = "rotated"


@dataclass(frozen=True, slots=True)
class Rotation:
    kid: str
    previous_kid: str | None
    previous_retire_at: datetime | None


def ensure_signing_key(
    factory: sessionmaker[Session], cipher: EnvelopeCipher, settings: Settings
) -> None:
    """At start: a first key when there is none, and SIGNVAULT_JWT_PRIVATE_KEY's when set and new.

    The first key is the legacy `<data_dir>/jwt-signing-key.pem` if it exists
    (tokens it signed keep verifying), else a new one. Processes and hosts that
    start together race safely: the loser of the unique generation looks again.

    Raises:
        ValueError: SIGNVAULT_JWT_PRIVATE_KEY (or the legacy file) is not an EC P-256 PEM key.
    """
    configured = (
        load_private_key(settings.jwt_private_key.get_secret_value().encode())
        if settings.jwt_private_key is not None
        else None
    )
    for _attempt in range(3):
        try:
            with factory.begin() as session:
                _ensure(session, cipher, settings, configured)
            return
        except IntegrityError:
            continue  # another process added a key first: look again


def _ensure(
    session: Session,
    cipher: EnvelopeCipher,
    settings: Settings,
    configured: ec.EllipticCurvePrivateKey | None,
) -> None:
    # Read without a lock: a process that raced ahead makes this one's insert
    # collide on the generation, and the caller looks again.
    newest = _newest(session)
    if configured is not None:
        known = set(session.scalars(select(TokenSigningKey.kid)))
        # Imported once: a later rotation replaces it for good, even if the variable stays.
        if key_id(configured.public_key()) not in known:
            add_key(
                session,
                cipher,
                settings,
                configured,
                replacing=newest,
                source=KeySourceKind.SETTING,
            )
        return
    if newest is not None:
        return
    legacy = settings.data_dir / LEGACY_KEY_FILE_NAME
    first = (
        (load_private_key(legacy.read_bytes()), KeySourceKind.LEGACY_FILE)
        if legacy.exists()
        else (ec.generate_private_key(ec.SECP256R1()), KeySourceKind.GENERATED)
    )
    add_key(session, cipher, settings, first[0], replacing=None, source=first[1])


def _newest(session: Session, *, lock: bool = False) -> TokenSigningKey | None:
    statement = (
        select(TokenSigningKey).order_by(TokenSigningKey.generation.desc()).limit(1)
    )
    return session.scalars(statement.with_for_update() if lock else statement).first()


def rotate(
    session: Session,
    cipher: EnvelopeCipher,
    settings: Settings,
    *,
    retire_previous: bool = False,
    now: datetime | None = None,
) -> Rotation:
    """A new signing key for every host; the previous one verifies until its tokens expired.

    `retire_previous`: the previous key stops verifying at once (it leaked), and
    every token it signed is refused.

    Raises:
        IntegrityError (at flush): another rotation committed the same generation first.
    """
    return add_key(
        session,
        cipher,
        settings,
        ec.generate_private_key(ec.SECP256R1()),
        replacing=_newest(session, lock=True),
        source=KeySourceKind.ROTATED,
        retire_previous=retire_previous,
        now=now,
    )


def add_key(
    session: Session,
    cipher: EnvelopeCipher,
    settings: Settings,
    key: ec.EllipticCurvePrivateKey,
    *,
    replacing: TokenSigningKey | None,
    source: KeySourceKind,
    retire_previous: bool = False,
    now: datetime | None = None,
) -> Rotation:
    """Make `key` the signing key, the generation after `replacing`; audited when it replaces one.

    The replaced key's private half is destroyed now (it never signs again);
    its public half verifies until the longest access-token lifetime in force
    (server setting or `security` section) has passed, plus a leeway.

    Raises:
        IntegrityError (at flush): another process stored that generation first.
        MasterKeyError: the cipher's master key is not the database's.
    """
    now = now or utcnow()
    private_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    # Sealed first: a cipher under another master key fails before anything changes.
    sealed = cipher.seal(session, private_pem, purpose=KEY_PURPOSE)
    if replacing is not None:
        section_ttl = settings_service.security(session).access_token_ttl_seconds
        lifetime = timedelta(
            seconds=max(settings.access_token_ttl_seconds, section_ttl or 0)
        )
        replacing.superseded_at = now
        replacing.retire_at = now if retire_previous else now + lifetime + RETIRE_LEEWAY
        if replacing.sealed_private_key is not None:
            destroy_sealed(session, replacing.sealed_private_key)
            replacing.sealed_private_key = None
    row = TokenSigningKey(
        kid=key_id(key.public_key()),
        generation=replacing.generation + 1 if replacing is not None else 1,
        public_key_pem=key.public_key()
        .public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        .decode(),
        sealed_private_key=sealed,
        source=source.value,
        created_at=now,
    )
    session.add(row)
    session.flush()
    rotation = Rotation(
        row.kid,
        replacing.kid if replacing is not None else None,
        replacing.retire_at if replacing is not None else None,
    )
    if replacing is not None:
        audit_service.record(
            session,
            actor=SYSTEM,
            action="token_key.rotated",
            resource_type="token_signing_key",
            resource_id=row.kid,
            details={
                "kid": row.kid,
                "generation": row.generation,
                "source": source.value,
                "previous_kid": replacing.kid,
                "previous_retire_at": replacing.retire_at.isoformat()
                if replacing.retire_at
                else None,
            },
        )
    return rotation


def latest_generation(session: Session) -> int | None:
    return session.scalar(select(func.max(TokenSigningKey.generation)))


def load_keyset(
    session: Session, cipher: EnvelopeCipher | None, *, now: datetime | None = None
) -> KeySet:
    """The keys that verify at `now`, and the newest one's private key opened to sign."""
    now = now or utcnow()
    rows = session.scalars(
        select(TokenSigningKey)
        .where(
            or_(TokenSigningKey.retire_at.is_(None), TokenSigningKey.retire_at > now)
        )
        .order_by(TokenSigningKey.generation.desc())
    ).all()
    verifying = {
        row.kid: VerifyingKey(_public_key(row.public_key_pem), row.retire_at)
        for row in rows
    }
    generation = latest_generation(session) or 0
    newest = rows[0] if rows and rows[0].generation == generation else None
    if newest is None or newest.sealed_private_key is None:
        return KeySet(generation, None, None, verifying)
    if cipher is None:
        return KeySet(
            generation,
            None,
            None,
            verifying,
            "the master key is not loaded (see /ready)",
        )
    try:
        pem = cipher.open(session, newest.sealed_private_key, purpose=KEY_PURPOSE)
    except CryptoError as exc:
        return KeySet(
            generation, None, None, verifying, f"its key cannot be opened: {exc}"
        )
    return KeySet(generation, newest.kid, load_private_key(pem), verifying)


def _public_key(pem: str) -> ec.EllipticCurvePublicKey:
    key = serialization.load_pem_public_key(pem.encode())
    if not isinstance(key, ec.EllipticCurvePublicKey):
        raise ValueError("a stored token key is not an EC public key")
    return key


class KeyRing:
    """This process's copy of the stored token keys (a `tokens.KeySource`).

    Looks for a new generation at most every `POLL_SECONDS`; a thread that finds
    another already looking uses the copy it has rather than wait.
    """

    def __init__(
        self,
        factory: sessionmaker[Session],
        *,
        cipher: EnvelopeCipher | None,
        settings: Settings,
    ) -> None:
        self._factory = factory
        self._cipher = cipher
        self._settings = settings
        self._keyset: KeySet | None = None
        self._checked_at = 0.0
        self._lock = threading.Lock()

    def __call__(self, *, fresh: bool = False) -> KeySet:
        keyset = self._keyset
        if keyset is not None and not fresh:
            due = time.monotonic() - self._checked_at >= POLL_SECONDS
            if not due or not self._lock.acquire(blocking=False):
                return keyset
        else:
            self._lock.acquire()
        try:
            return self._refresh()
        finally:
            self._lock.release()

    def _refresh(self) -> KeySet:
        with self._factory() as session:
            generation = latest_generation(session)
            if generation is None and self._cipher is not None:
                session.close()
                ensure_signing_key(self._factory, self._cipher, self._settings)
                generation = latest_generation(session)
            keyset = self._keyset
            # Without a signing key (its key could not be opened), try again each time.
            if (
                keyset is None
                or keyset.signing_key is None
                or generation != keyset.generation
            ):
                keyset = self._keyset = load_keyset(session, self._cipher)
        self._checked_at = time.monotonic()
        return keyset


def token_keys(
    factory: sessionmaker[Session], cipher: EnvelopeCipher | None, settings: Settings
) -> TokenKeys:
    """The app's token keys; the first key is made now if the database is ready.

    Raises:
        ValueError: SIGNVAULT_JWT_PRIVATE_KEY is not an EC P-256 private key.
    """
    if cipher is not None:
        # Not reachable or not migrated yet: the key is made at first use.
        with suppress(SQLAlchemyError):
            ensure_signing_key(factory, cipher, settings)
    return TokenKeys(
        KeyRing(factory, cipher=cipher, settings=settings),
        issuer=settings.issuer,
        audience=settings.audience,
        ttl_seconds=settings.access_token_ttl_seconds,
    )
