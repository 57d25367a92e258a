"""The blob store: content-addressed, written atomically, one folder per owner."""

import hashlib
import io
import os
from pathlib import Path

import pytest

from app.core.storage import BlobStore, sha256_of

NAMESPACE = "0b5c1e2a-1111-4222-8333-944455556666"


@pytest.fixture
def blobs(tmp_path: Path) -> BlobStore:
    return BlobStore(tmp_path / "blobs")


def incoming(blobs: BlobStore) -> list[str]:
    return os.listdir(blobs.root / ".incoming")


def test_content_is_stored_under_its_sha256(blobs: BlobStore) -> None:
    data = os.urandom(3 * 1024 * 1024 + 7)  # more than one read chunk

    stored = blobs.put_bytes(NAMESPACE, data)

    assert stored.sha256 == hashlib.sha256(data).hexdigest()
    assert stored.size == len(data)
    assert blobs.path(NAMESPACE, stored.sha256).read_bytes() == data
    with blobs.open(NAMESPACE, stored.sha256) as handle:
        assert handle.read() == data
    assert incoming(blobs) == []


def test_storing_the_same_content_twice_keeps_one_file(blobs: BlobStore) -> None:
    first = blobs.put_bytes(NAMESPACE, b"%PDF-1.7 same")
    second = blobs.put_file(NAMESPACE, io.BytesIO(b"%PDF-1.7 same"))

    assert first == second
    folder = blobs.path(NAMESPACE, first.sha256).parent
    assert os.listdir(folder) == [first.sha256]
    assert incoming(blobs) == []


def test_a_spool_is_linked_into_place_and_outlives_its_temporary_name(
    blobs: BlobStore,
) -> None:
    with blobs.spool() as spool:
        spool.write(b"signed output")
        stored = blobs.put_file(NAMESPACE, spool)
        path = blobs.path(NAMESPACE, stored.sha256)
        assert os.path.samefile(spool.name, path)  # a link, not a copy
    assert incoming(blobs) == []
    assert path.read_bytes() == b"signed output"


def test_a_failed_write_leaves_nothing_behind(blobs: BlobStore) -> None:
    class Broken(io.BytesIO):
        def read(self, size: int | None = -1) -> bytes:
            if self.tell() > 0:
                raise OSError("the upload was cut off")
            return super().read(1024)

    with pytest.raises(OSError, match="cut off"):
        blobs.put_file(NAMESPACE, Broken(b"x" * 4096))

    assert incoming(blobs) == []
    assert not (blobs.root / NAMESPACE[:2]).exists()


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
def test_paths_outside_the_store_are_refused(
    blobs: BlobStore, namespace: str, sha256: str
) -> None:
    with pytest.raises(ValueError, match=r"SHA-256|namespace"):
        blobs.path(namespace, sha256)


def test_deleting_a_namespace_removes_only_its_blobs(blobs: BlobStore) -> None:
    other = "0b5c1e2a-ffff-4222-8333-944455556666"  # same two-letter shard
    mine = blobs.put_bytes(NAMESPACE, b"mine")
    kept = blobs.put_bytes(other, b"kept")

    blobs.delete_namespace(NAMESPACE)

    assert not blobs.exists(NAMESPACE, mine.sha256)
    assert blobs.exists(other, kept.sha256)
    blobs.delete(other, kept.sha256)
    blobs.delete(other, kept.sha256)  # already gone: no error
    assert not blobs.exists(other, kept.sha256)


def test_sha256_of_reads_from_the_start_and_rewinds() -> None:
    handle = io.BytesIO(b"0123456789")
    handle.seek(4)

    assert sha256_of(handle) == hashlib.sha256(b"0123456789").hexdigest()
    assert handle.tell() == 0
