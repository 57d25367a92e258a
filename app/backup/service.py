"""`signvault backup` and `signvault restore`: one tar archive, checked both ways.

The archive is an uncompressed tar file: one file to copy, move and checksum,
written and read as a stream (document content is PDF, which barely
compresses). It holds

    database/signvault.db | database/signvault.pgdump   the snapshot
    blobs/<document id>/<sha256>                         every blob it names
    master.key                                           only with --include-master-key
    manifest.json                                        last: what it holds, with SHA-256s

Consistency: the database is copied first (one snapshot), then exactly the
blobs that snapshot names are copied, each checked against its SHA-256 while
it streams. Blobs are immutable and content-addressed, so a blob written after
the snapshot belongs to a version the snapshot does not have, and is not
needed. A blob can vanish between the snapshot and its copy only when its
document was deleted or purged meanwhile (the sweeper removes only blobs no
version names): then the backup starts again, since the copy would name
content it does not hold; a blob missing while the live database still names
it means the blob store lost it, and the backup fails saying which.
"""

import hashlib
import io
import os
import tarfile
import tempfile
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util import CommandError
from sqlalchemy import select, tuple_
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

import app
from app.audit import service as audit_service
from app.backup import database
from app.backup.errors import BackupError
from app.backup.manifest import (
    BLOBS_PREFIX,
    DATABASE_MEMBERS,
    MANIFEST_MEMBER,
    MASTER_KEY_MEMBER,
    DatabasePart,
    Manifest,
    NamedBlob,
)
from app.core import crypto
from app.core.blobstores import blob_store_for
from app.core.config import Settings
from app.core.db import make_sessionmaker, unit_of_work
from app.core.migrations import alembic_config
from app.core.storage import BlobStore, BlobStream
from app.core.types import utcnow
from app.documents.models import Document, DocumentStatus, DocumentVersion

Note = Callable[[str], None]

_CHUNK = 1024 * 1024
# Documents deleted between the snapshot and the copy of their blobs make a backup
# start again; a store that keeps losing the race this often is not quiet enough.
_ATTEMPTS = 3


def blob_store(settings: Settings) -> BlobStore:
    """The store the settings name: the data dir's files, or S3."""
    return blob_store_for(settings)


# --- backup -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class BackupResult:
    archive: Path
    manifest: Manifest
    archive_bytes: int
    attempts: int


class _BlobsGone(Exception):
    def __init__(self, missing: list[NamedBlob]) -> None:
        self.missing = missing


def create_backup(
    engine: Engine,
    blobs: BlobStore,
    *,
    database_url: str,
    out: Path,
    master_key: crypto.MasterKey | None,
    note: Note,
) -> BackupResult:
    """Write the archive to `out` (never over an existing file); see the module's docstring.

    With `master_key`, the key is written into the archive too.

    Raises:
        BackupError: the database, a blob or the target cannot be read or written.
    """
    if out.exists():
        raise BackupError(f"{out} exists: name a new file for the archive")
    if not out.parent.is_dir():
        raise BackupError(
            f"{out.parent} is not a folder: name the archive in one that exists"
        )
    partial = out.with_name(out.name + ".partial")
    for attempt in range(1, _ATTEMPTS + 1):
        try:
            manifest = _write_archive(
                engine,
                blobs,
                database_url=database_url,
                partial=partial,
                master_key=master_key,
            )
        except _BlobsGone as gone:
            partial.unlink(missing_ok=True)
            documents = sorted({blob.namespace for blob in gone.missing})
            what = (
                f"{len(gone.missing)} blobs of {len(documents)} documents "
                f"({', '.join(documents[:3])}{', …' if len(documents) > 3 else ''}) "
                "were deleted with their documents after the database snapshot"
            )
            if attempt == _ATTEMPTS:
                raise BackupError(
                    f"{what}, in each of {_ATTEMPTS} attempts: run the backup at a quieter time"
                ) from None
            note(f"{what}: starting again from a new snapshot")
            continue
        except OSError as exc:  # the archive's filesystem is full or failing
            partial.unlink(missing_ok=True)
            raise BackupError(f"cannot write {out}: {exc}") from None
        except BaseException:
            partial.unlink(missing_ok=True)
            raise
        os.replace(partial, out)
        with unit_of_work(make_sessionmaker(engine)) as session:
            audit_service.record(
                session,
                actor=audit_service.SYSTEM,
                action="backup.created",
                resource_type="system",
                details={
                    "archive": out.name,
                    "database": manifest.database.kind,
                    "blobs": len(manifest.blobs),
                    "master_key_included": manifest.master_key_included,
                },
            )
        return BackupResult(out, manifest, out.stat().st_size, attempt)
    raise AssertionError("unreachable")


