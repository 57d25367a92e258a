"""Blobs as objects in an S3-compatible bucket: `<prefix>/<ns[:2]>/<ns>/<sha256>`.

Content is spooled to the local disk, hashed, then uploaded from that file
(multipart above `MULTIPART_BYTES`, parts read from disk as sent); a completed
upload is durable in the store before the caller's transaction commits the
row that names it. Reads stream the object's body in chunks. Every failure to
reach the store, or a refusal of this server's credentials, becomes
`BlobStoreUnavailable` (503); a missing object is `BlobNotFound`.
"""

import functools
import logging
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import IO, Any, TypeVar

import boto3
import botocore.session
from boto3.s3.transfer import S3UploadFailedError, TransferConfig
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from app.core.storage import (
    BlobFile,
    BlobNotFound,
    BlobStoreUnavailable,
    BlobStream,
    LocalSpool,
    StoredBlob,
    check_address,
    digest_of,
    is_blob_address,
)

logger = logging.getLogger(__name__)

MULTIPART_BYTES = 8 * 1024 * 1024
# Parts in flight at once: memory held is about this many parts.
TRANSFER_THREADS = 2
_MISSING = frozenset({"404", "NoSuchKey", "NotFound"})
_DELETE_BATCH = 1000  # DeleteObjects' limit
LIST_PAGE_SIZE = 1000  # list_objects_v2's most

T = TypeVar("T")


def parse_location(location: str) -> tuple[str, str]:
    """`s3://bucket/prefix` → (bucket, prefix without slashes at its ends).

    Raises:
        ValueError: not an s3:// URL with a bucket.
    """
    if not location.startswith("s3://"):
        raise ValueError("an S3 blob store is given as s3://bucket/prefix")
    bucket, _, prefix = location.removeprefix("s3://").partition("/")
    if not bucket:
        raise ValueError("s3:// needs a bucket name: s3://bucket/prefix")
    return bucket, prefix.strip("/")


def make_client(
    *,
    endpoint_url: str | None,
    session: Any = None,
    connect_timeout: float = 5,
    read_timeout: float = 60,
) -> Any:
    """A boto3 S3 client; region and credentials from the standard AWS chain, or `session`'s."""
    config = Config(
        connect_timeout=connect_timeout,
        read_timeout=read_timeout,
        retries={"max_attempts": 3, "mode": "standard"},
        # Path-style for S3-compatible servers (MinIO, Ceph, SeaweedFS) on a host or IP.
        s3={"addressing_style": "path" if endpoint_url else "auto"},
        # Checksums only where S3 requires them: not every compatible server takes
        # the CRC headers that boto3 sends by default.
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
    )
    return (session or new_session()).client(
        "s3", endpoint_url=endpoint_url, config=config
    )


def new_session(**credentials: str) -> Any:
    """A boto3 session (its own credentials chain) sharing the process's parsed service models."""
    core = botocore.session.get_session()
    core.register_component("data_loader", _shared_data_loader())
    return boto3.session.Session(botocore_session=core, **credentials)


@functools.cache
def _shared_data_loader() -> Any:
    # Parsing the S3 service model costs ~0.1 s per new session otherwise.
    return botocore.session.get_session().get_component("data_loader")


