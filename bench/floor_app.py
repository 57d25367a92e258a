"""The HTTP floors for `sign.py`: what the one-shot `POST /api/v1/sign` costs at the least.

`app`: uvicorn, FastAPI, a multipart upload and the engine, nothing else (no
token, database, blob store, audit or licence): the product doing nothing but sign.

`persisting_app`: the same, plus the least that ARCHITECTURE.md's stack (sync
`def` handlers, an ORM `Session` per request) and issue #5's "nothing lost" ask
of any implementation: a sync dependency that finds the caller's row by the
bearer token, the upload and the signed output stored durably in the product's
blob store, and one transaction inserting a document, its two versions, the
signature record and one audit row on SQLite (the product's engine settings: WAL,
write-serialising transactions), or on the PostgreSQL database named in
BENCH_FLOOR_DATABASE_URL. No token signature check, roles, licence,
idempotency, hash chain or notification.

Run by `sign.py` (`uvicorn --app-dir bench floor_app:app`, or
`floor_app:persisting_app` with BENCH_FLOOR_DATA naming an empty folder) with the
PKCS#12 file named in BENCH_FLOOR_P12 (password "pw"); never part of the product.
"""

import io
import os
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

from asn1crypto import x509 as asn1_x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import pkcs12
from fastapi import Depends, FastAPI, Form, Header, HTTPException, UploadFile
from fastapi.responses import Response
from sqlalchemy import ForeignKey, select
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from app.core.blobstores import FilesystemBlobStore
from app.core.db import make_engine, make_sessionmaker
from app.signing.engine import CachedKeySigner, SignOptions, sign_pdf

_key, _cert, _chain = pkcs12.load_key_and_certificates(
    Path(os.environ["BENCH_FLOOR_P12"]).read_bytes(), b"pw"
)
assert isinstance(_key, rsa.RSAPrivateKey)
assert _cert is not None


def _asn1(certificate: object) -> asn1_x509.Certificate:
    return asn1_x509.Certificate.load(
        certificate.public_bytes(serialization.Encoding.DER)  # type: ignore[attr-defined]
    )


signer = CachedKeySigner(
    certificate=_asn1(_cert), private_key=_key, chain=[_asn1(c) for c in _chain]
)
app = FastAPI()


@app.post("/api/v1/sign")
def sign_upload(file: UploadFile, options: Annotated[str, Form()] = "{}") -> Response:
    signed = io.BytesIO()
    sign_pdf(
        io.BytesIO(file.file.read()),
        signed,
        signer,
        SignOptions(),
        signing_time=datetime.now(UTC),
    )
    return Response(signed.getvalue(), media_type="application/pdf")


class _Base(DeclarativeBase):
    pass


class _Caller(_Base):
    __tablename__ = "callers"
    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    token: Mapped[str] = mapped_column(unique=True)
    name: Mapped[str]


class _Document(_Base):
    __tablename__ = "documents"
    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    owner_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("callers.id"))
    title: Mapped[str]
    latest_sha256: Mapped[str]
    created_at: Mapped[datetime]


class _Version(_Base):
    __tablename__ = "versions"
    document_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("documents.id"), primary_key=True
    )
    number: Mapped[int] = mapped_column(primary_key=True)
    sha256: Mapped[str]
    size: Mapped[int]


class _Signature(_Base):
    __tablename__ = "signatures"
    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    document_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("documents.id"))
    signer_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("callers.id"))
    sha256_before: Mapped[str]
    sha256_after: Mapped[str]
    signing_time: Mapped[datetime]


class _AuditRow(_Base):
    __tablename__ = "audit"
    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)
    actor_id: Mapped[uuid.UUID]
    action: Mapped[str]
    resource_id: Mapped[uuid.UUID]
    occurred_at: Mapped[datetime]


persisting_app = FastAPI()
if "BENCH_FLOOR_DATA" in os.environ:
    _data = Path(os.environ["BENCH_FLOOR_DATA"])
    _engine = make_engine(
        os.environ.get("BENCH_FLOOR_DATABASE_URL") or f"sqlite:///{_data / 'floor.db'}"
    )
    _Base.metadata.create_all(_engine)
    _sessions = make_sessionmaker(_engine)
    _blobs = FilesystemBlobStore(_data / "blobs")
    with _sessions() as _setup:
        _setup.add(_Caller(token=os.environ["BENCH_FLOOR_TOKEN"], name="bench"))
        _setup.commit()


def _session() -> Iterator[Session]:
    with _sessions() as session:
        yield session


def _caller(
    session: Annotated[Session, Depends(_session)],
    authorization: Annotated[str, Header()],
) -> _Caller:
    caller = session.scalars(
        select(_Caller).where(_Caller.token == authorization.removeprefix("Bearer "))
    ).one_or_none()
    if caller is None:
        raise HTTPException(401)
    return caller


@persisting_app.post("/api/v1/sign")
def sign_and_keep(
    session: Annotated[Session, Depends(_session)],
    caller: Annotated[_Caller, Depends(_caller)],
    file: UploadFile,
    options: Annotated[str, Form()] = "{}",
) -> Response:
    document_id = uuid.uuid4()
    content = file.file.read()
    original = _blobs.put_bytes(document_id.hex, content)
    now = datetime.now(UTC)
    with _blobs.spool() as target:
        sign_pdf(io.BytesIO(content), target, signer, SignOptions(), signing_time=now)
        signed = _blobs.put_file(document_id.hex, target)
        target.seek(0)
        answer = target.read()
    session.add(
        _Document(
            id=document_id,
            owner_id=caller.id,
            title=file.filename or "upload",
            latest_sha256=signed.sha256,
            created_at=now,
        )
    )
    session.add_all(
        [
            _Version(document_id=document_id, number=1, sha256=original.sha256, size=original.size),
            _Version(document_id=document_id, number=2, sha256=signed.sha256, size=signed.size),
        ]
    )  # fmt: skip
    session.flush()
    session.add_all(
        [
            _Signature(
                document_id=document_id,
                signer_id=caller.id,
                sha256_before=original.sha256,
                sha256_after=signed.sha256,
                signing_time=now,
            ),
            _AuditRow(actor_id=caller.id, action="document.signed", resource_id=document_id, occurred_at=now),
        ]
    )  # fmt: skip
    session.commit()
    return Response(answer, media_type="application/pdf")
