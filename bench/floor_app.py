"""The HTTP floor for `sign.py`: uvicorn, FastAPI, a multipart upload and the engine, nothing else.

No token, database, blob store, audit or licence: what the one-shot `POST
/api/v1/sign` would cost if the product did nothing but sign. Run by `sign.py`
(`uvicorn --app-dir bench floor_app:app`) with the PKCS#12 file named in
BENCH_FLOOR_P12 (password "pw"); never part of the product.
"""

import io
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated

from asn1crypto import x509 as asn1_x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.hazmat.primitives.serialization import pkcs12
from fastapi import FastAPI, Form, UploadFile
from fastapi.responses import Response

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
