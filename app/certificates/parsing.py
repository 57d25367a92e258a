"""Reading PKCS#12 files and certificates, and deciding whether the vault accepts them.

Every refusal is a distinct `ImportRefused` subclass; nothing here touches the database.
"""

import hashlib
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from asn1crypto import pkcs12 as asn1_pkcs12
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.asymmetric.types import (
    CertificatePublicKeyTypes,
    PrivateKeyTypes,
)
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from app.certificates.errors import (
    CertificateExpired,
    CertificateNotYetValid,
    InvalidCertificate,
    KeyMismatch,
    KeyUsageNotSigning,
    NoCertificate,
    NoPrivateKey,
    NotPkcs12,
    Pkcs12TooLarge,
    UnsupportedKeyType,
    WrongPassword,
)
from app.certificates.pkcs12_cost import check_kdf_cost
from app.core.types import utcnow

SUPPORTED_CURVES = {"secp256r1": "P-256", "secp384r1": "P-384"}
RSA_SIZES = range(2048, 4097)

_KEY_USAGE_FLAGS = (
    "digital_signature",
    "content_commitment",
    "key_encipherment",
    "data_encipherment",
    "key_agreement",
    "key_cert_sign",
    "crl_sign",
)
_EKU_NAMES = {
    oid.dotted_string: name.lower()
    for name, oid in vars(ExtendedKeyUsageOID).items()
    if isinstance(oid, x509.ObjectIdentifier)
}


@dataclass(frozen=True)
class KeyDescription:
    algorithm: str
    size: int
    curve: str | None = None


@dataclass(frozen=True)
class CertificateDetails:
    """The public metadata the vault stores and lists."""

    subject: str
    subject_cn: str | None
    subject_o: str | None
    subject_email: str | None
    issuer: str
    serial_number: str
    not_before: datetime
    not_after: datetime
    fingerprint_sha256: str
    key_algorithm: str
    key_size: int
    key_curve: str | None
    key_usage: list[str]
    extended_key_usage: list[str]
    certificate_der: bytes
    chain_pem: str


@dataclass(frozen=True)
class Pkcs12Contents:
    certificate: x509.Certificate
    private_key: PrivateKeyTypes
    chain: list[x509.Certificate] = field(default_factory=list)

    def private_key_pkcs8(self) -> bytes:
        return self.private_key.private_bytes(
            serialization.Encoding.DER,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )


def load_pkcs12(
    data: bytes, password: str, *, max_bytes: int, max_iterations: int
) -> Pkcs12Contents:
    """Open a PKCS#12 file (modern AES or legacy 3DES/RC2 encryption) and check it.

    Raises:
        ImportRefused: one subclass per reason the file is not accepted.
    """
    contents = open_pkcs12(
        data, password, max_bytes=max_bytes, max_iterations=max_iterations
    )
    check_signing_certificate(contents.certificate)
    return contents


def open_pkcs12(
    data: bytes, password: str, *, max_bytes: int, max_iterations: int
) -> Pkcs12Contents:
    """Open a PKCS#12 file and pair its key with its certificate, without judging the certificate.

    Every key-derivation count is checked against `max_iterations` before
    one runs (see `pkcs12_cost`).

    Raises:
        NotPkcs12, Pkcs12TooLarge, Pkcs12KdfTooCostly, Pkcs12UnsupportedProtection,
        WrongPassword, NoPrivateKey, NoCertificate, KeyMismatch, UnsupportedKeyType.
    """
    if len(data) > max_bytes:
        raise Pkcs12TooLarge(
            f"The file has {len(data)} bytes; the limit is {max_bytes} bytes."
        )
    if not looks_like_pkcs12(data):
        raise NotPkcs12("The file is not a PKCS#12 (.p12/.pfx) archive.")
    check_kdf_cost(data, password, max_iterations=max_iterations)
    try:
        bundle = pkcs12.load_pkcs12(data, password.encode() if password else None)
    except ValueError:
        raise WrongPassword("The password does not open this PKCS#12 file.") from None
    if bundle.key is None:
        raise NoPrivateKey("The PKCS#12 file holds no private key.")
    if bundle.cert is None:
        # The parser pairs the key with the certificate that matches it; certificates
        # without a match mean the file's certificate is not the key's.
        if bundle.additional_certs:
            raise KeyMismatch(
                "None of the file's certificates belongs to its private key."
            )
        raise NoCertificate("The PKCS#12 file holds no certificate.")
    certificate = bundle.cert.certificate
    key: PrivateKeyTypes = bundle.key
    describe_key(certificate.public_key())
    if _public_der(key.public_key()) != _public_der(certificate.public_key()):
        raise KeyMismatch("The private key does not belong to the certificate.")
    return Pkcs12Contents(
        certificate, key, [extra.certificate for extra in bundle.additional_certs]
    )


def load_certificate(data: bytes) -> x509.Certificate:
    """A certificate in PEM or DER.

    Raises:
        InvalidCertificate: neither.
    """
    try:
        if data.lstrip().startswith(b"-----BEGIN"):
            return x509.load_pem_x509_certificate(data)
        return x509.load_der_x509_certificate(data)
    except ValueError:
        raise InvalidCertificate("The data is not an X.509 certificate.") from None


