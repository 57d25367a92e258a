"""Envelope encryption of stored secrets (private keys, TOTP seeds, SMTP passwords).

Each secret is sealed with AES-256-GCM under a data key of its own; each data
key is stored wrapped (AES-256-GCM) by the master key, with the master key's id.
Rotating the master key re-wraps data keys and never touches a ciphertext;
deleting a secret's data key destroys the secret for good.
"""

import base64
import binascii
import hashlib
import os
import threading
import uuid
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from sqlalchemy import LargeBinary, String, func, select, text
from sqlalchemy.orm import Mapped, Session, mapped_column

from app.core.config import Settings
from app.core.db import Base
from app.core.storage import make_private_dir
from app.core.types import utcnow

MASTER_KEY_FILE_NAME = "master.key"
# Beside the key file during a rotation: the new key is on disk before any data
# key is wrapped by it, and is promoted over the old file only after the commit.
PENDING_SUFFIX = ".new"
RETIRED_SUFFIX = ".retired-"
_FORMAT = b"SV1"
_NONCE = 12


class CryptoError(Exception):
    """A secret cannot be sealed or opened; the message says why, never the secret."""


class MasterKeyError(CryptoError):
    """The master key is missing, malformed, or not the one the data keys are wrapped by."""


class DataKey(Base):
    """A per-secret AES-256 key, stored only wrapped by the master key."""

    __tablename__ = "data_keys"

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    master_key_id: Mapped[str] = mapped_column(String(32), index=True)
    wrapped_key: Mapped[bytes] = mapped_column(LargeBinary)
    purpose: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    rewrapped_at: Mapped[datetime | None]


@dataclass(frozen=True, slots=True)
class MasterKey:
    key: bytes

    def __post_init__(self) -> None:
        if len(self.key) != 32:
            raise MasterKeyError(
                "the master key must be 32 bytes (base64 of 32 random bytes)"
            )

    @property
    def id(self) -> str:
        return hashlib.sha256(b"signvault-master-key-id" + self.key).hexdigest()[:32]

    @classmethod
    def from_base64(cls, text: str) -> "MasterKey":
        try:
            return cls(base64.b64decode(text.strip(), validate=True))
        except (binascii.Error, ValueError):
            raise MasterKeyError("the master key is not valid base64") from None

    @classmethod
    def generate(cls) -> "MasterKey":
        return cls(AESGCM.generate_key(bit_length=256))

    def to_base64(self) -> str:
        return base64.b64encode(self.key).decode()


def read_master_key_file(path: Path) -> MasterKey | None:
    if not path.exists():
        return None
    return MasterKey.from_base64(path.read_text())


def write_master_key_file(path: Path, master_key: MasterKey) -> None:
    """Create the key file with 0600 permissions; never replaces an existing one."""
    make_private_dir(path.parent)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(master_key.to_base64() + "\n")
        handle.flush()
        os.fsync(handle.fileno())


