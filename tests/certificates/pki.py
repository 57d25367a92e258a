"""Keys, certificates and PKCS#12 files made in the test, never committed."""

import subprocess
import tempfile
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Literal

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from cryptography.hazmat.primitives.asymmetric.types import (
    CertificateIssuerPrivateKeyTypes,
)
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import NameOID

from app.core.types import utcnow

KeyType = Literal[
    "rsa2048", "rsa3072", "rsa1024", "p256", "p384", "p521", "ed25519", "ed448"
]


def make_key(kind: KeyType) -> CertificateIssuerPrivateKeyTypes:
    if kind.startswith("rsa"):
        return rsa.generate_private_key(public_exponent=65537, key_size=int(kind[3:]))
    if kind in ("p256", "p384", "p521"):
        curve = {"p256": ec.SECP256R1(), "p384": ec.SECP384R1(), "p521": ec.SECP521R1()}
        return ec.generate_private_key(curve[kind])
    if kind == "ed25519":
        return ed25519.Ed25519PrivateKey.generate()
    return ed448.Ed448PrivateKey.generate()


@dataclass(frozen=True)
class Issued:
    key: CertificateIssuerPrivateKeyTypes
    certificate: x509.Certificate

    def key_pkcs8_der(self) -> bytes:
        return self.key.private_bytes(
            serialization.Encoding.DER,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )

    def key_pem(self) -> bytes:
        return self.key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )

    def certificate_pem(self) -> bytes:
        return self.certificate.public_bytes(serialization.Encoding.PEM)

    def certificate_der(self) -> bytes:
        return self.certificate.public_bytes(serialization.Encoding.DER)


def _name(cn: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.COMMON_NAME, cn),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "SignVault Tests"),
        ]
    )


def make_ca(cn: str = "Test Root CA") -> Issued:
    key = make_key("p256")
    now = utcnow()
    certificate = (
        x509.CertificateBuilder()
        .subject_name(_name(cn))
        .issuer_name(_name(cn))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(key, hashes.SHA256())
    )
    return Issued(key, certificate)


def make_signer(
    ca: Issued,
    *,
    cn: str = "Jane Signer",
    key_type: KeyType = "p256",
    key: CertificateIssuerPrivateKeyTypes | None = None,
    not_before: datetime | None = None,
    not_after: datetime | None = None,
    signing_usage: bool = True,
    email: str | None = "jane@example.test",
) -> Issued:
    key = key or make_key(key_type)
    now = utcnow()
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(cn))
        .issuer_name(ca.certificate.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before or now - timedelta(hours=1))
        .not_valid_after(not_after or now + timedelta(days=365))
        .add_extension(
            x509.KeyUsage(
                digital_signature=signing_usage,
                content_commitment=signing_usage,
                key_encipherment=not signing_usage,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.EMAIL_PROTECTION]),
            critical=False,
        )
    )
    if email:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.RFC822Name(email)]), critical=False
        )
    return Issued(key, builder.sign(ca.key, hashes.SHA256()))


Encryption = Literal["aes", "3des"]


def make_pkcs12(
    signer: Issued,
    password: str,
    *,
    chain: tuple[Issued, ...] = (),
    encryption: Encryption = "aes",
    key_only: bool = False,
    certificate_only: bool = False,
) -> bytes:
    """A PKCS#12 file: AES-256 (PBES2) or legacy 3DES (PBES1, SHA-1 MAC)."""
    builder = serialization.PrivateFormat.PKCS12.encryption_builder().kdf_rounds(2048)
    if encryption == "3des":
        builder = builder.key_cert_algorithm(
            pkcs12.PBES.PBESv1SHA1And3KeyTripleDESCBC
        ).hmac_hash(hashes.SHA1())  # noqa: S303 (the legacy format under test)
    else:
        builder = builder.key_cert_algorithm(
            pkcs12.PBES.PBESv2SHA256AndAES256CBC
        ).hmac_hash(hashes.SHA256())
    return pkcs12.serialize_key_and_certificates(
        b"test",
        None if certificate_only else signer.key,  # type: ignore[arg-type]
        None if key_only else signer.certificate,
        [extra.certificate for extra in chain] or None,
        builder.build(password.encode()),
    )


def make_rc2_pkcs12(signer: Issued, password: str) -> bytes | None:
    """A legacy RC2-40 file made by the openssl command; None without a legacy provider."""
    with tempfile.TemporaryDirectory() as work:
        folder = Path(work)
        (folder / "key.pem").write_bytes(signer.key_pem())
        (folder / "cert.pem").write_bytes(signer.certificate_pem())
        result = subprocess.run(  # noqa: S603
            [  # noqa: S607
                "openssl",
                "pkcs12",
                "-export",
                "-legacy",
                "-certpbe",
                "PBE-SHA1-RC2-40",
                "-keypbe",
                "PBE-SHA1-RC2-40",
                "-inkey",
                str(folder / "key.pem"),
                "-in",
                str(folder / "cert.pem"),
                "-out",
                str(folder / "out.p12"),
                "-passout",
                f"pass:{password}",
            ],
            capture_output=True,
            check=False,
        )
        if result.returncode != 0:
            return None
        return (folder / "out.p12").read_bytes()
