"""Free space on the filesystems SignVault writes to, read when asked (by /ready and /metrics)."""

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.engine import make_url

from app.core.config import Settings


@dataclass(frozen=True, slots=True)
class WatchedFilesystems:
    """A folder per store ("blobs", and "database" for a SQLite file); each names its filesystem."""

    paths: Mapping[str, Path]

    def free_bytes(self) -> dict[str, int]:
        """Bytes an unprivileged writer may still use, per store; a folder gone is left out."""
        free = {}
        for store, path in self.paths.items():
            try:
                status = os.statvfs(path)
            except OSError:
                continue
            free[store] = status.f_bavail * status.f_frsize
        return free


def watched_filesystems(settings: Settings) -> WatchedFilesystems:
    """The blob store's folder, and the SQLite database's (PostgreSQL's disk is its server's)."""
    paths = {"blobs": settings.data_dir / "blobs"}
    url = make_url(settings.effective_database_url)
    database = (url.database or "").removeprefix("file:").split("?", 1)[0]
    if (
        url.get_backend_name() == "sqlite"
        and database not in ("", ":memory:")
        and url.query.get("mode") != "memory"
    ):
        paths["database"] = Path(database).parent
    return WatchedFilesystems(paths)
