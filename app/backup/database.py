"""Consistent copies of the database, and putting one back.

SQLite: the online backup API copies the pages of one read snapshot while
the server keeps running. PostgreSQL: `pg_dump` reads a snapshot this module
exports from a REPEATABLE READ transaction, and the same transaction lists the
blobs and counts the rows, so the manifest describes exactly what was dumped.
"""

import os
import re
import shutil
import sqlite3
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from alembic.runtime.migration import MigrationContext
from sqlalchemy import Connection, create_engine, func, inspect, make_url, select
from sqlalchemy.engine import URL
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.pool import NullPool

from app.backup.errors import BackupError
from app.backup.manifest import NamedBlob
from app.core import crypto
from app.core.db import Base
from app.core.migrations import head_revision
from app.documents.models import Document, DocumentStatus, DocumentVersion

_CHUNK = 1024 * 1024
# pg_dump and pg_restore of every installed major version on Debian and Ubuntu.
_VERSIONED_BIN_DIRS = "/usr/lib/postgresql/*/bin"


@dataclass(frozen=True, slots=True)
class Snapshot:
    """A database copy in `file` and what it holds."""

    kind: str
    file: Path
    alembic_revision: str
    tool: str
    server_version: str | None
    table_counts: dict[str, int]
    master_key_ids: list[str]
    blobs: list[NamedBlob]


def kind_of(database_url: str) -> str:
    name = make_url(database_url).get_backend_name()
    if name not in ("sqlite", "postgresql"):
        raise BackupError(f"backups of {name} databases are not supported")
    return name


def take_snapshot(database_url: str, workdir: Path) -> Snapshot:
    """Copy the database into `workdir` and describe the copy.

    Raises:
        BackupError: the database or the copying tool cannot be used.
    """
    url = make_url(database_url)
    if kind_of(database_url) == "sqlite":
        return _sqlite_snapshot(_sqlite_path(url), workdir / "signvault.db")
    return _postgresql_snapshot(url, workdir / "signvault.pgdump")


def named_blobs(connection: Connection) -> list[NamedBlob]:
    """The blobs the database names: every version of every document whose content is kept."""
    rows = connection.execute(
        select(
            DocumentVersion.document_id, DocumentVersion.sha256, DocumentVersion.size
        )
        .join(Document, Document.id == DocumentVersion.document_id)
        .where(Document.status != DocumentStatus.PURGED)
        .distinct()
        .order_by(DocumentVersion.document_id, DocumentVersion.sha256)
    )
    return [NamedBlob(str(row.document_id), row.sha256, row.size) for row in rows]


def table_counts(connection: Connection) -> dict[str, int]:
    present = set(inspect(connection).get_table_names())
    return {
        table.name: connection.scalar(select(func.count()).select_from(table)) or 0
        for table in Base.metadata.sorted_tables
        if table.name in present
    }


def _describe(
    connection: Connection,
) -> tuple[str, dict[str, int], list[str], list[NamedBlob]]:
    revision = MigrationContext.configure(connection).get_current_revision()
    if revision != head_revision():
        raise BackupError(
            f"the database schema is at {revision or 'nothing'}, this SignVault's at {head_revision()}: "
            "back up with the SignVault version that serves the database (or run `signvault migrate` first)"
        )
    master_key_ids = sorted(
        connection.scalars(select(crypto.DataKey.master_key_id).distinct())
    )
    return revision, table_counts(connection), master_key_ids, named_blobs(connection)


def _sqlite_path(url: URL) -> Path:
    if not url.database or url.database == ":memory:":
        raise BackupError("an in-memory SQLite database cannot be backed up")
    return Path(url.database.removeprefix("file:").split("?", 1)[0])


def _sqlite_snapshot(source: Path, target: Path) -> Snapshot:
    if not source.is_file():
        raise BackupError(f"no database at {source.resolve()}")
    try:
        with (
            _closing(sqlite3.connect(source, timeout=30)) as live,
            _closing(sqlite3.connect(target)) as copy,
        ):
            # One step: the whole copy is read under one read lock, so it is one
            # consistent snapshot while writers carry on in WAL mode.
            live.backup(copy)
            # A self-contained file: no -wal beside it (the server sets WAL again on open).
            copy.execute("PRAGMA journal_mode=DELETE")
    except sqlite3.Error as exc:
        raise BackupError(f"cannot copy the SQLite database {source}: {exc}") from None
    engine = create_engine(f"sqlite:///{target}", poolclass=NullPool)
    try:
        with engine.connect() as connection:
            revision, counts, key_ids, blobs = _describe(connection)
    finally:
        engine.dispose()
    return Snapshot(
        "sqlite",
        target,
        revision,
        f"SQLite {sqlite3.sqlite_version} online backup API",
        None,
        counts,
        key_ids,
        blobs,
    )


def _postgresql_snapshot(url: URL, target: Path) -> Snapshot:
    engine = create_engine(url, poolclass=NullPool)
    try:
        with engine.connect() as connection:
            connection = connection.execution_options(isolation_level="REPEATABLE READ")
            with connection.begin():
                server = str(
                    connection.scalar(select(func.current_setting("server_version")))
                )
                pg_dump = find_pg_tool("pg_dump", at_least=_major(server))
                snapshot_id = connection.exec_driver_sql(
                    "SELECT pg_export_snapshot()"
                ).scalar_one()
                # The transaction stays open until pg_dump is done: it keeps the snapshot alive.
                _run_pg_tool(
                    pg_dump,
                    url,
                    "--format=custom",
                    f"--snapshot={snapshot_id}",
                    f"--file={target}",
                )
                revision, counts, key_ids, blobs = _describe(connection)
    finally:
        engine.dispose()
    return Snapshot(
        "postgresql",
        target,
        revision,
        _tool_version(pg_dump),
        server,
        counts,
        key_ids,
        blobs,
    )


