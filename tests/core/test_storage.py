"""The blob store: content-addressed, stored before use, one namespace per owner.

The interface tests run on both backends, the filesystem and a real S3 server
(SeaweedFS on loopback); the filesystem's own guarantees (a spool linked, not
copied; nothing left by a failed write) are tested on it alone.
"""

import hashlib
import io
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.core.blobstores import FilesystemBlobStore, S3BlobStore
from app.core.storage import BlobNotFound, BlobStore, sha256_of
from tests.s3server import SeaweedServer

NAMESPACE = "0b5c1e2a-1111-4222-8333-944455556666"


@pytest.fixture
def fs_blobs(tmp_path: Path) -> FilesystemBlobStore:
    return FilesystemBlobStore(tmp_path / "blobs")


def s3_blobs(server: SeaweedServer, bucket: str, spool: Path) -> S3BlobStore:
    return S3BlobStore(
        server.client(),
        bucket=bucket,
        prefix=f"p-{os.urandom(4).hex()}/inner",
        spool_folder=spool,
    )


@pytest.fixture(params=["filesystem", "s3"])
def blobs(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[BlobStore]:
    if request.param == "filesystem":
        yield FilesystemBlobStore(tmp_path / "blobs")
    else:
        yield s3_blobs(
            request.getfixturevalue("s3_server"),
            request.getfixturevalue("s3_bucket"),
            tmp_path / "spool",
        )


def incoming(blobs: FilesystemBlobStore) -> list[str]:
    return os.listdir(blobs.root / ".incoming")


def test_content_is_stored_under_its_sha256(blobs: BlobStore) -> None:
    data = os.urandom(3 * 1024 * 1024 + 7)  # more than one read chunk

    stored = blobs.put_bytes(NAMESPACE, data)

    assert stored.sha256 == hashlib.sha256(data).hexdigest()
    assert stored.size == len(data)
    with blobs.open(NAMESPACE, stored.sha256) as handle:
        assert handle.size == len(data)
        assert handle.read() == data
    with blobs.open_seekable(NAMESPACE, stored.sha256) as local:
        local.seek(-7, os.SEEK_END)
        assert local.read() == data[-7:]
    assert [path for path, _ in blobs.spool_files()] == []


def test_a_byte_range_is_read_alone(blobs: BlobStore) -> None:
    data = bytes(range(256)) * 64
    stored = blobs.put_bytes(NAMESPACE, data)

    with blobs.open(NAMESPACE, stored.sha256, start=100, end=1099) as part:
        assert (part.size, part.length) == (len(data), 1000)
        assert b"".join(part.chunks(333)) == data[100:1100]
    with blobs.open(NAMESPACE, stored.sha256, start=len(data) - 5) as tail:
        assert tail.read() == data[-5:]


def test_storing_the_same_content_twice_keeps_one_blob(blobs: BlobStore) -> None:
    first = blobs.put_bytes(NAMESPACE, b"%PDF-1.7 same")
    second = blobs.put_file(NAMESPACE, io.BytesIO(b"%PDF-1.7 same"))

    assert first == second
    assert [(b.namespace, b.sha256, b.size) for b in blobs.blob_files()] == [
        (NAMESPACE, first.sha256, len(b"%PDF-1.7 same"))
    ]


def test_a_missing_blob_is_blob_not_found(blobs: BlobStore) -> None:
    absent = "ab" * 32
    with pytest.raises(BlobNotFound):
        blobs.open(NAMESPACE, absent)
    with pytest.raises(BlobNotFound), blobs.open_seekable(NAMESPACE, absent):
        pass
    assert not blobs.exists(NAMESPACE, absent)
    assert blobs.delete(NAMESPACE, absent) is False


@pytest.mark.parametrize(
    ("namespace", "sha256"),
    [
        ("../etc", "a" * 64),
        ("a/b", "a" * 64),
        ("", "a" * 64),
        (NAMESPACE, "A" * 64),
        (NAMESPACE, "a" * 63),
        (NAMESPACE, "../" + "a" * 61),
    ],
)
def test_addresses_outside_the_store_are_refused(
    blobs: BlobStore, namespace: str, sha256: str
) -> None:
    with pytest.raises(ValueError, match=r"SHA-256|namespace"):
        blobs.exists(namespace, sha256)


def test_deleting_a_namespace_removes_only_its_blobs(blobs: BlobStore) -> None:
    other = "0b5c1e2a-ffff-4222-8333-944455556666"  # same two-letter shard
    mine = blobs.put_bytes(NAMESPACE, b"mine")
    also_mine = blobs.put_bytes(NAMESPACE, b"mine too")
    kept = blobs.put_bytes(other, b"kept")

    blobs.delete_namespace(NAMESPACE)

    assert not blobs.exists(NAMESPACE, mine.sha256)
    assert not blobs.exists(NAMESPACE, also_mine.sha256)
    assert blobs.exists(other, kept.sha256)
    assert blobs.delete(other, kept.sha256) is True
    assert blobs.delete(other, kept.sha256) is False  # already gone: no error
    assert not blobs.exists(other, kept.sha256)
    assert list(blobs.blob_files()) == []


def test_a_spool_is_linked_into_place_and_outlives_its_temporary_name(
    fs_blobs: FilesystemBlobStore,
) -> None:
    with fs_blobs.spool() as spool:
        spool.write(b"signed output")
        stored = fs_blobs.put_file(NAMESPACE, spool)
        path = fs_blobs.path(NAMESPACE, stored.sha256)
        assert os.path.samefile(spool.name, path)  # a link, not a copy
    assert incoming(fs_blobs) == []
    assert path.read_bytes() == b"signed output"


def test_a_failed_write_leaves_nothing_behind(fs_blobs: FilesystemBlobStore) -> None:
    class Broken(io.BytesIO):
        def read(self, size: int | None = -1) -> bytes:
            if self.tell() > 0:
                raise OSError("the upload was cut off")
            return super().read(1024)

    with pytest.raises(OSError, match="cut off"):
        fs_blobs.put_file(NAMESPACE, Broken(b"x" * 4096))

    assert incoming(fs_blobs) == []
    assert not (fs_blobs.root / NAMESPACE[:2]).exists()


def test_sha256_of_reads_from_the_start_and_rewinds() -> None:
    handle = io.BytesIO(b"0123456789")
    handle.seek(4)

    assert sha256_of(handle) == hashlib.sha256(b"0123456789").hexdigest()
    assert handle.tell() == 0