class EnvelopeCipher:
    """Seals and opens secrets under per-secret data keys wrapped by one master key.

    With a `key_file`, a process survives a rotation made by `signvault
    rotate-master-key` without a restart: meeting a data key wrapped by a master
    key it does not hold, it re-reads the key file (and the pending `.new` file)
    and switches to the key whose id matches. A key from SIGNVAULT_MASTER_KEY
    cannot be re-read: those processes need the new value and a restart.
    """

    def __init__(self, master_key: MasterKey, *, key_file: Path | None = None) -> None:
        self._lock = threading.Lock()
        self.key_file = key_file
        self._use(master_key)

    def _use(self, master_key: MasterKey) -> None:
        self.master_key = master_key
        self._wrapper = AESGCM(master_key.key)

    def reload(self, wanted_id: str) -> bool:
        """Switch to the key file's key if its id is `wanted_id`; True when it is now loaded."""
        if self.key_file is None:
            return False
        with self._lock:
            if self.master_key.id == wanted_id:
                return True
            for candidate in read_key_files(self.key_file):
                if candidate.id == wanted_id:
                    self._use(candidate)
                    return True
        return False

    def status(self, session: Session) -> str | None:
        """None when the loaded master key opens the stored data keys (after a reload if rotated)."""
        ids = _stored_master_ids(session) - {self.master_key.id}
        if len(ids) == 1:
            self.reload(next(iter(ids)))
        return master_key_status(session, self.master_key)

    def seal(self, session: Session, plaintext: bytes, *, purpose: str) -> bytes:
        """Encrypt under a new data key; returns the blob to store with the owning row.

        Raises:
            MasterKeyError: the stored data keys are wrapped by a master key this
                process cannot load (a rotation it cannot follow).
        """
        data_key = AESGCM.generate_key(bit_length=256)
        row = DataKey(
            id=uuid.uuid4(), master_key_id=self.master_key.id, purpose=purpose
        )
        row.wrapped_key = self._wrap(data_key, row.id)
        session.add(row)
        session.flush()
        # After the insert: a concurrent rotation has committed (PostgreSQL's
        # table lock made the insert wait) or will re-wrap this row too.
        other = session.scalar(
            select(DataKey.master_key_id)
            .where(DataKey.master_key_id != row.master_key_id)
            .limit(1)
        )
        if other is not None:
            if not self.reload(other):
                raise MasterKeyError(
                    f"stored secrets are wrapped by master key {other}, but {self.master_key.id} is loaded"
                )
            row.master_key_id = self.master_key.id
            row.wrapped_key = self._wrap(data_key, row.id)
        nonce = os.urandom(_NONCE)
        ciphertext = AESGCM(data_key).encrypt(nonce, plaintext, _aad(row.id, purpose))
        return _FORMAT + row.id.bytes + nonce + ciphertext

    def open(self, session: Session, blob: bytes, *, purpose: str) -> bytes:
        """Decrypt a sealed blob.

        Raises:
            MasterKeyError: the data key is wrapped by another master key, or its wrapping is damaged.
            CryptoError: the blob or its data key is missing, damaged or for another purpose.
        """
        key_id, nonce, ciphertext = _parse(blob)
        row = session.get(DataKey, key_id)
        if row is None:
            raise CryptoError(
                "the secret's data key no longer exists (it was destroyed)"
            )
        if row.master_key_id != self.master_key.id and not self.reload(
            row.master_key_id
        ):
            raise MasterKeyError(
                f"the secret is wrapped by master key {row.master_key_id}, but {self.master_key.id} is loaded"
            )
        data_key = self._unwrap(row)
        try:
            return AESGCM(data_key).decrypt(nonce, ciphertext, _aad(key_id, purpose))
        except InvalidTag:
            raise CryptoError(
                "the sealed secret is damaged or belongs to another purpose"
            ) from None

    def destroy(self, session: Session, blob: bytes) -> None:
        """Delete the secret's data key: the ciphertext can never be opened again."""
        destroy_sealed(session, blob)

    def _wrap(self, data_key: bytes, key_id: uuid.UUID) -> bytes:
        nonce = os.urandom(_NONCE)
        return nonce + self._wrapper.encrypt(nonce, data_key, key_id.bytes)

    def _unwrap(self, row: DataKey) -> bytes:
        try:
            return self._wrapper.decrypt(
                row.wrapped_key[:_NONCE], row.wrapped_key[_NONCE:], row.id.bytes
            )
        except InvalidTag:
            raise MasterKeyError(
                f"data key {row.id} does not open with the loaded master key (damaged or wrapped by another key)"
            ) from None


def destroy_sealed(session: Session, blob: bytes) -> None:
    """Delete a sealed secret's data key; needs no master key (it opens nothing)."""
    key_id, _nonce, _ciphertext = _parse(blob)
    row = session.get(DataKey, key_id)
    if row is not None:
        session.delete(row)


def rotate_master_key(session: Session, *, old: MasterKey, new: MasterKey) -> int:
    """Re-wrap every data key from `old` to `new` in the caller's transaction; returns how many.

    Raises:
        MasterKeyError: some data key is wrapped by neither key, or `old` cannot open one.
    """
    strangers = session.scalar(
        select(func.count())
        .select_from(DataKey)
        .where(DataKey.master_key_id.not_in([old.id, new.id]))
    )
    if strangers:
        raise MasterKeyError(
            f"{strangers} data keys are wrapped by a master key other than the current one"
        )
    if session.get_bind().dialect.name == "postgresql":
        # Sealing in other processes waits until the re-wrapped keys are committed.
        session.execute(text("LOCK TABLE data_keys IN SHARE ROW EXCLUSIVE MODE"))
    source, target = EnvelopeCipher(old), EnvelopeCipher(new)
    count = 0
    for row in session.scalars(
        select(DataKey).where(DataKey.master_key_id == old.id).with_for_update()
    ):
        row.wrapped_key = target._wrap(source._unwrap(row), row.id)
        row.master_key_id = new.id
        row.rewrapped_at = utcnow()
        count += 1
    session.flush()
    return count


def master_key_status(session: Session, master_key: MasterKey | None) -> str | None:
    """None when the loaded master key opens the stored data keys; otherwise why not."""
    ids = _stored_master_ids(session)
    if master_key is None:
        return "no master key is loaded (set SIGNVAULT_MASTER_KEY or restore the master.key file)"
    if ids - {master_key.id}:
        return f"stored secrets are wrapped by master key {', '.join(sorted(ids))}, but {master_key.id} is loaded"
    return None


def sealed_secrets(session: Session) -> dict[str, int]:
    """How many data keys each master key wraps, by master key id."""
    rows = session.execute(
        select(DataKey.master_key_id, func.count()).group_by(DataKey.master_key_id)
    )
    return dict(rows.tuples().all())


