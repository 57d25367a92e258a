"""Certificates and keys made with `cryptography` for the tests (no AIA/CRL pointers: pdfsig trusts them)."""

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from app.signing.engine import CachedKeySigner, PrivateKey


@dataclass(frozen=True)
class Issued:
    certificate: x509.Certificate
    key: PrivateKey

    @property
    def asn1(self) -> asn1_x509.Certificate:
        return asn1_x509.Certificate.load(
            self.certificate.public_bytes(serialization.Encoding.DER)
        )

    @property
    def pem(self) -> bytes:
        return self.certificate.public_bytes(serialization.Encoding.PEM)


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "SignVault Tests"),
        ]
    )


def make_ca(common_name: str = "SignVault Test CA") -> Issued:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(_name(common_name))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(True, False, False, False, False, True, True, False, False),
            critical=True,
        )
        .sign(key, hashes.SHA256())
    )
    return Issued(cert, key)


def issue(
    ca: Issued,
    common_name: str,
    *,
    key_type: str = "rsa2048",
    valid_days: int = 365,
    key_usage_sign: bool = True,
) -> Issued:
    key: PrivateKey = (
        ec.generate_private_key(ec.SECP256R1())
        if key_type == "p256"
        else rsa.generate_private_key(public_exponent=65537, key_size=2048)
    )
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name(common_name))
        .issuer_name(ca.certificate.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=valid_days))
        .add_extension(
            x509.KeyUsage(
                key_usage_sign,
                key_usage_sign,
                not key_usage_sign,
                False,
                False,
                False,
                False,
                False,
                False,
            ),
            critical=True,
        )
        .sign(ca.key, hashes.SHA256())
    )
    return Issued(cert, key)


def signer_of(issued: Issued, ca: Issued) -> CachedKeySigner:
    return CachedKeySigner(
        certificate=issued.asn1, private_key=issued.key, chain=[ca.asn1]
    )
