"""Documents in S3-compatible object storage, against a real server (SeaweedFS on loopback).

These run in every test run, whatever SIGNVAULT_TEST_BLOB_STORE says: the
app of each test here keeps its documents in a bucket of the module's own.
"""

import hashlib
import os
import time
import tracemalloc
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from app.core.blobstores import S3BlobStore
from app.core.blobstores import s3 as s3_backend
from app.core.blobstores.s3 import MULTIPART_BYTES
from app.core.config import Settings
from app.documents import sweeper
from app.documents.models import Document
from app.main import create_app
from tests.documents.test_documents import DOCS, upload
from tests.factories import assert_problem, audit_events
from tests.pdfs import make_pdf
from tests.s3server import SECRET_KEY, SeaweedServer, free_ports
from tests.signing import test_sign_api
from tests.signing.test_sign_api import Signer

NAMESPACE = "0b5c1e2a-1111-4222-8333-944455556666"
# A signer with a vault certificate, as the signing tests make one.
ca, alice = test_sign_api.ca, test_sign_api.alice


@pytest.fixture
def blob_store_settings(s3_store: dict[str, Any]) -> dict[str, Any]:
    return s3_store


@pytest.fixture
def blobs(app: FastAPI) -> S3BlobStore:
    store = app.state.blobs
    assert isinstance(store, S3BlobStore)
    return store


def keys_in(blobs: S3BlobStore) -> list[str]:
    listed = blobs.client.list_objects_v2(Bucket=blobs.bucket, Prefix=blobs.prefix)
    return sorted(item["Key"] for item in listed.get("Contents", ()))


@pytest.fixture
def other_app(settings: Settings) -> Iterator[Any]:
    """Apps made from the test's settings with some changed, disposed of at the end."""
    made: list[FastAPI] = []

    def make(**changes: Any) -> FastAPI:
        made.append(create_app(settings.model_copy(update=changes)))
        return made[-1]

    yield make
    for application in made:
        application.state.engine.dispose()


def test_upload_sign_and_download_keep_the_content_in_the_bucket(
    client: TestClient,
    admin_headers: dict[str, str],
    alice: Signer,
    blobs: S3BlobStore,
) -> None:
    pdf = make_pdf(pages=2)
    document = upload(client, alice.headers, pdf).json()
    signed = client.post(
        f"{DOCS}/{document['id']}/sign",
        json={"certificate_id": alice.certificate_id},
        headers=alice.headers,
    )
    assert signed.status_code == 201, signed.text
    after = signed.json()["sha256_after"]

    assert keys_in(blobs) == sorted(
        f"{blobs.prefix}/{document['id'][:2]}/{document['id']}/{sha}"
        for sha in (document["sha256"], after)
    )
    original = client.get(
        f"{DOCS}/{document['id']}/content?version=original", headers=alice.headers
    )
    assert original.content == pdf
    latest = client.get(f"{DOCS}/{document['id']}/content", headers=alice.headers)
    assert hashlib.sha256(latest.content).hexdigest() == after
    assert latest.headers["content-length"] == str(len(latest.content))
    assert (
        client.post(
            f"{DOCS}/{document['id']}/verify", headers=alice.headers
        ).status_code
        == 200
    )

    deleted = client.delete(f"{DOCS}/{document['id']}", headers=admin_headers)
    assert deleted.status_code == 204
    assert keys_in(blobs) == []


