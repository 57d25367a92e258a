"""`signvault backup` and `signvault restore` as an operator runs them, on the suite's database kind.

State is made through the API (users, a PKCS#12 import, uploads, signatures),
the archive is written by the real command while the app still runs, restored
into a fresh data dir and database, and a real server started on what came back.
"""

import hashlib
import io
import shutil
import subprocess
import tarfile
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import create_engine, make_url, text
from sqlalchemy.orm import Session, sessionmaker

from app.backup import database as backup_database
from app.backup import service as backup_service
from app.core.blobstores import blob_store_for
from app.core.blobstores.filesystem import FilesystemBlobStore
from app.core.blobstores.s3 import S3BlobStore
from app.core.config import Settings
from app.core.security import PasswordHasher
from app.core.storage import BlobStore
from tests.certificates.pki import Issued, make_ca
from tests.conftest import ADMIN_PASSWORD, POSTGRES_URL
from tests.factories import audit_events, make_user
from tests.independent import check_signed_pdf, missing_tools
from tests.keys import pem_of
from tests.pdfs import make_pdf
from tests.served import BIN_DIR, serve, signvault_env
from tests.signing.test_sign_api import Signer, enrol_signer

DOCS = "/api/v1/documents"


@dataclass
class Built:
    """What the first installation holds, as the API reported it."""

    signer: Signer
    signed: list[str]  # document ids, each with at least one signature
    versions: dict[str, list[dict[str, Any]]]  # document id → its versions


@pytest.fixture(scope="module")
def ca() -> Issued:
    return make_ca("Backup Test CA")


@pytest.fixture
def built(
    client: TestClient,
    admin_headers: dict[str, str],
    session_factory: sessionmaker[Session],
    hasher: PasswordHasher,
    ca: Issued,
) -> Built:
    alice = enrol_signer(
        client,
        admin_headers,
        make_user(session_factory, hasher, username="alice"),
        ca,
        "Alice",
    )
    make_user(session_factory, hasher, username="bob")
    ids = [_upload(client, alice.headers, pages) for pages in (1, 2, 3)]
    for document_id in (ids[0], ids[1], ids[1]):  # the second one signed twice
        signed = client.post(
            f"{DOCS}/{document_id}/sign",
            json={"certificate_id": alice.certificate_id},
            headers=alice.headers,
        )
        assert signed.status_code == 201, signed.text
    # A deleted document's content is gone: the backup must not look for it.
    gone = _upload(client, alice.headers, 1)
    assert client.delete(f"{DOCS}/{gone}", headers=admin_headers).status_code == 204
    versions = {
        document_id: client.get(
            f"{DOCS}/{document_id}/versions", headers=alice.headers
        ).json()
        for document_id in ids
    }
    assert [len(v) for v in versions.values()] == [2, 3, 1]
    return Built(alice, ids[:2], versions)


def _upload(client: TestClient, headers: dict[str, str], pages: int) -> str:
    response = client.post(
        DOCS,
        files={"file": ("doc.pdf", make_pdf(pages=pages), "application/pdf")},
        headers=headers,
    )
    assert response.status_code == 201, response.text
    document_id: str = response.json()["id"]
    return document_id


def cli_env(
    settings: Settings, data_dir: Path, database_url: str, **extra: str
) -> dict[str, str]:
    """The environment of a command run on `data_dir`: on S3, the test's own store for
    the installation it built, and a fresh prefix for any other (a restore target)."""
    store = {}
    if settings.blob_store:
        bucket = settings.blob_store.removeprefix("s3://").split("/")[0]
        location = (
            settings.blob_store
            if data_dir == settings.data_dir
            else f"s3://{bucket}/restored-{uuid.uuid4().hex[:12]}"
        )
        store = {
            "SIGNVAULT_BLOB_STORE": location,
            "SIGNVAULT_S3_ENDPOINT_URL": str(settings.s3_endpoint_url),
        }
    return signvault_env(data_dir, database_url, **store, **extra)


