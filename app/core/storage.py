"""Content-addressed blob store on the filesystem: written atomically, addressed by SHA-256."""

import hashlib
import os
import shutil
import stat
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from typing import IO

_CHUNK = 1024 * 1024


def make_private_dir(folder: Path) -> None:
    """Create `folder` (and missing parents) and make it 0700, whatever the umask.

    For the data dir, the blob store and the folders of key files: what they
    hold is the organisation's. A folder that exists already is tightened when
    this process owns it (an install made before), left as it is otherwise.
    """
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    _tighten(folder, 0o700)


def make_private_files(*paths: Path) -> None:
    """Make existing files 0600 when this process owns them (the SQLite database and its -wal/-shm)."""
    for path in paths:
        _tighten(path, 0o600)


def create_private_file(path: Path) -> None:
    """Create an empty file 0600 unless it exists (SQLite then gives its -wal/-shm the same mode)."""
    with suppress(FileExistsError):
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))


def _tighten(path: Path, mode: int) -> None:
    try:
        status = path.stat()
    except FileNotFoundError:
        return
    if status.st_uid == os.geteuid() and stat.S_IMODE(status.st_mode) != mode:
        path.chmod(mode)


@dataclass(frozen=True, slots=True)
class StoredBlob:
    sha256: str
    size: int


@dataclass(frozen=True, slots=True)
class BlobFile:
    """A blob found on disk, for the sweeper: where it is and when it was written."""

    namespace: str
    sha256: str
    size: int
    modified: float  # seconds since the epoch


class BlobStore:
    """Blobs live at `<root>/<namespace>/<sha256>`: one namespace per owner (a document).

    Namespaces keep deletion simple and race-free: deleting a document removes
    its folder, and no other document can share one of its files.
    """

    def __init__(self, root: Path) -> None:
        self.root = root
        make_private_dir(root)
        self._incoming = root / ".incoming"
        self._incoming.mkdir(mode=0o700, exist_ok=True)

    def path(self, namespace: str, sha256: str) -> Path:
        if len(sha256) != 64 or any(c not in "0123456789abcdef" for c in sha256):
            raise ValueError("not a SHA-256 hex digest")
        if not namespace or not all(c.isalnum() or c == "-" for c in namespace):
            raise ValueError("namespace must be alphanumeric")
        return self.root / namespace[:2] / namespace / sha256

    @contextmanager
    def spool(self) -> Iterator[IO[bytes]]:
        """A private temporary file in the store's filesystem: `put_file` links it into place.

        A plain file object, not `NamedTemporaryFile`'s wrapper: that wrapper
        builds a function object for every call, and pyHanko writes its output in
        hundreds of small calls.
        """
        fd, name = tempfile.mkstemp(dir=self._incoming, prefix="spool-")
        os.close(fd)
        try:
            with open(name, "w+b") as handle:
                yield handle
        finally:
            Path(name).unlink(missing_ok=True)

    def put_file(self, namespace: str, handle: IO[bytes]) -> StoredBlob:
        """Store the content of a readable file, durably, before anything refers to it.

        The content is fsynced under a temporary name, then linked into place and
        the directory fsynced (and its parent, when the namespace is new). A spool
        of this store is not copied: it is linked.
        """
        handle.seek(0)
        name = getattr(handle, "name", None)
        if isinstance(name, str) and Path(name).parent == self._incoming:
            handle.flush()
            blob = _digest(handle)
            os.fsync(handle.fileno())
            return self._place(namespace, blob, Path(name))
        fd, temp_name = tempfile.mkstemp(dir=self._incoming, prefix="put-")
        temp = Path(temp_name)
        try:
            with os.fdopen(fd, "wb") as out:
                blob = _digest(handle, copy_to=out)
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

    def open(self, namespace: str, sha256: str) -> IO[bytes]:
        return self.path(namespace, sha256).open("rb")

    def exists(self, namespace: str, sha256: str) -> bool:
        return self.path(namespace, sha256).exists()

    def delete(self, namespace: str, sha256: str) -> bool:
        """Delete one blob; False when it was not there."""
        try:
            self.path(namespace, sha256).unlink()
        except FileNotFoundError:
            return False
        return True

    def delete_namespace(self, namespace: str) -> None:
        folder = self.path(namespace, "0" * 64).parent
        shutil.rmtree(folder, ignore_errors=True)

    def blob_files(self) -> Iterator[BlobFile]:
        """Every blob on disk (for the sweeper); what is not a blob's name is skipped."""
        for prefix in _subfolders(self.root):
            for folder in _subfolders(prefix):
                for entry in _entries(folder):
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
        """The files in the spool folder, each with when it was last written."""
        for entry in _entries(self._incoming):
            with suppress(FileNotFoundError):
                yield Path(entry.path), entry.stat(follow_symlinks=False).st_mtime


def sha256_of(handle: IO[bytes]) -> str:
    """The SHA-256 of a readable file's whole content; it is left at its start."""
    handle.seek(0)
    digest = _digest(handle).sha256
    handle.seek(0)
    return digest


def _digest(handle: IO[bytes], *, copy_to: IO[bytes] | None = None) -> StoredBlob:
    digest = hashlib.sha256()
    size = 0
    while chunk := handle.read(_CHUNK):
        digest.update(chunk)
        size += len(chunk)
        if copy_to is not None:
            copy_to.write(chunk)
    return StoredBlob(digest.hexdigest(), size)


def _subfolders(folder: Path) -> Iterator[Path]:
    for entry in _entries(folder):
        if entry.is_dir(follow_symlinks=False) and not entry.name.startswith("."):
            yield Path(entry.path)


def _entries(folder: Path) -> list[os.DirEntry[str]]:
    try:
        with os.scandir(folder) as entries:
            return list(entries)
    except FileNotFoundError:
        return []


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
