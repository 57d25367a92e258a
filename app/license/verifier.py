"""Licence files: their format, canonical bytes, Ed25519 signatures and verification.

A licence file is one JSON text document::

    {"format": "signvault-license/1", "key_id": "…", "payload": {…}, "signature": "…"}

`signature` is the base64 Ed25519 signature of `SIGNED_PREFIX` followed by the
canonical JSON of `payload` (keys sorted, no spaces, UTF-8); `key_id` names the
issuer key (the first 16 hex digits of the SHA-256 of its raw public key), so a
file from another issuer is told apart from a tampered one. Whitespace and key
order of the file itself do not matter: only the payload's canonical form is signed.
"""

import base64
import binascii
import hashlib
import json
import uuid
from datetime import datetime
from functools import lru_cache
from typing import Any

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)
from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    model_validator,
)

from app.license.errors import (
    LicenseMalformed,
    LicenseSignatureInvalid,
    LicenseWrongIssuer,
)

FORMAT = "signvault-license/1"
SIGNED_PREFIX = b"signvault-license/1\n"
MAX_FILE_BYTES = 64 * 1024

# The SignVault issuer's public key. Its private key is kept offline by the
# issuer and is in no repository; `SIGNVAULT_LICENSE_PUBLIC_KEY` replaces this
# key for an organisation that issues its own licences.
BUILTIN_ISSUER_PUBLIC_KEY = "uNSTldtG6kbVL2vVlLVZhJmNpe6M79sLKlfWY+pRGBY="


class Limits(BaseModel):
    """Licence limits; `None` means unlimited."""

    model_config = ConfigDict(extra="forbid", frozen=True, strict=True)

    users: int | None = Field(default=None, ge=0)
    certificates: int | None = Field(default=None, ge=0)
    signatures_per_month: int | None = Field(default=None, ge=0)
    signatures_total: int | None = Field(default=None, ge=0)


class LicensePayload(BaseModel):
    """What a licence grants; the signed part of the file."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    license_id: str = Field(min_length=1, max_length=100)
    licensee: str = Field(min_length=1, max_length=200)
    issuer: str = Field(default="SignVault", min_length=1, max_length=200)
    issued_at: AwareDatetime
    valid_from: AwareDatetime
    valid_until: AwareDatetime
    limits: Limits = Limits()
    features: tuple[str, ...] = ()

    @model_validator(mode="after")
    def _window(self) -> "LicensePayload":
        if self.valid_until <= self.valid_from:
            raise ValueError("valid_until must be after valid_from")
        return self


def key_id(public_key: Ed25519PublicKey) -> str:
    raw = public_key.public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )
    return hashlib.sha256(raw).hexdigest()[:16]


def load_public_key(text: str) -> Ed25519PublicKey:
    """An Ed25519 public key from PEM (SubjectPublicKeyInfo) or base64 of its 32 raw bytes.

    Raises:
        ValueError: not an Ed25519 public key.
    """
    text = text.strip()
    if text.startswith("-----BEGIN"):
        try:
            key = serialization.load_pem_public_key(text.encode())
        except (ValueError, UnsupportedAlgorithm):
            raise ValueError("not a readable PEM public key") from None
        if not isinstance(key, Ed25519PublicKey):
            raise ValueError("the PEM key is not an Ed25519 public key")
        return key
    try:
        raw = base64.b64decode(text, validate=True)
    except binascii.Error:
        raise ValueError("not base64 and not PEM") from None
    if len(raw) != 32:
        raise ValueError("an Ed25519 public key is 32 bytes")
    return Ed25519PublicKey.from_public_bytes(raw)


def builtin_issuer_key() -> Ed25519PublicKey:
    return load_public_key(BUILTIN_ISSUER_PUBLIC_KEY)


def canonical_bytes(payload: dict[str, Any]) -> bytes:
    return SIGNED_PREFIX + json.dumps(
        payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False
    ).encode("utf-8")


def _payload_json(payload: LicensePayload) -> dict[str, Any]:
    data: dict[str, Any] = payload.model_dump(mode="json")
    return data


def sign_license(payload: LicensePayload, private_key: Ed25519PrivateKey) -> str:
    """The text of a licence file for `payload`, signed with the issuer's private key."""
    data = _payload_json(payload)
    signature = private_key.sign(canonical_bytes(data))
    document = {
        "format": FORMAT,
        "key_id": key_id(private_key.public_key()),
        "payload": data,
        "signature": base64.b64encode(signature).decode(),
    }
    return json.dumps(document, indent=2, ensure_ascii=False) + "\n"


def new_payload(
    *,
    licensee: str,
    issued_at: datetime,
    valid_from: datetime,
    valid_until: datetime,
    limits: Limits,
    features: tuple[str, ...],
    license_id: str | None = None,
    issuer: str = "SignVault",
) -> LicensePayload:
    """Raises: ValueError (pydantic ValidationError) for an impossible licence."""
    return LicensePayload(
        license_id=license_id or str(uuid.uuid4()),
        licensee=licensee,
        issuer=issuer,
        issued_at=issued_at,
        valid_from=valid_from,
        valid_until=valid_until,
        limits=limits,
        features=tuple(sorted(set(features))),
    )


def verify_license(text: bytes, public_key: Ed25519PublicKey) -> LicensePayload:
    """Parse a licence file and check its signature with the issuer's public key.

    Raises:
        LicenseMalformed: not a licence file of this format.
        LicenseWrongIssuer: signed by another issuer's key.
        LicenseSignatureInvalid: the signature does not match the content (tampered).
    """
    raw_key = public_key.public_bytes(
        serialization.Encoding.Raw, serialization.PublicFormat.Raw
    )
    return _verify_cached(bytes(text), raw_key)


@lru_cache(maxsize=32)
def _verify_cached(text: bytes, raw_key: bytes) -> LicensePayload:
    # Pure and cheap to cache: enforcement re-verifies the stored file on every use,
    # so an edited database row is caught, without paying for parsing each time.
    public_key = Ed25519PublicKey.from_public_bytes(raw_key)
    if len(text) > MAX_FILE_BYTES:
        raise LicenseMalformed(
            f"A licence file is at most {MAX_FILE_BYTES // 1024} KiB."
        )
    try:
        document = json.loads(text.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise LicenseMalformed("The licence file is not UTF-8 JSON.") from None
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        raise LicenseMalformed(f"The file is not a licence of format '{FORMAT}'.")
    payload, signature_text = document.get("payload"), document.get("signature")
    if not isinstance(payload, dict) or not isinstance(signature_text, str):
        raise LicenseMalformed("The licence file lacks its payload or signature.")
    if document.get("key_id") != key_id(public_key):
        raise LicenseWrongIssuer(
            f"The licence was issued with key '{document.get('key_id')}'; this server "
            f"trusts licences from key '{key_id(public_key)}'."
        )
    try:
        signature = base64.b64decode(signature_text, validate=True)
        public_key.verify(signature, canonical_bytes(payload))
    except (binascii.Error, InvalidSignature, ValueError):
        raise LicenseSignatureInvalid(
            "The licence signature does not match its content: the file was changed "
            "after it was issued, or is damaged."
        ) from None
    try:
        return LicensePayload.model_validate(payload)
    except ValidationError as exc:
        fields = ", ".join(
            sorted(
                {".".join(str(p) for p in e["loc"]) or "payload" for e in exc.errors()}
            )
        )
        raise LicenseMalformed(
            f"The licence payload has invalid fields: {fields}."
        ) from None
