"""Signing helpers over the test PKI of tests/certificates/pki.py."""

from asn1crypto import x509 as asn1_x509
from cryptography.hazmat.primitives import serialization

from app.signing.engine import CachedKeySigner, PrivateKey
from tests.certificates.pki import Issued, make_ca, make_signer

__all__ = ["Issued", "asn1_of", "issue", "make_ca", "pem_of", "signer_of"]


def asn1_of(issued: Issued) -> asn1_x509.Certificate:
    return asn1_x509.Certificate.load(issued.certificate_der())


def pem_of(issued: Issued) -> bytes:
    return issued.certificate.public_bytes(serialization.Encoding.PEM)


def issue(ca: Issued, common_name: str, *, key_type: str = "rsa2048") -> Issued:
    return make_signer(
        ca, cn=common_name, key_type="p256" if key_type == "p256" else "rsa2048"
    )


def signer_of(issued: Issued, ca: Issued) -> CachedKeySigner:
    key = issued.key
    assert isinstance(key, PrivateKey)
    return CachedKeySigner(
        certificate=asn1_of(issued), private_key=key, chain=[asn1_of(ca)]
    )