def test_a_large_object_goes_up_in_parts_and_streams_down_with_flat_memory(
    s3_server: SeaweedServer, s3_bucket: str, tmp_path: Path
) -> None:
    blobs = S3BlobStore(
        s3_server.client(),
        bucket=s3_bucket,
        prefix=f"large-{uuid.uuid4().hex[:8]}",
        spool_folder=tmp_path / "spool",
    )
    size = 3 * MULTIPART_BYTES - 12345  # > 16 MB: three parts
    digest = hashlib.sha256()
    with blobs.spool() as spool:
        for _ in range(size // (1024 * 1024)):
            chunk = os.urandom(1024 * 1024)
            digest.update(chunk)
            spool.write(chunk)
        tail = os.urandom(size % (1024 * 1024))
        digest.update(tail)
        spool.write(tail)
        stored = blobs.put_file(NAMESPACE, spool)
    assert (stored.sha256, stored.size) == (digest.hexdigest(), size)

    head = blobs.client.head_object(
        Bucket=blobs.bucket, Key=blobs.key(NAMESPACE, stored.sha256)
    )
    assert head["ContentLength"] == size
    assert head["ETag"].strip('"').endswith("-3")  # a multipart upload of 3 parts

    tracemalloc.start()
    try:
        read = hashlib.sha256()
        with blobs.open(NAMESPACE, stored.sha256) as stream:
            for chunk in stream.chunks(256 * 1024):
                read.update(chunk)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert read.hexdigest() == stored.sha256
    assert peak < 4 * 1024 * 1024, f"reading held {peak} bytes at once"


def test_a_byte_range_is_fetched_from_the_bucket(
    client: TestClient, admin_headers: dict[str, str]
) -> None:
    pdf = make_pdf(pages=3)
    document = upload(client, admin_headers, pdf).json()
    url = f"{DOCS}/{document['id']}/content"

    middle = client.get(url, headers={**admin_headers, "Range": "bytes=10-99"})
    assert middle.status_code == 206
    assert middle.content == pdf[10:100]
    assert middle.headers["content-range"] == f"bytes 10-99/{len(pdf)}"
    suffix = client.get(url, headers={**admin_headers, "Range": "bytes=-20"})
    assert (suffix.status_code, suffix.content) == (206, pdf[-20:])
    past = client.get(url, headers={**admin_headers, "Range": f"bytes={len(pdf)}-"})
    assert_problem(past, 416, "range_not_satisfiable")
    assert past.headers["content-range"] == f"bytes */{len(pdf)}"


def test_an_unreachable_store_is_503_blob_store_unavailable_and_stores_nothing(
    other_app: Any, admin_headers: dict[str, str], alice: Signer
) -> None:
    [dead_port] = free_ports(1)  # nothing listens there
    app = other_app(s3_endpoint_url=f"http://127.0.0.1:{dead_port}")
    with TestClient(app) as client:
        refused = upload(client, admin_headers, make_pdf())
        body = assert_problem(refused, 503, "blob_store_unavailable")
        assert refused.headers["retry-after"] == "10"
        assert "nothing was changed" in body["detail"]
        ready = client.get("/ready")
        assert_problem(ready, 503, "blob_store_unavailable")
        with app.state.sessionmaker() as session:
            assert session.scalar(select(func.count()).select_from(Document)) == 0


def test_a_wrong_secret_is_refused_by_the_server_and_answered_503(
    s3_server: SeaweedServer,
    s3_bucket: str,
    other_app: Any,
    admin_headers: dict[str, str],
    alice: Signer,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with pytest.raises(ClientError) as refused:
        s3_server.client(secret="not-" + SECRET_KEY).list_objects_v2(Bucket=s3_bucket)
    assert refused.value.response["Error"]["Code"] == "SignatureDoesNotMatch"

    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-" + SECRET_KEY)
    app = other_app()
    with TestClient(app) as client:
        assert_problem(
            upload(client, admin_headers, make_pdf()), 503, "blob_store_unavailable"
        )
        assert_problem(client.get("/ready"), 503, "blob_store_unavailable")


def test_ready_checks_the_bucket(client: TestClient, other_app: Any) -> None:
    assert client.get("/ready").status_code == 200
    app = other_app(blob_store=f"s3://no-such-bucket-{uuid.uuid4().hex[:8]}/x")
    with TestClient(app) as other:
        assert_problem(other.get("/ready"), 503, "blob_store_unavailable")


def test_an_object_deleted_behind_the_servers_back_is_410_content_missing_and_audited(
    client: TestClient,
    admin_headers: dict[str, str],
    blobs: S3BlobStore,
    session_factory: sessionmaker[Session],
) -> None:
    document = upload(client, admin_headers, make_pdf()).json()
    blobs.client.delete_object(
        Bucket=blobs.bucket, Key=blobs.key(document["id"], document["sha256"])
    )

    gone = client.get(f"{DOCS}/{document['id']}/content", headers=admin_headers)

    body = assert_problem(gone, 410, "content_missing")
    assert document["id"] in body["detail"]
    assert "version 1" in body["detail"]
    [entry] = audit_events(
        session_factory, "document.content_missing", resource_id=document["id"]
    )
    assert entry.details == {"version": 1, "sha256": document["sha256"]}


def test_the_sweeper_removes_unreferenced_objects_from_the_bucket(
    client: TestClient,
    admin_headers: dict[str, str],
    blobs: S3BlobStore,
    session_factory: sessionmaker[Session],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    document = upload(client, admin_headers, make_pdf()).json()
    orphans = [
        blobs.put_bytes(str(uuid.uuid4()), f"left {i}".encode()) for i in range(5)
    ]
    time.sleep(1.1)  # LastModified is in whole seconds
    # Pages of two: the sweep sees every object only by following the pages.
    monkeypatch.setattr(s3_backend, "LIST_PAGE_SIZE", 2)

    result = sweeper.sweep(session_factory, blobs=blobs, grace_seconds=1)

    assert (result.orphan_blobs, result.orphan_bytes) == (
        5,
        sum(o.size for o in orphans),
    )
    assert [(b.namespace, b.sha256) for b in blobs.blob_files()] == [
        (document["id"], document["sha256"])
    ]


def test_a_store_lost_while_serving_is_503_and_a_deletion_still_commits(
    client: TestClient,
    admin_headers: dict[str, str],
    blobs: S3BlobStore,
    s3_server: SeaweedServer,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    document = upload(client, admin_headers, make_pdf()).json()
    [dead_port] = free_ports(1)
    monkeypatch.setattr(
        blobs, "client", s3_server.client(endpoint_url=f"http://127.0.0.1:{dead_port}")
    )
    url = f"{DOCS}/{document['id']}"

    assert_problem(
        client.get(f"{url}/content", headers=admin_headers),
        503,
        "blob_store_unavailable",
    )
    assert_problem(
        client.post(f"{url}/verify", headers=admin_headers),
        503,
        "blob_store_unavailable",
    )
    # The row goes; its object is left for the sweeper once the store is back.
    assert client.delete(url, headers=admin_headers).status_code == 204
    assert "clean-up after the transaction failed" in caplog.text
    assert client.get(url, headers=admin_headers).status_code == 404
    monkeypatch.undo()
    assert [b.sha256 for b in blobs.blob_files()] == [document["sha256"]]
