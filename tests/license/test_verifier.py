"""Licence files: valid, tampered, wrong key, malformed; keys from PEM or base64."""

import base64
import json
from datetime import timedelta

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from app.core.types import utcnow
from app.license.errors import (
    LicenseMalformed,
    LicenseSignatureInvalid,
    LicenseWrongIssuer,
)
from app.license.verifier import (
    BUILTIN_ISSUER_PUBLIC_KEY,
    builtin_issuer_key,
    canonical_bytes,
    key_id,
    load_public_key,
    verify_license,
)
from tests.license.conftest import make_license, public_key_text


def test_valid_file_verifies_and_yields_its_grant(issuer: Ed25519PrivateKey) -> None:
    text = make_license(issuer, users=5, signatures_per_month=100, features=("pkcs11",))
    payload = verify_license(text, issuer.public_key())
    assert payload.licensee == "Acme Ltd"
    assert (payload.limits.users, payload.limits.signatures_per_month) == (5, 100)
    assert payload.limits.signatures_total is None
    assert payload.features == ("pkcs11",)
    assert payload.valid_until - payload.valid_from == timedelta(days=366)


def test_layout_of_the_file_does_not_matter_only_the_payload(
    issuer: Ed25519PrivateKey,
) -> None:
    document = json.loads(make_license(issuer, users=5))
    compact = json.dumps(dict(reversed(document.items())), separators=(",", ":"))
    assert verify_license(compact.encode(), issuer.public_key()).limits.users == 5


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("limits", {"users": 5000}),
        ("licensee", "Someone Else"),
        ("valid_until", "2099-12-31T00:00:00Z"),
        ("features", ["batch", "ltv", "pkcs11", "extra"]),
    ],
)
def test_tampered_payload_is_refused(
    issuer: Ed25519PrivateKey, field: str, value: object
) -> None:
    document = json.loads(make_license(issuer, users=5))
    document["payload"][field] = value
    with pytest.raises(LicenseSignatureInvalid):
        verify_license(json.dumps(document).encode(), issuer.public_key())


def test_file_from_another_issuer_is_refused_as_wrong_issuer(
    issuer: Ed25519PrivateKey,
) -> None:
    other = Ed25519PrivateKey.generate()
    with pytest.raises(LicenseWrongIssuer) as error:
        verify_license(make_license(other), issuer.public_key())
    assert key_id(issuer.public_key()) in error.value.detail


def test_other_key_claiming_our_key_id_fails_the_signature(
    issuer: Ed25519PrivateKey,
) -> None:
    document = json.loads(make_license(Ed25519PrivateKey.generate()))
    document["key_id"] = key_id(issuer.public_key())
    with pytest.raises(LicenseSignatureInvalid):
        verify_license(json.dumps(document).encode(), issuer.public_key())


def _resigned(issuer: Ed25519PrivateKey, **payload_changes: object) -> bytes:
    """A correctly signed file whose payload is not a valid grant."""
    document = json.loads(make_license(issuer))
    document["payload"].update(payload_changes)
    document["signature"] = base64.b64encode(
        issuer.sign(canonical_bytes(document["payload"]))
    ).decode()
    return json.dumps(document).encode()


@pytest.mark.parametrize(
    "content",
    [
        b"",
        b"\xff\xfe not utf-8",
        b"not json at all",
        b"[1, 2, 3]",
        b'{"format": "something-else/9", "payload": {}, "signature": ""}',
        b'{"format": "signvault-license/1", "payload": {"a": 1}}',
        b'{"format": "signvault-license/1", "payload": "x", "signature": "AA=="}',
        b" " * (64 * 1024 + 1),
    ],
)
def test_malformed_files_are_refused(issuer: Ed25519PrivateKey, content: bytes) -> None:
    with pytest.raises(LicenseMalformed):
        verify_license(content, issuer.public_key())


@pytest.mark.parametrize(
    "changes",
    [
        {"limits": {"users": -1}},
        {"limits": {"users": 1.5}},
        {"limits": {"seats": 3}},
        {"valid_until": "2020-01-01T00:00:00"},  # no time zone
        {"valid_until": "2000-01-01T00:00:00Z"},  # before valid_from
        {"licensee": ""},
        {"unexpected": True},
    ],
)
def test_signed_but_invalid_payload_is_malformed(
    issuer: Ed25519PrivateKey, changes: dict[str, object]
) -> None:
    with pytest.raises(LicenseMalformed):
        verify_license(_resigned(issuer, **changes), issuer.public_key())


def test_signature_that_is_not_base64_is_refused(issuer: Ed25519PrivateKey) -> None:
    document = json.loads(make_license(issuer))
    document["signature"] = "%%% not base64 %%%"
    with pytest.raises(LicenseSignatureInvalid):
        verify_license(json.dumps(document).encode(), issuer.public_key())


def test_public_key_loads_from_base64_and_from_pem(issuer: Ed25519PrivateKey) -> None:
    pem = (
        issuer.public_key()
        .public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        .decode()
    )
    expected = key_id(issuer.public_key())
    assert key_id(load_public_key(public_key_text(issuer))) == expected
    assert key_id(load_public_key(pem)) == expected


@pytest.mark.parametrize(
    "text",
    [
        "not a key",
        base64.b64encode(b"short").decode(),
        "-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----",
    ],
)
def test_bad_public_keys_are_refused(text: str) -> None:
    with pytest.raises(ValueError, match=r"."):
        load_public_key(text)


def test_builtin_issuer_key_is_an_ed25519_public_key_only() -> None:
    assert key_id(builtin_issuer_key()) == key_id(
        load_public_key(BUILTIN_ISSUER_PUBLIC_KEY)
    )
    # A licence made with any key we can generate here is not one of the built-in issuer's.
    with pytest.raises(LicenseWrongIssuer):
        verify_license(
            make_license(Ed25519PrivateKey.generate(), valid_from=utcnow()),
            builtin_issuer_key(),
        )