def _write_archive(
    engine: Engine,
    blobs: BlobStore,
    *,
    database_url: str,
    partial: Path,
    master_key: crypto.MasterKey | None,
) -> Manifest:
    with tempfile.TemporaryDirectory(
        prefix=".signvault-backup-", dir=partial.parent
    ) as work:
        snapshot = database.take_snapshot(database_url, Path(work))
        fd = os.open(partial, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with (
            os.fdopen(fd, "wb") as raw,
            tarfile.open(fileobj=raw, mode="w", format=tarfile.PAX_FORMAT) as archive,
        ):
            member = DATABASE_MEMBERS[snapshot.kind]
            archive.add(snapshot.file, arcname=member, recursive=False)
            db_sha256 = _sha256_of_file(snapshot.file)
            db_size = snapshot.file.stat().st_size
            snapshot.file.unlink()  # the archive has it: not twice on disk
            copied = _copy_blobs(archive, blobs, snapshot.blobs)
            missing = [blob for blob in snapshot.blobs if blob not in copied]
            if missing:
                _raise_missing(engine, missing)
            if master_key is not None:
                _add_bytes(
                    archive, MASTER_KEY_MEMBER, (master_key.to_base64() + "\n").encode()
                )
            manifest = Manifest(
                created_at=utcnow().isoformat().replace("+00:00", "Z"),
                signvault_version=app.__version__,
                database=DatabasePart(
                    kind=snapshot.kind,
                    member=member,
                    sha256=db_sha256,
                    size=db_size,
                    alembic_revision=snapshot.alembic_revision,
                    tool=snapshot.tool,
                    server_version=snapshot.server_version,
                ),
                table_counts=snapshot.table_counts,
                master_key_ids=snapshot.master_key_ids,
                master_key_included=master_key is not None,
                blobs=snapshot.blobs,
            )
            _add_bytes(archive, MANIFEST_MEMBER, manifest.to_json())
            raw.flush()
            os.fsync(raw.fileno())
    return manifest


def _copy_blobs(
    archive: tarfile.TarFile, blobs: BlobStore, named: list[NamedBlob]
) -> set[NamedBlob]:
    """Stream each named blob into the archive, checking its SHA-256 and size; the copied ones.

    Raises:
        BackupError: a blob's content is not what its name says (the store damaged it).
    """
    copied = set()
    for blob in named:
        if not blobs.exists(blob.namespace, blob.sha256):
            continue
        try:
            stream = blobs.open(blob.namespace, blob.sha256)
        except FileNotFoundError:
            continue
        with stream:
            reader = _Checked(stream)
            info = tarfile.TarInfo(blob.member)
            info.size, info.mode = blob.size, 0o600
            try:
                archive.addfile(info, reader)
            except OSError as exc:  # shorter than its recorded size
                raise BackupError(
                    f"the blob {blob.sha256} of document {blob.namespace} is damaged in the blob store: {exc}"
                ) from None
            if reader.sha256() != blob.sha256 or stream.read(1):
                raise BackupError(
                    f"the blob {blob.sha256} of document {blob.namespace} is damaged in the blob store: "
                    "its content does not match its SHA-256 and size; restore that document from an older backup"
                )
        copied.add(blob)
    return copied


def _raise_missing(engine: Engine, missing: list[NamedBlob]) -> None:
    """Tell a document deleted after the snapshot from a blob the store lost."""
    with Session(engine) as session:
        still_named = {
            (str(row.document_id), row.sha256)
            for row in session.execute(
                select(DocumentVersion.document_id, DocumentVersion.sha256)
                .join(Document, Document.id == DocumentVersion.document_id)
                .where(
                    Document.status != DocumentStatus.PURGED,
                    tuple_(DocumentVersion.document_id, DocumentVersion.sha256).in_(
                        [(uuid.UUID(b.namespace), b.sha256) for b in missing]
                    ),
                )
            )
        }
    lost = [blob for blob in missing if (blob.namespace, blob.sha256) in still_named]
    if lost:
        raise BackupError(
            f"the blob store has lost {len(lost)} blobs the database names "
            f"(first: {lost[0].sha256} of document {lost[0].namespace}): "
            "the blob store is damaged; restore those documents from an older backup"
        )
    raise _BlobsGone(missing)


class _Checked:
    """A reader that hashes what passes through it."""

    def __init__(self, stream: IO[bytes] | BlobStream) -> None:
        self._stream = stream
        self._digest = hashlib.sha256()

    def read(self, size: int = -1) -> bytes:
        chunk = self._stream.read(size)
        self._digest.update(chunk)
        return chunk

    def sha256(self) -> str:
        return self._digest.hexdigest()


def _add_bytes(archive: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size, info.mode = len(data), 0o600
    archive.addfile(info, io.BytesIO(data))


def _sha256_of_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


# --- restore ------------------------------------------------------------------


@contextmanager
def open_archive(path: Path) -> Iterator[tuple[tarfile.TarFile, Manifest]]:
    """The archive and its manifest, once every member matched the manifest's SHA-256.

    Nothing is written before this check passes: an altered archive is refused whole.

    Raises:
        BackupError: not a readable archive, or a member is missing, extra or altered.
    """
    try:
        archive = tarfile.open(path, mode="r:")  # noqa: SIM115 (closed by the `with` below)
    except (OSError, tarfile.TarError) as exc:
        raise BackupError(
            f"{path} is not a readable SignVault archive: {exc}"
        ) from None
    with archive:
        try:
            manifest = Manifest.from_json(_read_member(archive, MANIFEST_MEMBER))
            _check_members(archive, manifest)
        except (OSError, tarfile.TarError) as exc:
            raise BackupError(f"{path} cannot be read to its end: {exc}") from None
        yield archive, manifest


def _read_member(archive: tarfile.TarFile, name: str) -> bytes:
    try:
        handle = archive.extractfile(name)
    except KeyError:
        handle = None
    if handle is None:
        raise BackupError(
            f"the archive has no {name}: it is not a SignVault backup, or it was cut short"
        )
    with handle:
        return handle.read()


def _check_members(archive: tarfile.TarFile, manifest: Manifest) -> None:
    expected = {blob.member: blob.sha256 for blob in manifest.blobs}
    expected[manifest.database.member] = manifest.database.sha256
    seen: set[str] = set()
    for member in archive:
        name = member.name
        if name == MANIFEST_MEMBER or (
            name == MASTER_KEY_MEMBER and manifest.master_key_included
        ):
            continue
        if name not in expected or name in seen or not member.isfile():
            raise BackupError(
                f"the archive holds an unexpected member {name!r}: it was altered"
            )
        seen.add(name)
        digest = hashlib.sha256()
        with archive.extractfile(member) or io.BytesIO() as handle:
            while chunk := handle.read(_CHUNK):
                digest.update(chunk)
        if digest.hexdigest() != expected[name]:
            raise BackupError(
                f"the archive's {name} does not match its SHA-256 in the manifest: "
                "the archive is damaged or was altered; nothing was restored"
            )
    absent = expected.keys() - seen
    if absent:
        raise BackupError(
            f"the archive lacks {len(absent)} members its manifest lists (first: {min(absent)}): "
            "it was cut short or altered; nothing was restored"
        )


def choose_master_key(
    archive: tarfile.TarFile,
    manifest: Manifest,
    *,
    configured: crypto.MasterKey | None,
    configured_from: str,
) -> tuple[crypto.MasterKey | None, bool]:
    """The master key the restored data will use, and whether the archive's must be written.

    Checked before anything is restored: the configured key (SIGNVAULT_MASTER_KEY
    or the key file), else the archive's, must be the one the secrets are sealed under.

    Raises:
        BackupError: no key, or not the one the snapshot's data keys are wrapped by.
    """
    archived = (
        crypto.MasterKey.from_base64(_read_member(archive, MASTER_KEY_MEMBER).decode())
        if manifest.master_key_included
        else None
    )
    if configured is not None and archived is not None and configured.id != archived.id:
        raise BackupError(
            f"the archive holds master key {archived.id}, but {configured_from} holds {configured.id}: "
            "unset the one that does not belong to this backup"
        )
    chosen = configured or archived
    wanted = set(manifest.master_key_ids)
    if wanted and chosen is None:
        raise BackupError(
            f"the archive's secrets are sealed under master key {', '.join(sorted(wanted))}, which it does not hold: "
            f"provide the key kept apart from it ({configured_from})"
        )
    if chosen is not None and wanted - {chosen.id}:
        raise BackupError(
            f"the archive's secrets are sealed under master key {', '.join(sorted(wanted))}, "
            f"but {configured_from if configured else 'the archive'} holds {chosen.id}: provide the right key"
        )
    return chosen, configured is None and archived is not None


def check_compatible(manifest: Manifest, database_url: str) -> None:
    """Raises: BackupError: another kind of database, no pg_restore, or a schema from a newer SignVault."""
    database.check_kind(database_url, manifest.database.kind)
    if manifest.database.kind == "postgresql":
        database.find_pg_tool("pg_restore", at_least=0)
    try:
        known = ScriptDirectory.from_config(alembic_config()).get_revision(
            manifest.database.alembic_revision
        )
    except CommandError:
        known = None
    if known is None:
        raise BackupError(
            f"the archive was made by SignVault {manifest.signvault_version} at schema revision "
            f"{manifest.database.alembic_revision}, which this version ({app.__version__}) does not know: "
            "restore with that version or a newer one"
        )


def check_target(
    database_url: str,
    blobs: BlobStore,
    key_file: Path,
    *,
    writes_key: bool,
) -> None:
    """Raises: BackupError: the database, the blob store or the key file is not fresh."""
    database.check_empty_target(database_url)
    if next(iter(blobs.blob_files()), None) is not None:
        raise BackupError(
            "the blob store holds blobs already: restore into a fresh data dir and blob store"
        )
    if writes_key and key_file.exists():
        raise BackupError(f"{key_file} exists: restore into a fresh data dir")


def restore_archive(
    archive: tarfile.TarFile,
    manifest: Manifest,
    *,
    database_url: str,
    blobs: BlobStore,
    key_file: Path,
    write_key: bool,
    note: Note,
) -> None:
    """Put the database, the blobs and (with `write_key`) the master key in place, in one pass.

    Raises:
        BackupError: the database cannot be restored, or a blob cannot be written
            or is not what its name says; the target then holds part of the archive.
    """
    try:
        with tempfile.TemporaryDirectory(prefix=".signvault-restore-") as work:
            for member in archive:
                handle = archive.extractfile(member) if member.isfile() else None
                if handle is not None:
                    with handle:
                        _restore_member(
                            member, handle, manifest, database_url, blobs, Path(work)
                        )
                        if member.name == MASTER_KEY_MEMBER and write_key:
                            crypto.write_master_key_file(
                                key_file,
                                crypto.MasterKey.from_base64(handle.read().decode()),
                            )
                            note(f"master key written to {key_file}")
                if member.name == manifest.database.member:
                    note(
                        f"database restored ({manifest.database.kind}, "
                        f"revision {manifest.database.alembic_revision})"
                    )
    except (BackupError, OSError) as exc:
        raise BackupError(
            "restore stopped part-way, the target holds part of the archive "
            f"(empty it before trying again): {exc}"
        ) from None


def _restore_member(
    member: tarfile.TarInfo,
    handle: IO[bytes],
    manifest: Manifest,
    database_url: str,
    blobs: BlobStore,
    work: Path,
) -> None:
    if member.name == manifest.database.member:
        database.restore_database(database_url, manifest.database.kind, handle, work)
    elif member.name.startswith(BLOBS_PREFIX):
        named = NamedBlob.from_member(member.name, member.size)
        stored = blobs.put_file(named.namespace, handle)
        if stored.sha256 != named.sha256:  # checked before: the file changed since
            raise BackupError(
                f"the archive's {member.name} changed while it was restored"
            )


@dataclass(frozen=True, slots=True)
class RestoreReport:
    tables: int
    rows: int
    data_keys_opened: int
    audit: audit_service.ChainReport
    documents: int
    versions_checked: int
    bytes_checked: int


def verify_restored(
    factory: sessionmaker[Session],
    blobs: BlobStore,
    manifest: Manifest,
    master_key: crypto.MasterKey | None,
) -> RestoreReport:
    """Check the restored state, then record the restore in its audit log.

    The master key opens every data key, the rows are those of the snapshot,
    the audit chain is intact, and every kept document version's content
    matches its SHA-256.

    Raises:
        BackupError: naming the first check that failed.
    """
    with factory() as session:
        opened = _open_data_keys(session, master_key)
        counts = database.table_counts(session.connection())
        if manifest.database.alembic_revision == _current_revision(session):
            differ = {
                t: (n, counts.get(t))
                for t, n in manifest.table_counts.items()
                if counts.get(t) != n
            }
            if differ:
                table, (want, got) = sorted(differ.items())[0]
                raise BackupError(
                    f"the restored table {table} has {got} rows, the snapshot had {want}"
                )
        chain = audit_service.verify(session)
        if chain.broken is not None:
            raise BackupError(
                f"the restored audit chain is BROKEN at seq {chain.broken.seq}: {chain.broken.reason}"
            )
        named = database.named_blobs(session.connection())
    checked = 0
    for blob in named:
        checked += _check_blob(blobs, blob)
    with unit_of_work(factory) as session:
        audit_service.record(
            session,
            actor=audit_service.SYSTEM,
            action="backup.restored",
            resource_type="system",
            details={
                "archive_created_at": manifest.created_at,
                "signvault_version": manifest.signvault_version,
                "database": manifest.database.kind,
                "blobs": len(named),
                "audit_entries_checked": chain.checked,
            },
        )
    return RestoreReport(
        tables=len(counts),
        rows=sum(counts.values()),
        data_keys_opened=opened,
        audit=chain,
        documents=len({blob.namespace for blob in named}),
        versions_checked=len(named),
        bytes_checked=checked,
    )


def _open_data_keys(session: Session, master_key: crypto.MasterKey | None) -> int:
    """Unwrap every data key with the master key (a trial re-wrap, rolled back); how many."""
    problem = crypto.master_key_status(session, master_key)
    if problem:
        raise BackupError(f"the restored secrets cannot be opened: {problem}")
    if master_key is None:
        return 0  # nothing is sealed
    try:
        return crypto.rotate_master_key(session, old=master_key, new=master_key)
    except crypto.MasterKeyError as exc:
        raise BackupError(f"the restored secrets cannot be opened: {exc}") from None
    finally:
        session.rollback()


def _current_revision(session: Session) -> str | None:
    return MigrationContext.configure(session.connection()).get_current_revision()


def _check_blob(blobs: BlobStore, blob: NamedBlob) -> int:
    digest, size = hashlib.sha256(), 0
    try:
        with blobs.open(blob.namespace, blob.sha256) as handle:
            while chunk := handle.read(_CHUNK):
                digest.update(chunk)
                size += len(chunk)
    except FileNotFoundError:
        raise BackupError(
            f"the restored blob store lacks version {blob.sha256} of document {blob.namespace}"
        ) from None
    if digest.hexdigest() != blob.sha256 or size != blob.size:
        raise BackupError(
            f"the restored content of document {blob.namespace} does not match its SHA-256 {blob.sha256}"
        )
    return size
