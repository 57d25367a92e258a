"""Blobs as files: `<root>/<ns[:2]>/<ns>/<sha256>`, written durably (fsync, then link)."""

import os
import shutil
import stat
import tempfile
from collections.abc import Iterator
from contextlib import AbstractContextManager
from pathlib import Path
from typing import IO

from app.core.storage import (
    BlobFile,
    BlobNotFound,
    BlobStream,
    LocalSpool,
    StoredBlob,
    check_address,
    digest_of,
    entries_of,
    make_private_dir,
)


class FilesystemBlobStore:
    """The embedded default: blobs in a folder of the data dir, the spool in its `.incoming`."""

    def __init__(self, root: Path) -> None:
        self.root = root
        make_private_dir(root)
        self._spool = LocalSpool(root / ".incoming")

    def path(self, namespace: str, sha256: str) -> Path:
        check_address(namespace, sha256)
        return self.root / namespace[:2] / namespace / sha256

    def spool(self) -> AbstractContextManager[IO[bytes]]:
        """A spool in the store's own filesystem: `put_file` links it into place."""
        return self._spool.spool()

    def put_file(self, namespace: str, handle: IO[bytes]) -> StoredBlob:
        """Store the content of a readable file, durably, before anything refers to it.

        The content is fsynced under a temporary name, then linked into place and
        the directory fsynced (and its parent, when the namespace is new). A spool
        of this store is not copied: it is linked.
        """
        handle.seek(0)
        if self._spool.holds(handle):
            handle.flush()
            blob = digest_of(handle)
            os.fsync(handle.fileno())
            return self._place(namespace, blob, Path(handle.name))
        fd, temp_name = tempfile.mkstemp(dir=self._spool.folder, prefix="put-")
        temp = Path(temp_name)
        try:
            with os.fdopen(fd, "wb") as out:
                blob = digest_of(handle, copy_to=out)
                out.flush()
                os.fsync(out.fileno())
            return self._place(namespace, blob, temp)
        finally:
            temp.unlink(missing_ok=True)

    def _place(self, namespace: str, blob: StoredBlob, source: Path) -> StoredBlob:
        """Link the fsynced `source` into place (its own name is removed by its owner)."""
        final = self.path(namespace, blob.sha256)
        folder = final.parent
        for last_try in (False, True):
            try:
                _make_durable_dirs(folder)
                os.link(source, final)
                break
            except FileExistsError:
                return blob  # the same content, stored before
            except FileNotFoundError:
                # The sweeper removed a folder it had just emptied: make it again.
                if last_try:
                    raise
        _fsync_dir(folder)
        return blob

    def put_bytes(self, namespace: str, data: bytes) -> StoredBlob:
        with self.spool() as handle:
            handle.write(data)
            return self.put_file(namespace, handle)

    def open(
        self, namespace: str, sha256: str, *, start: int = 0, end: int | None = None
    ) -> BlobStream:
        handle = self._open_file(namespace, sha256)
        try:
            size = os.fstat(handle.fileno()).st_size
            handle.seek(start)
        except BaseException:
            handle.close()
            raise
        return BlobStream(handle, size=size, start=start, end=end)

    def open_seekable(
        self, namespace: str, sha256: str
    ) -> AbstractContextManager[IO[bytes]]:
        return self._open_file(namespace, sha256)

    def _open_file(self, namespace: str, sha256: str) -> IO[bytes]:
        try:
            return self.path(namespace, sha256).open("rb")
        except FileNotFoundError:
            raise BlobNotFound(f"no blob {namespace}/{sha256}") from None

    def exists(self, namespace: str, sha256: str) -> bool:
        return self.path(namespace, sha256).exists()

    def delete(self, namespace: str, sha256: str) -> bool:
        try:
            self.path(namespace, sha256).unlink()
        except FileNotFoundError:
            return False
        return True

    def delete_namespace(self, namespace: str) -> None:
        folder = self.path(namespace, "0" * 64).parent
        shutil.rmtree(folder, ignore_errors=True)

    def blob_files(self) -> Iterator[BlobFile]:
        for prefix in _subfolders(self.root):
            for folder in _subfolders(prefix):
                for entry in entries_of(folder):
                    try:
                        self.path(folder.name, entry.name)
                        status = entry.stat(follow_symlinks=False)
                    except (ValueError, FileNotFoundError):
                        continue  # not a blob, or deleted meanwhile
                    if stat.S_ISREG(status.st_mode):
                        yield BlobFile(
                            folder.name, entry.name, status.st_size, status.st_mtime
                        )

    def remove_if_empty(self, namespace: str) -> None:
        """Remove a namespace's folder (and its prefix folder) if nothing is left in it."""
        folder = self.path(namespace, "0" * 64).parent
        for empty in (folder, folder.parent):
            try:
                empty.rmdir()
            except OSError:
                return  # not empty (or gone): a writer keeps it

    def spool_files(self) -> Iterator[tuple[Path, float]]:
        return self._spool.files()

    def check(self) -> None:
        """Nothing to reach: free space is `/ready`'s own check."""


def _subfolders(folder: Path) -> Iterator[Path]:
    for entry in entries_of(folder):
        if entry.is_dir(follow_symlinks=False) and not entry.name.startswith("."):
            yield Path(entry.path)


def _make_durable_dirs(folder: Path) -> None:
    """Create `folder` and missing parents; each new entry is fsynced in its parent."""
    if folder.is_dir():
        return
    _make_durable_dirs(folder.parent)
    # Made meanwhile by another writer? Its fsync may not have happened yet: do it too.
    folder.mkdir(mode=0o700, exist_ok=True)
    _fsync_dir(folder.parent)


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
