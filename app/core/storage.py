"""The blob store: document content, content-addressed by SHA-256 in one namespace per document.

`BlobStore` is the one interface every caller uses; `app.core.blobstores` has
its two backends, the filesystem (the embedded default) and S3-compatible
object storage, and picks one from the settings. Both spool incoming content
to a private folder on the local disk first and store it durably before
anything in the database names it.
"""

import hashlib
import os
import stat
import tempfile
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import IO, Any, Protocol, Self

from app.core.errors import AppError

_CHUNK = 1024 * 1024
# How long a client is asked to wait when the object store cannot be reached.
BLOB_STORE_RETRY_AFTER_SECONDS = 10


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
    """A stored blob, for the sweeper and backups: whose it is and when it was written."""

    namespace: str
    sha256: str
    size: int
    modified: float  # seconds since the epoch


class BlobNotFound(FileNotFoundError):
    """No blob under that namespace and SHA-256 (a FileNotFoundError, as the filesystem's own)."""


class BlobStoreUnavailable(AppError):
    """The object store cannot be reached or refuses this server (credentials, permissions, 5xx)."""

    status = 503
    code = "blob_store_unavailable"
    title = "Blob store unavailable"

    def __init__(self, detail: str | None = None, **kwargs: Any) -> None:
        kwargs.setdefault(
            "headers", {"Retry-After": str(BLOB_STORE_RETRY_AFTER_SECONDS)}
        )
        super().__init__(
            detail
            or "The document store cannot be reached right now; nothing was changed. Try again shortly.",
            **kwargs,
        )


class BlobStream:
    """The bytes of one blob from `start` through `end`, read in order; `size` is the whole blob's.

    Reads stop at `end` even when the underlying stream (an open file) goes on.
    """

    def __init__(self, raw: Any, *, size: int, start: int = 0, end: int | None = None):
        self._raw = raw
        self.size = size
        self.start = start
        self.end = size - 1 if end is None else end
        self._left = max(0, self.end - start + 1)

    @property
    def length(self) -> int:
        return max(0, self.end - self.start + 1)

    def read(self, amount: int = -1) -> bytes:
        if self._left <= 0:
            return b""
        wanted = self._left if amount is None or amount < 0 else min(amount, self._left)
        data: bytes = self._raw.read(wanted)
        self._left -= len(data)
        return data

    def chunks(self, size: int = _CHUNK) -> Iterator[bytes]:
        while chunk := self.read(size):
            yield chunk

    def close(self) -> None:
        self._raw.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


class BlobStore(Protocol):
    """Where document content lives: `<namespace>/<sha256>`, one namespace per document.

    Namespaces keep deletion simple and race-free: deleting a document removes
    its namespace, and no other document can share one of its blobs.
    """

    def spool(self) -> AbstractContextManager[IO[bytes]]:
        """A private temporary file on the local disk, removed on exit; `put_file` stores it."""
        ...

    def put_file(self, namespace: str, handle: IO[bytes]) -> StoredBlob:
        """Store a readable file's content durably before anything refers to it."""
        ...

    def put_bytes(self, namespace: str, data: bytes) -> StoredBlob: ...

    def open(
        self, namespace: str, sha256: str, *, start: int = 0, end: int | None = None
    ) -> BlobStream:
        """The blob's bytes from `start` through `end` (inclusive), streamed.

        Raises:
            BlobNotFound: no such blob.
            BlobStoreUnavailable: the store cannot be reached.
        """
        ...

    def open_seekable(
        self, namespace: str, sha256: str
    ) -> AbstractContextManager[IO[bytes]]:
        """The blob as a seekable local file (a PDF parser reads it out of order).

        Raises:
            BlobNotFound, BlobStoreUnavailable: as `open`.
        """
        ...

    def exists(self, namespace: str, sha256: str) -> bool: ...

    def delete(self, namespace: str, sha256: str) -> bool:
        """Delete one blob; False when it was not there."""
        ...

    def delete_namespace(self, namespace: str) -> None: ...

    def blob_files(self) -> Iterator[BlobFile]:
        """Every stored blob; what is not a blob's name is skipped."""
        ...

    def remove_if_empty(self, namespace: str) -> None:
        """Let go of an emptied namespace (its folders, on the filesystem)."""
        ...

    def spool_files(self) -> Iterator[tuple[Path, float]]:
        """The files in the spool folder, each with when it was last written."""
        ...

    def check(self) -> None:
        """For `/ready`. Raises: BlobStoreUnavailable when the store cannot be used."""
        ...


def check_address(namespace: str, sha256: str) -> None:
    """Raises: ValueError unless `sha256` is a hex digest and `namespace` alphanumeric (with '-')."""
    if len(sha256) != 64 or any(c not in "0123456789abcdef" for c in sha256):
        raise ValueError("not a SHA-256 hex digest")
    if not namespace or not all(c.isalnum() or c == "-" for c in namespace):
        raise ValueError("namespace must be alphanumeric")


def is_blob_address(namespace: str, sha256: str) -> bool:
    try:
        check_address(namespace, sha256)
    except ValueError:
        return False
    return True


class LocalSpool:
    """The private folder on the local disk where content waits before it is stored."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder
        make_private_dir(folder.parent)  # the blobs folder, with no blobs on S3
        make_private_dir(folder)

    @contextmanager
    def spool(self, prefix: str = "spool-") -> Iterator[IO[bytes]]:
        """A private temporary file in the folder, removed on exit.

        A plain file object, not `NamedTemporaryFile`'s wrapper: that wrapper
        builds a function object for every call, and pyHanko writes its output in
        hundreds of small calls.
        """
        fd, name = tempfile.mkstemp(dir=self.folder, prefix=prefix)
        os.close(fd)
        try:
            with open(name, "w+b") as handle:
                yield handle
        finally:
            Path(name).unlink(missing_ok=True)

    def holds(self, handle: IO[bytes]) -> bool:
        name = getattr(handle, "name", None)
        return isinstance(name, str) and Path(name).parent == self.folder

    def files(self) -> Iterator[tuple[Path, float]]:
        for entry in entries_of(self.folder):
            with suppress(FileNotFoundError):
                yield Path(entry.path), entry.stat(follow_symlinks=False).st_mtime


def entries_of(folder: Path) -> list[os.DirEntry[str]]:
    try:
        with os.scandir(folder) as entries:
            return list(entries)
    except FileNotFoundError:
        return []


def sha256_of(handle: IO[bytes]) -> str:
    """The SHA-256 of a readable file's whole content; it is left at its start."""
    handle.seek(0)
    digest = digest_of(handle).sha256
    handle.seek(0)
    return digest


def digest_of(handle: IO[bytes], *, copy_to: IO[bytes] | None = None) -> StoredBlob:
    """SHA-256 and size of what is left to read in `handle` (copied to `copy_to` on the way)."""
    digest = hashlib.sha256()
    size = 0
    while chunk := handle.read(_CHUNK):
        digest.update(chunk)
        size += len(chunk)
        if copy_to is not None:
            copy_to.write(chunk)
    return StoredBlob(digest.hexdigest(), size)