class S3BlobStore:
    def __init__(
        self,
        client: Any,
        *,
        bucket: str,
        prefix: str,
        spool_folder: Path,
        server_side_encryption: str | None = None,
    ) -> None:
        self.client = client
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self._spool = LocalSpool(spool_folder)
        self._extra = (
            {"ServerSideEncryption": server_side_encryption}
            if server_side_encryption
            else {}
        )
        self._transfer = TransferConfig(
            multipart_threshold=MULTIPART_BYTES,
            multipart_chunksize=MULTIPART_BYTES,
            max_concurrency=TRANSFER_THREADS,
            # Downloads: what waits to be written to the local file (16 x 256 KiB).
            max_io_queue=16,
        )

    def key(self, namespace: str, sha256: str) -> str:
        check_address(namespace, sha256)
        return f"{self._folder_of(namespace)}{sha256}"

    def _folder_of(self, namespace: str) -> str:
        base = f"{self.prefix}/" if self.prefix else ""
        return f"{base}{namespace[:2]}/{namespace}/"

    def spool(self) -> AbstractContextManager[IO[bytes]]:
        return self._spool.spool()

    def put_file(self, namespace: str, handle: IO[bytes]) -> StoredBlob:
        """Hash the file, then upload it; returns once the store has the whole object.

        The upload reads its parts from a file on disk as it sends them; content
        that is not in a spool file of this store (a parsed multipart part) is
        copied into one first, hashed on the way.
        """
        handle.seek(0)
        if self._spool.holds(handle):
            handle.flush()
            blob = digest_of(handle)
            return self._upload(namespace, blob, handle.name)
        with self.spool() as local:
            blob = digest_of(handle, copy_to=local)
            local.flush()
            return self._upload(namespace, blob, local.name)

    def _upload(self, namespace: str, blob: StoredBlob, filename: str) -> StoredBlob:
        key = self.key(namespace, blob.sha256)
        self._call(
            f"store {key}",
            lambda: self.client.upload_file(
                filename,
                self.bucket,
                key,
                ExtraArgs={**self._extra, "ContentType": "application/octet-stream"},
                Config=self._transfer,
            ),
        )
        return blob

    def put_bytes(self, namespace: str, data: bytes) -> StoredBlob:
        with self.spool() as handle:
            handle.write(data)
            return self.put_file(namespace, handle)

    def open(
        self, namespace: str, sha256: str, *, start: int = 0, end: int | None = None
    ) -> BlobStream:
        key = self.key(namespace, sha256)
        arguments: dict[str, Any] = {"Bucket": self.bucket, "Key": key}
        if start or end is not None:
            arguments["Range"] = f"bytes={start}-{'' if end is None else end}"
        response = self._call(
            f"read {key}", lambda: self.client.get_object(**arguments)
        )
        size = int(response["ContentLength"])
        content_range = response.get("ContentRange")
        if content_range:  # "bytes a-b/size"
            size = int(content_range.rsplit("/", 1)[1])
        return BlobStream(_Body(response["Body"], key), size=size, start=start, end=end)

    @contextmanager
    def open_seekable(self, namespace: str, sha256: str) -> Iterator[IO[bytes]]:
        """The object downloaded to a spool file (in parts, memory flat), removed on exit."""
        key = self.key(namespace, sha256)
        with self.spool() as local:
            self._call(
                f"read {key}",
                lambda: self.client.download_fileobj(
                    self.bucket, key, local, Config=self._transfer
                ),
            )
            local.flush()
            local.seek(0)
            yield local

    def exists(self, namespace: str, sha256: str) -> bool:
        key = self.key(namespace, sha256)
        try:
            self._call(
                f"look up {key}",
                lambda: self.client.head_object(Bucket=self.bucket, Key=key),
            )
        except BlobNotFound:
            return False
        return True

    def delete(self, namespace: str, sha256: str) -> bool:
        """Delete one object; False when it was not there (S3's delete does not say: asked first)."""
        if not self.exists(namespace, sha256):
            return False
        key = self.key(namespace, sha256)
        self._call(
            f"delete {key}",
            lambda: self.client.delete_object(Bucket=self.bucket, Key=key),
        )
        return True

    def delete_namespace(self, namespace: str) -> None:
        check_address(namespace, "0" * 64)
        folder = self._folder_of(namespace)
        keys = [item["Key"] for item in self._list(folder)]
        for first in range(0, len(keys), _DELETE_BATCH):
            self._delete_keys(folder, keys[first : first + _DELETE_BATCH])

    def _delete_keys(self, folder: str, keys: list[str]) -> None:
        objects = [{"Key": key} for key in keys]
        self._call(
            f"delete {folder}",
            lambda: self.client.delete_objects(
                Bucket=self.bucket, Delete={"Objects": objects, "Quiet": True}
            ),
        )

    def blob_files(self) -> Iterator[BlobFile]:
        base = f"{self.prefix}/" if self.prefix else ""
        for item in self._list(base):
            parts = item["Key"].removeprefix(base).split("/")
            if len(parts) != 3 or not is_blob_address(parts[1], parts[2]):
                continue  # not a blob's key
            _, namespace, sha256 = parts
            if namespace[:2] != parts[0]:
                continue
            yield BlobFile(
                namespace, sha256, int(item["Size"]), item["LastModified"].timestamp()
            )

    def _list(self, prefix: str) -> Iterator[dict[str, Any]]:
        """Every object under `prefix`, page by page (list_objects_v2 gives 1,000 at most)."""
        paginator = self.client.get_paginator("list_objects_v2")
        pages = iter(
            paginator.paginate(
                Bucket=self.bucket,
                Prefix=prefix,
                PaginationConfig={"PageSize": LIST_PAGE_SIZE},
            )
        )
        while True:
            page = self._call(f"list {prefix}", lambda: next(pages, None))
            if page is None:
                return
            yield from page.get("Contents", ())

    def remove_if_empty(self, namespace: str) -> None:
        """Nothing to do: an object store has no folders to leave behind."""

    def spool_files(self) -> Iterator[tuple[Path, float]]:
        return self._spool.files()

    def check(self) -> None:
        try:
            self._call(
                "reach the bucket",
                lambda: self.client.head_bucket(Bucket=self.bucket),
            )
        except BlobNotFound:
            raise self._unavailable("reach the bucket", "no such bucket") from None

    def _call(self, what: str, call: Callable[[], T]) -> T:
        """Run one S3 call: a missing object is BlobNotFound, any failure to use the store BlobStoreUnavailable."""
        try:
            return call()
        except ClientError as exc:
            error = exc.response.get("Error", {})
            code = str(error.get("Code", ""))
            if code in _MISSING:
                raise BlobNotFound(f"no object {what.split(' ', 1)[-1]}") from None
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            raise self._unavailable(
                what, f"{code or status}: {error.get('Message', '')}"
            ) from None
        except (BotoCoreError, S3UploadFailedError) as exc:
            raise self._unavailable(what, f"{type(exc).__name__}: {exc}") from None

    def _unavailable(self, what: str, reason: str) -> BlobStoreUnavailable:
        logger.error(
            "blob store: could not %s in bucket %s: %s", what, self.bucket, reason
        )
        return BlobStoreUnavailable()


class _Body:
    """An object's body, read in chunks; a connection lost mid-read is BlobStoreUnavailable."""

    def __init__(self, body: Any, key: str) -> None:
        self._body = body
        self._key = key

    def read(self, amount: int) -> bytes:
        try:
            data: bytes = self._body.read(amount)
        except BotoCoreError as exc:
            logger.error("blob store: reading %s failed: %s", self._key, exc)
            raise BlobStoreUnavailable() from None
        return data

    def close(self) -> None:
        self._body.close()