def check_empty_target(database_url: str) -> None:
    """Refuse a database that holds anything: a restore is made into a fresh one.

    Raises:
        BackupError: the database holds tables, or the SQLite file has content.
    """
    url = make_url(database_url)
    if kind_of(database_url) == "sqlite":
        path = _sqlite_path(url)
        if path.exists() and path.stat().st_size > 0:
            raise BackupError(
                f"the database {path.resolve()} exists: restore into a fresh data dir "
                "(or a SIGNVAULT_DATABASE_URL naming a file that does not exist)"
            )
        return
    engine = create_engine(url, poolclass=NullPool)
    try:
        with engine.connect() as connection:
            tables = inspect(connection).get_table_names()
    except SQLAlchemyError as exc:
        first = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
        raise BackupError(
            f"cannot reach the database {url.render_as_string(hide_password=True)}: {first}"
        ) from None
    finally:
        engine.dispose()
    if tables:
        raise BackupError(
            f"the database {url.render_as_string(hide_password=True)} holds {len(tables)} tables: "
            "restore into a new, empty database (createdb)"
        )


def check_kind(database_url: str, kind: str) -> None:
    """Raises: BackupError: the target is another kind of database than the archive's."""
    target_kind = kind_of(database_url)
    if target_kind != kind:
        raise BackupError(
            f"the archive holds a {kind} database and the target is {target_kind}: "
            f"restore into {kind} (a restore across database kinds is not supported)"
        )


def restore_database(
    database_url: str, kind: str, content: IO[bytes], workdir: Path
) -> None:
    """Put a database copy of `kind` in place of the (empty) target database.

    Raises:
        BackupError: the kinds differ, or the copy cannot be put in place.
    """
    check_kind(database_url, kind)
    url = make_url(database_url)
    if kind == "sqlite":
        _place_file(content, _sqlite_path(url))
        return
    dump = workdir / "signvault.pgdump"
    with dump.open("wb") as out:
        shutil.copyfileobj(content, out, _CHUNK)
    pg_restore = find_pg_tool("pg_restore", at_least=0)
    _run_pg_tool(
        pg_restore,
        url,
        "--exit-on-error",
        "--single-transaction",
        "--no-owner",
        "--no-privileges",
        str(dump),
    )


def _place_file(content: IO[bytes], path: Path) -> None:
    """Write the file 0600 under a temporary name, fsync it, and rename it into place."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".restoring")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "wb") as out:
            shutil.copyfileobj(content, out, _CHUNK)
            out.flush()
            os.fsync(out.fileno())
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def find_pg_tool(name: str, *, at_least: int) -> Path:
    """The newest `name` on PATH or in Debian's versioned folders, of major version `at_least` or more.

    pg_dump refuses a server newer than itself; pg_restore reads the archives of
    its own and older versions.

    Raises:
        BackupError: none is installed, or none is new enough.
    """
    candidates = [Path(found)] if (found := shutil.which(name)) else []
    candidates += sorted(Path("/").glob(_VERSIONED_BIN_DIRS.lstrip("/") + f"/{name}"))
    versions = {path: _major(_tool_version(path)) for path in candidates}
    if not versions:
        raise BackupError(
            f"{name} is not installed (PostgreSQL client tools, e.g. apt-get install postgresql-client): "
            f"a PostgreSQL backup and restore need it on PATH"
        )
    best = max(versions, key=lambda path: versions[path])
    if versions[best] < at_least:
        raise BackupError(
            f"{name} {versions[best]} ({best}) cannot work with a PostgreSQL {at_least} server: "
            f"install the PostgreSQL {at_least} client tools (or newer) and put them first on PATH"
        )
    return best


def _tool_version(path: Path) -> str:
    try:
        result = subprocess.run(  # noqa: S603 (a PostgreSQL client tool found above)
            [str(path), "--version"],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        )
    except (OSError, subprocess.SubprocessError) as exc:
        raise BackupError(f"cannot run {path}: {exc}") from None
    return result.stdout.strip()


def _major(version: str) -> int:
    """The major version in `pg_dump (PostgreSQL) 15.20 (Debian …)` or a server's `15.20 (Debian …)`."""
    found = re.search(r"(?:^|\)\s*)(\d+)", version)
    return int(found.group(1)) if found else 0


def _run_pg_tool(tool: Path, url: URL, *args: str) -> None:
    """Run a libpq tool on the database of `url`; the password goes in the environment, not argv."""
    env = dict(os.environ)
    if url.password is not None:
        env["PGPASSWORD"] = str(url.password)
    target = url.set(drivername="postgresql", password=None).render_as_string(
        hide_password=False
    )
    command = [str(tool), f"--dbname={target}", *args]
    try:
        result = subprocess.run(  # noqa: S603 (a PostgreSQL client tool, the URL from settings)
            command, env=env, capture_output=True, text=True, check=False
        )
    except OSError as exc:
        raise BackupError(f"cannot run {tool}: {exc}") from None
    if result.returncode != 0:
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        raise BackupError(
            f"{tool.name} failed (exit {result.returncode}): {lines[-1] if lines else 'no message'}"
        )


@contextmanager
def _closing(connection: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    try:
        yield connection
    finally:
        connection.close()