def _stored_master_ids(session: Session) -> set[str]:
    return set(session.scalars(select(DataKey.master_key_id).distinct()))


def pending_key_file(key_file: Path) -> Path:
    return key_file.with_name(key_file.name + PENDING_SUFFIX)


def read_key_files(key_file: Path) -> list[MasterKey]:
    """The key in the key file, then the one pending beside it (a rotation in progress)."""
    keys = []
    for path in (key_file, pending_key_file(key_file)):
        try:
            found = read_master_key_file(path)
        except (MasterKeyError, OSError):
            continue
        if found is not None:
            keys.append(found)
    return keys


def stage_key_file(key_file: Path, master_key: MasterKey) -> Path:
    """Write the new key beside the current one (0600, fsynced) before it wraps anything.

    Raises:
        FileExistsError: a pending key file exists (a rotation in progress or interrupted).
    """
    pending = pending_key_file(key_file)
    write_master_key_file(pending, master_key)
    _fsync_dir(key_file.parent)
    return pending


def promote_key_file(key_file: Path) -> Path | None:
    """Make the pending key the key file; the old one stays as a retired file.

    At every instant a file holds the key that wraps the data: the old key is
    hard-linked to its retired name (time and key id) first, then the pending
    file atomically replaces the key file. Returns the retired file, if any.
    """
    pending = pending_key_file(key_file)
    retired = None
    old = read_master_key_file(key_file)
    if old is not None:
        tag = f"{utcnow():%Y%m%dT%H%M%SZ}-{old.id[:8]}"
        retired = key_file.with_name(key_file.name + RETIRED_SUFFIX + tag)
        if not retired.exists():
            os.link(key_file, retired)
    os.replace(pending, key_file)
    _fsync_dir(key_file.parent)
    return retired


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _aad(key_id: uuid.UUID, purpose: str) -> bytes:
    return _FORMAT + key_id.bytes + purpose.encode()


def _parse(blob: bytes) -> tuple[uuid.UUID, bytes, bytes]:
    if len(blob) < len(_FORMAT) + 16 + _NONCE + 16 or not blob.startswith(_FORMAT):
        raise CryptoError("not a sealed secret")
    body = blob[len(_FORMAT) :]
    return uuid.UUID(bytes=body[:16]), body[16 : 16 + _NONCE], body[16 + _NONCE :]


def configured_master_key(settings: Settings) -> MasterKey | None:
    """The key SIGNVAULT_MASTER_KEY or SIGNVAULT_MASTER_KEY_FILE gives; None when neither is set.

    Raises:
        MasterKeyError: both are set, or the one set is unusable; the message names it.
    """
    value, path = settings.master_key, settings.master_key_file
    if value is not None and path is not None:
        raise MasterKeyError(
            "SIGNVAULT_MASTER_KEY and SIGNVAULT_MASTER_KEY_FILE are both set; set one"
        )
    if value is not None:
        try:
            return MasterKey.from_base64(value.get_secret_value())
        except MasterKeyError as exc:
            raise MasterKeyError(f"SIGNVAULT_MASTER_KEY: {exc}") from None
    if path is None:
        return None
    where = f"the master key file {path} (SIGNVAULT_MASTER_KEY_FILE)"
    try:
        text = path.read_text(encoding="ascii")
    except FileNotFoundError:
        raise MasterKeyError(f"{where} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not base64 text"
        raise MasterKeyError(f"cannot read {where}: {reason}") from None
    try:
        return MasterKey.from_base64(text)
    except MasterKeyError as exc:
        raise MasterKeyError(f"{where} is malformed: {exc}") from None


def data_dir_key_file(settings: Settings) -> Path:
    return settings.data_dir / MASTER_KEY_FILE_NAME


def rereadable_key_file(settings: Settings) -> Path | None:
    """The file a process re-reads to follow a rotation: the secret file or the data dir's; None for the variable."""
    if settings.master_key is not None:
        return None
    return settings.master_key_file or data_dir_key_file(settings)


def load_master_key(
    configured: MasterKey | None, key_file: Path, session: Session
) -> MasterKey | None:
    """The configured master key, else the key file, else a new key file if nothing is sealed yet.

    Never generates a key while sealed secrets exist: a lost key file must be
    restored, not silently replaced.

    Raises:
        MasterKeyError: the key file is malformed.
    """
    if configured is not None:
        return configured
    existing = read_master_key_file(key_file)
    if existing is not None:
        stored = _stored_master_ids(session)
        if stored and existing.id not in stored:
            # Interrupted rotation: committed, but the new key not yet promoted.
            for candidate in read_key_files(key_file):
                if candidate.id in stored:
                    return candidate
        return existing
    if session.scalar(select(func.count()).select_from(DataKey)):
        return None
    generated = MasterKey.generate()
    try:
        write_master_key_file(key_file, generated)
    except FileExistsError:  # another worker won the race
        return read_master_key_file(key_file)
    return generated