def signvault(
    env: dict[str, str], *args: str, cwd: Path
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # noqa: S603 (our own console script)
        [str(BIN_DIR / "signvault"), *args],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


@pytest.fixture
def fresh_database_url(tmp_path: Path) -> Iterator[str]:
    """An empty database (no schema): what an operator restores into."""
    if not POSTGRES_URL:
        yield f"sqlite:///{tmp_path / 'restored' / 'signvault.db'}"
        return
    name = f"sv_restore_{uuid.uuid4().hex[:12]}"
    admin = create_engine(POSTGRES_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as sql:
        sql.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield (
            make_url(POSTGRES_URL)
            .set(database=name)
            .render_as_string(hide_password=False)
        )
    finally:
        with admin.connect() as sql:
            sql.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture
def archive(
    built: Built, settings: Settings, database_url: str, tmp_path: Path
) -> Path:
    """The archive of the built state, written while the app that built it still runs."""
    out = tmp_path / "signvault-backup.tar"
    made = signvault(
        cli_env(settings, settings.data_dir, database_url),
        "backup",
        str(out),
        cwd=tmp_path,
    )
    assert made.returncode == 0, made.stderr
    assert "the master key is NOT in the archive" in made.stderr
    assert str((settings.data_dir / "master.key").resolve()) in made.stderr
    return out


@pytest.mark.skipif(bool(missing_tools()), reason="needs pdfsig, qpdf, certutil")
def test_restored_installation_serves_verifies_and_signs(
    built: Built,
    archive: Path,
    settings: Settings,
    fresh_database_url: str,
    tmp_path: Path,
    ca: Issued,
) -> None:
    with tarfile.open(archive) as opened:
        names = opened.getnames()
    assert "master.key" not in names
    assert names[-1] == "manifest.json"
    restored = tmp_path / "restored"
    roots = tmp_path / "roots.pem"
    roots.write_bytes(pem_of(ca))
    env = cli_env(
        settings,
        restored,
        fresh_database_url,
        SIGNVAULT_TRUST_ROOTS_FILE=str(roots),
        SIGNVAULT_VALIDATION_ONLINE="false",
        SIGNVAULT_RATE_LIMIT_PER_MINUTE="0",
    )

    # The key was kept apart: without it, nothing is restored.
    refused = signvault(env, "restore", str(archive), cwd=tmp_path)
    assert refused.returncode != 0
    [line] = refused.stderr.strip().splitlines()
    assert "restore refused" in line
    assert "which it does not hold: provide the key kept apart from it" in line
    assert not (restored / "signvault.db").exists()

    shutil.copy2(settings.data_dir / "master.key", restored / "master.key")
    done = signvault(env, "restore", str(archive), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "audit chain intact" in done.stdout
    assert "6 versions of 3 documents match their SHA-256" in done.stdout

    audit = signvault(env, "audit", "verify", cwd=tmp_path)
    assert audit.returncode == 0, audit.stdout + audit.stderr
    assert audit.stdout.startswith("audit chain intact")

    with (
        serve(env, tmp_path) as served,
        httpx.Client(base_url=served.base_url, timeout=60) as http,
    ):
        admin = _bearer(http, "admin", ADMIN_PASSWORD)
        alice = _bearer(http, "alice", built.signer.credentials.password)
        for document_id, versions in built.versions.items():
            assert (
                http.get(f"{DOCS}/{document_id}/versions", headers=admin).json()
                == versions
            )
            for version in versions:
                content = http.get(
                    f"{DOCS}/{document_id}/content",
                    params={"version": version["number"]},
                    headers=admin,
                ).content
                assert hashlib.sha256(content).hexdigest() == version["sha256"]
        for document_id in built.signed:
            report = http.post(f"{DOCS}/{document_id}/verify", headers=admin).json()
            assert report["all_valid"] is True, report
        twice = http.get(f"{DOCS}/{built.signed[1]}/content", headers=admin).content

        # The restored, sealed signing key still signs.
        fresh = http.post(
            DOCS,
            files={"file": ("new.pdf", make_pdf(), "application/pdf")},
            headers=alice,
        ).json()["id"]
        signed = http.post(
            f"{DOCS}/{fresh}/sign",
            json={"certificate_id": built.signer.certificate_id},
            headers=alice,
        )
        assert signed.status_code == 201, signed.text
        report = http.post(f"{DOCS}/{fresh}/verify", headers=admin).json()
        assert (report["signature_count"], report["all_valid"]) == (1, True)
        assert "Traceback" not in served.log

    pdf = tmp_path / "signed-twice.pdf"
    pdf.write_bytes(twice)
    independent = check_signed_pdf(pdf, [pem_of(ca)], tmp_path / "pdfsig")
    assert independent.pdfsig_valid == [True, True]
    assert independent.qpdf_ok


def test_archive_with_its_master_key_restores_alone(
    built: Built,
    settings: Settings,
    database_url: str,
    fresh_database_url: str,
    tmp_path: Path,
) -> None:
    out = tmp_path / "with-key.tar"
    made = signvault(
        cli_env(settings, settings.data_dir, database_url),
        "backup",
        "--include-master-key",
        str(out),
        cwd=tmp_path,
    )
    assert made.returncode == 0, made.stderr
    assert "WARNING: the archive holds the master key" in made.stderr

    restored = tmp_path / "restored"
    env = cli_env(settings, restored, fresh_database_url)
    done = signvault(env, "restore", str(out), cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert (restored / "master.key").read_bytes() == (
        settings.data_dir / "master.key"
    ).read_bytes()
    assert (restored / "master.key").stat().st_mode & 0o777 == 0o600
    assert "master key opens" in done.stdout

    # A second restore into what is now not empty is refused, and changes nothing.
    again = signvault(env, "restore", str(out), cwd=tmp_path)
    assert again.returncode != 0
    [line] = again.stderr.strip().splitlines()
    assert line.startswith("signvault: restore refused: ")
    assert "restore into a" in line


def test_altered_blob_in_the_archive_is_refused_before_anything_is_written(
    archive: Path,
    settings: Settings,
    fresh_database_url: str,
    tmp_path: Path,
) -> None:
    altered = tmp_path / "altered.tar"
    changed = None
    with tarfile.open(archive) as source, tarfile.open(altered, "w") as target:
        for member in source:
            data = source.extractfile(member)
            content = data.read() if data else b""
            if (
                changed is None
                and member.name.startswith("blobs/")
                and b"/Count 2" in content
            ):
                content = content.replace(b"/Count 2", b"/Count 3")
                changed = member.name
            target.addfile(member, io.BytesIO(content))
    assert changed is not None  # the same size: only the SHA-256 tells
    restored = tmp_path / "restored"
    shutil.copytree(settings.data_dir, restored, ignore=_only_the_key)
    refused = signvault(
        cli_env(settings, restored, fresh_database_url),
        "restore",
        str(altered),
        cwd=tmp_path,
    )
    assert refused.returncode != 0
    [line] = refused.stderr.strip().splitlines()
    assert line == (
        f"signvault: restore refused: the archive's {changed} does not match its SHA-256 "
        "in the manifest: the archive is damaged or was altered; nothing was restored"
    )
    assert not (restored / "signvault.db").exists()
    assert list((restored / "blobs").glob("*/*/*")) == []


def _only_the_key(folder: str, names: list[str]) -> list[str]:
    return [name for name in names if name != "master.key"]


def _bearer(http: httpx.Client, username: str, password: str) -> dict[str, str]:
    response = http.post(
        "/api/v1/auth/login", json={"username": username, "password": password}
    )
    assert response.status_code == 200, response.text
    return {"Authorization": f"Bearer {response.json()['access_token']}"}


def _store(settings: Settings) -> BlobStore:
    return blob_store_for(settings)


def _flip_a_bit(store: BlobStore, namespace: str, sha256: str) -> None:
    """Damage a stored blob in place, behind the store's back (same name and size)."""
    with store.open(namespace, sha256) as stream:
        content = bytearray(stream.read())
    content[100] ^= 1
    if isinstance(store, S3BlobStore):
        store.client.put_object(
            Bucket=store.bucket, Key=store.key(namespace, sha256), Body=bytes(content)
        )
    else:
        assert isinstance(store, FilesystemBlobStore)
        store.path(namespace, sha256).write_bytes(bytes(content))


def _a_blob(settings: Settings, built: Built) -> tuple[str, str]:
    document_id = built.signed[0]
    return document_id, built.versions[document_id][-1]["sha256"]


def test_blob_lost_by_the_store_fails_the_backup_naming_it(
    built: Built, settings: Settings, database_url: str, tmp_path: Path
) -> None:
    document_id, sha256 = _a_blob(settings, built)
    assert _store(settings).delete(document_id, sha256)
    out = tmp_path / "never.tar"
    failed = signvault(
        cli_env(settings, settings.data_dir, database_url),
        "backup",
        str(out),
        cwd=tmp_path,
    )
    assert failed.returncode != 0
    [line] = failed.stderr.strip().splitlines()
    assert line == (
        "signvault: backup failed, no archive written: the blob store has lost 1 blobs "
        f"the database names (first: {sha256} of document {document_id}): "
        "the blob store is damaged; restore those documents from an older backup"
    )
    assert list(tmp_path.glob("never.tar*")) == []


def test_blob_damaged_in_the_store_fails_the_backup(
    built: Built, settings: Settings, database_url: str, tmp_path: Path
) -> None:
    document_id, sha256 = _a_blob(settings, built)
    _flip_a_bit(_store(settings), document_id, sha256)
    out = tmp_path / "never.tar"
    failed = signvault(
        cli_env(settings, settings.data_dir, database_url),
        "backup",
        str(out),
        cwd=tmp_path,
    )
    assert failed.returncode != 0
    [line] = failed.stderr.strip().splitlines()
    assert (
        f"the blob {sha256} of document {document_id} is damaged in the blob store"
        in line
    )
    assert list(tmp_path.glob("never.tar*")) == []


class DeletingOnFirstLookup:
    """The store (either backend), while a request deletes a document just after the
    backup's snapshot."""

    def __init__(self, store: BlobStore, delete: Callable[[], None]) -> None:
        self._store = store
        self._delete: Callable[[], None] | None = delete

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    def exists(self, namespace: str, sha256: str) -> bool:
        if self._delete is not None:
            delete, self._delete = self._delete, None
            delete()
        return self._store.exists(namespace, sha256)


def test_document_deleted_between_snapshot_and_copy_starts_the_backup_again(
    built: Built,
    client: TestClient,
    admin_headers: dict[str, str],
    app: FastAPI,
    settings: Settings,
    tmp_path: Path,
) -> None:
    gone = min(built.versions)  # the first blob the backup copies is this document's

    def delete() -> None:
        response = client.delete(f"{DOCS}/{gone}", headers=admin_headers)
        assert response.status_code == 204

    notes: list[str] = []
    result = backup_service.create_backup(
        app.state.engine,
        cast(BlobStore, DeletingOnFirstLookup(_store(settings), delete)),
        database_url=settings.effective_database_url,
        out=tmp_path / "raced.tar",
        master_key=None,
        note=notes.append,
    )
    assert result.attempts == 2
    [note] = notes
    assert note.startswith(
        f"{len(built.versions[gone])} blobs of 1 documents ({gone}) were deleted with their "
        "documents after the database snapshot"
    )
    assert gone not in {blob.namespace for blob in result.manifest.blobs}
    assert len(result.manifest.blobs) == sum(
        len(v) for d, v in built.versions.items() if d != gone
    )
    assert audit_events(app.state.sessionmaker, "backup.created")


@pytest.mark.parametrize(
    ("version", "major"),
    [
        ("pg_dump (PostgreSQL) 15.20 (Debian 15.20-0+deb12u1)", 15),
        ("pg_restore (PostgreSQL) 17.2", 17),
        ("16.4 (Ubuntu 16.4-1.pgdg22.04+1)", 16),
        ("9.6.24", 9),
    ],
)
def test_postgresql_major_versions_are_read(version: str, major: int) -> None:
    assert backup_database._major(version) == major


def test_restore_into_another_kind_of_database_is_refused(
    archive: Path, settings: Settings, tmp_path: Path
) -> None:
    kind, other, url = (
        ("postgresql", "sqlite", f"sqlite:///{tmp_path / 'other' / 'signvault.db'}")
        if POSTGRES_URL
        else ("sqlite", "postgresql", "postgresql+psycopg://nobody@127.0.0.1:1/none")
    )
    refused = signvault(
        cli_env(settings, tmp_path / "other", url),
        "restore",
        str(archive),
        cwd=tmp_path,
    )
    assert refused.returncode != 0
    [line] = refused.stderr.strip().splitlines()
    assert line == (
        f"signvault: restore refused: the archive holds a {kind} database and the target is {other}: "
        f"restore into {kind} (a restore across database kinds is not supported)"
    )
    assert not (tmp_path / "other" / "signvault.db").exists()