def check_signing_certificate(certificate: x509.Certificate) -> None:
    """Refuse a certificate that cannot make a valid signature now.

    Raises:
        UnsupportedKeyType, CertificateExpired, CertificateNotYetValid, KeyUsageNotSigning.
    """
    describe_key(certificate.public_key())
    now = utcnow()
    if certificate.not_valid_after_utc <= now:
        raise CertificateExpired(
            f"The certificate expired on {certificate.not_valid_after_utc.isoformat()}."
        )
    if certificate.not_valid_before_utc > now:
        raise CertificateNotYetValid(
            f"The certificate is valid only from {certificate.not_valid_before_utc.isoformat()}."
        )
    usage = _key_usage(certificate)
    if usage and not {"digital_signature", "content_commitment"} & set(usage):
        raise KeyUsageNotSigning(
            "The certificate's key usage allows neither digitalSignature nor nonRepudiation."
        )


def describe_key(public_key: CertificatePublicKeyTypes) -> KeyDescription:
    """Raises: UnsupportedKeyType (anything but RSA 2048-4096, P-256, P-384, Ed25519)."""
    if isinstance(public_key, rsa.RSAPublicKey):
        if public_key.key_size not in RSA_SIZES:
            raise UnsupportedKeyType(
                f"RSA keys must be 2048 to 4096 bits, not {public_key.key_size}."
            )
        return KeyDescription("rsa", public_key.key_size)
    if isinstance(public_key, ec.EllipticCurvePublicKey):
        curve = SUPPORTED_CURVES.get(public_key.curve.name)
        if curve is None:
            raise UnsupportedKeyType(
                f"EC keys must be on P-256 or P-384, not {public_key.curve.name}."
            )
        return KeyDescription("ecdsa", public_key.curve.key_size, curve)
    if isinstance(public_key, ed25519.Ed25519PublicKey):
        return KeyDescription("ed25519", 256)
    raise UnsupportedKeyType(
        f"Unsupported key type {type(public_key).__name__.removesuffix('PublicKey').lstrip('_')}: "
        "use RSA 2048-4096, ECDSA P-256/P-384 or Ed25519."
    )


def certificate_details(
    certificate: x509.Certificate, chain: list[x509.Certificate]
) -> CertificateDetails:
    key = describe_key(certificate.public_key())
    der = certificate.public_bytes(serialization.Encoding.DER)
    return CertificateDetails(
        subject=certificate.subject.rfc4514_string(),
        subject_cn=_name_part(certificate.subject, NameOID.COMMON_NAME),
        subject_o=_name_part(certificate.subject, NameOID.ORGANIZATION_NAME),
        subject_email=_email(certificate),
        issuer=certificate.issuer.rfc4514_string(),
        serial_number=format(certificate.serial_number, "x"),
        not_before=certificate.not_valid_before_utc,
        not_after=certificate.not_valid_after_utc,
        fingerprint_sha256=hashlib.sha256(der).hexdigest(),
        key_algorithm=key.algorithm,
        key_size=key.size,
        key_curve=key.curve,
        key_usage=_key_usage(certificate),
        extended_key_usage=_extended_key_usage(certificate),
        certificate_der=der,
        chain_pem="".join(to_pem(extra) for extra in chain),
    )


def chain_summary(chain: list[x509.Certificate]) -> list[dict[str, object]]:
    """Public facts about each issuer certificate."""
    return [
        {
            "subject": issuer.subject.rfc4514_string(),
            "issuer": issuer.issuer.rfc4514_string(),
            "not_after": issuer.not_valid_after_utc,
            "fingerprint_sha256": issuer.fingerprint(hashes.SHA256()).hex(),
        }
        for issuer in chain
    ]


def to_pem(certificate: x509.Certificate) -> str:
    return certificate.public_bytes(serialization.Encoding.PEM).decode()


def looks_like_pkcs12(data: bytes) -> bool:
    try:
        pfx = asn1_pkcs12.Pfx.load(data, strict=True)
        content_type: Any = pfx["auth_safe"]["content_type"].native
    except (ValueError, TypeError, KeyError):
        return False
    return pfx["version"].native == "v3" and content_type in {"data", "signed_data"}


def _public_der(public_key: Any) -> bytes:
    der: bytes = public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return der


def _name_part(name: x509.Name, oid: x509.ObjectIdentifier) -> str | None:
    values = name.get_attributes_for_oid(oid)
    return str(values[0].value) if values else None


def _email(certificate: x509.Certificate) -> str | None:
    try:
        san = certificate.extensions.get_extension_for_class(
            x509.SubjectAlternativeName
        ).value
    except x509.ExtensionNotFound:
        san = None
    if san is not None:
        emails = san.get_values_for_type(x509.RFC822Name)
        if emails:
            return emails[0]
    return _name_part(certificate.subject, NameOID.EMAIL_ADDRESS)


def _key_usage(certificate: x509.Certificate) -> list[str]:
    try:
        usage = certificate.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        return []
    return [flag for flag in _KEY_USAGE_FLAGS if getattr(usage, flag)]


def _extended_key_usage(certificate: x509.Certificate) -> list[str]:
    try:
        usage = certificate.extensions.get_extension_for_class(
            x509.ExtendedKeyUsage
        ).value
    except x509.ExtensionNotFound:
        return []
    return [_EKU_NAMES.get(oid.dotted_string, oid.dotted_string) for oid in usage]
