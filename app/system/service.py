"""Readiness checks."""

from alembic.runtime.migration import MigrationContext
from sqlalchemy import text
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from app.auth.tokens import TokenKeys
from app.core.crypto import EnvelopeCipher, master_key_status
from app.core.errors import ServiceUnavailable
from app.core.freespace import WatchedFilesystems
from app.core.migrations import head_revision
from app.core.storage import BlobStore
from app.system.errors import StorageLow


def readiness(
    session: Session,
    *,
    token_keys: TokenKeys,
    cipher: EnvelopeCipher | None,
    filesystems: WatchedFilesystems,
    min_free_bytes: int,
    blobs: BlobStore,
) -> dict[str, str]:
    """Raises: ServiceUnavailable naming the failed check (StorageLow for free space, BlobStoreUnavailable)."""
    _check_free_space(filesystems, min_free_bytes)
    blobs.check()
    try:
        session.execute(text("SELECT 1"))
        current = MigrationContext.configure(
            session.connection()
        ).get_current_revision()
    except SQLAlchemyError as exc:
        raise ServiceUnavailable(
            f"The database is not reachable: {type(exc).__name__}."
        ) from None
    head = head_revision()
    if current != head:
        raise ServiceUnavailable(
            f"The database schema is at {current or 'nothing'}, not {head}: run 'signvault migrate'."
        )
    problem = cipher.status(session) if cipher else master_key_status(session, None)
    if problem:
        raise ServiceUnavailable(f"The master key is not usable: {problem}.")
    problem = token_keys.signing_ready()
    if problem:
        raise ServiceUnavailable(f"Access tokens cannot be signed: {problem}.")
    return {
        "database": "ok",
        "migrations": head,
        "token_key": "ok",
        "master_key": "ok",
        "storage": "ok",
    }


def _check_free_space(filesystems: WatchedFilesystems, min_free_bytes: int) -> None:
    """Raises: StorageLow when a store's filesystem has less than `min_free_bytes` free."""
    free = filesystems.free_bytes()
    low = [
        f"{store} ({filesystems.paths[store]}) has {free[store]} bytes free"
        for store in sorted(free)
        if free[store] < min_free_bytes
    ]
    if low:
        raise StorageLow(
            f"Storage low: {'; '.join(low)}, under SIGNVAULT_MIN_FREE_BYTES={min_free_bytes}.",
            free_bytes=free,
        )
