"""Signing keys behind pyHanko's `Signer`: PKCS#8 opened from the vault, or a PKCS#11 token.

The vault's `SimpleSigner` keeps the parsed key object: stock `SimpleSigner`
re-parses the key DER on every `sign_raw`, which on OpenSSL 3 runs the RSA
consistency check (about 50 ms for RSA-2048, twice per PDF signature; see
shared/research/signing-performance.md).
"""

import asyncio
from dataclasses import dataclass
from typing import Any

from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from pyhanko.config.pkcs11 import TokenCriteria
from pyhanko.sign import pkcs11 as hanko_pkcs11
from pyhanko.sign.general import SigningError

from app.certificates.errors import KeyMismatch, Pkcs11ObjectNotFound
from app.signing.engine import CachedKeySigner, freeze_signed_attributes


def pkcs12_signer(
    key_pkcs8: bytes, certificate_der: bytes, chain: list[x509.Certificate]
) -> CachedKeySigner:
    """A signer for a vault key: parsed once here, used for every signature after."""
    # OpenSSL's RSA consistency check (tens of ms for RSA-2048) ran when the key
    # was imported; the AES-GCM seal it comes out of proves it unchanged since.
    key = serialization.load_der_private_key(
        key_pkcs8, password=None, unsafe_skip_rsa_key_validation=True
    )
    if not isinstance(
        key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey
    ):
        raise KeyMismatch(
            "The vault key is of a type the signing engine does not support."
        )
    return CachedKeySigner(
        certificate=asn1_x509.Certificate.load(certificate_der),
        private_key=key,
        chain=[_asn1(extra) for extra in chain],
    )


@dataclass(frozen=True)
class Pkcs11Location:
    module: str
    pin: str
    token_label: str
    key_label: str
    cert_label: str | None = None


def open_token(location: Pkcs11Location) -> Any:
    """Open a logged-in session on the token.

    Raises:
        Pkcs11ObjectNotFound: no token with that label (or the PIN is refused).
    """
    from pkcs11 import exceptions as pkcs11_errors

    criteria = TokenCriteria(label=location.token_label)
    try:
        try:
            return hanko_pkcs11.open_pkcs11_session(
                location.module, token_criteria=criteria, user_pin=location.pin
            )
        except pkcs11_errors.UserAlreadyLoggedIn:
            # PKCS#11 login is per application: another open session logged us in.
            return hanko_pkcs11.open_pkcs11_session(
                location.module, token_criteria=criteria
            )
    except (pkcs11_errors.PKCS11Error, SigningError) as exc:
        raise Pkcs11ObjectNotFound(
            f"Cannot open the PKCS#11 token '{location.token_label}': {type(exc).__name__}."
        ) from None


def token_certificate(session: Any, label: str) -> bytes:
    """The DER of the certificate object with this label.

    Raises:
        Pkcs11ObjectNotFound: none.
    """
    from pkcs11 import Attribute, ObjectClass

    for found in session.get_objects(
        {Attribute.CLASS: ObjectClass.CERTIFICATE, Attribute.LABEL: label}
    ):
        value: bytes = found[Attribute.VALUE]
        return value
    raise Pkcs11ObjectNotFound(f"The token holds no certificate labelled '{label}'.")


def pkcs11_signer(
    session: Any,
    *,
    key_label: str,
    certificate: x509.Certificate,
    chain: list[x509.Certificate],
) -> Any:
    """A pyHanko PKCS#11 signer; EC keys use the raw mechanism (SoftHSM lacks CKM_ECDSA_SHA256)."""
    signer = hanko_pkcs11.PKCS11Signer(
        session,
        key_label=key_label,
        signing_cert=_asn1(certificate),
        ca_chain=[_asn1(extra) for extra in chain],
        use_raw_mechanism=isinstance(
            certificate.public_key(), ec.EllipticCurvePublicKey
        ),
    )
    return freeze_signed_attributes(signer)


def check_token_key(
    session: Any, *, key_label: str, certificate: x509.Certificate
) -> None:
    """Sign a probe with the token's key and verify it with the certificate.

    Raises:
        Pkcs11ObjectNotFound: no private key with that label.
        KeyMismatch: the key does not belong to the certificate.
    """
    from pkcs11 import Attribute, ObjectClass

    if not list(
        session.get_objects(
            {Attribute.CLASS: ObjectClass.PRIVATE_KEY, Attribute.LABEL: key_label}
        )
    ):
        raise Pkcs11ObjectNotFound(
            f"The token holds no private key labelled '{key_label}'."
        )
    signer = pkcs11_signer(
        session, key_label=key_label, certificate=certificate, chain=[]
    )
    probe = b"signvault key check"
    # Registration runs in a worker thread (a sync route), where no event loop runs.
    signature = asyncio.run(signer.async_sign_raw(probe, "sha256"))
    public_key = certificate.public_key()
    try:
        if isinstance(public_key, rsa.RSAPublicKey):
            public_key.verify(signature, probe, padding.PKCS1v15(), hashes.SHA256())
        elif isinstance(public_key, ec.EllipticCurvePublicKey):
            public_key.verify(signature, probe, ec.ECDSA(hashes.SHA256()))
        elif isinstance(public_key, ed25519.Ed25519PublicKey):
            public_key.verify(signature, probe)
    except Exception:
        raise KeyMismatch(
            f"The token's key '{key_label}' does not belong to the certificate."
        ) from None


def _asn1(certificate: x509.Certificate) -> Any:
    return asn1_x509.Certificate.load(
        certificate.public_bytes(serialization.Encoding.DER)
    )
