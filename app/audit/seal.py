"""The system seal: the server's own certificate, which signs the reports it issues.

Generated at first use as a two-certificate chain: a root made for this one
purpose, whose key is discarded once it has issued the seal certificate (so no
other certificate can ever chain to it), and the seal certificate, whose private
key is stored sealed by the envelope cipher. Relying parties trust the root.
"""

import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from app.audit import service as audit_service
from app.audit.errors import SealUnavailable
from app.audit.models import AuditSettings, SystemSeal
from app.core.crypto import CryptoError, EnvelopeCipher
from app.core.types import utcnow

PURPOSE = "system-seal"
VALIDITY = timedelta(days=3650)


@dataclass(frozen=True, slots=True)
class SealMaterial:
    seal: SystemSeal
    private_key_der: bytes  # PKCS#8, in memory only

    @property
    def chain_der(self) -> list[bytes]:
        return [self.seal.certificate_der, self.seal.root_certificate_der]


def _name(common_name: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "SignVault"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _issue(now: datetime) -> tuple[x509.Certificate, x509.Certificate, bytes]:
    root_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    seal_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    serial = x509.random_serial_number()
    root_name = _name(f"SignVault seal root {serial:x}"[:64])
    not_before, not_after = now - timedelta(hours=1), now + VALIDITY
    root = (
        x509.CertificateBuilder()
        .subject_name(root_name)
        .issuer_name(root_name)
        .public_key(root_key.public_key())
        .serial_number(serial)
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
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
        .add_extension(
            x509.SubjectKeyIdentifier.from_public_key(root_key.public_key()),
            critical=False,
        )
        .sign(root_key, hashes.SHA256())
    )
    seal = (
        x509.CertificateBuilder()
        .subject_name(_name("SignVault system seal"))
        .issuer_name(root_name)
        .public_key(seal_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=True,
                key_encipherment=False,
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
            x509.SubjectKeyIdentifier.from_public_key(seal_key.public_key()),
            critical=False,
        )
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(root_key.public_key()),
            critical=False,
        )
        .sign(root_key, hashes.SHA256())
    )
    key_der = seal_key.private_bytes(
        serialization.Encoding.DER,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return seal, root, key_der


def fingerprint(certificate_der: bytes) -> str:
    """The SHA-256 of the certificate's DER, in hex: how seals are named."""
    return hashlib.sha256(certificate_der).hexdigest()


def _create(session: Session, cipher: EnvelopeCipher) -> SealMaterial:
    certificate, root, key_der = _issue(utcnow())
    der = certificate.public_bytes(serialization.Encoding.DER)
    seal = SystemSeal(
        subject=certificate.subject.rfc4514_string(),
        fingerprint_sha256=fingerprint(der),
        not_after=certificate.not_valid_after_utc,
        certificate_der=der,
        root_certificate_der=root.public_bytes(serialization.Encoding.DER),
        sealed_private_key=cipher.seal(session, key_der, purpose=PURPOSE),
    )
    session.add(seal)
    session.flush()
    return SealMaterial(seal, key_der)


def _require(cipher: EnvelopeCipher | None) -> EnvelopeCipher:
    if cipher is None:
        raise SealUnavailable(
            "No master key is loaded, so the system seal cannot sign."
        )
    return cipher


def active_seal(session: Session, cipher: EnvelopeCipher | None) -> SealMaterial:
    """The active seal and its key, generated on first use.

    Raises:
        SealUnavailable: no master key is loaded, or it cannot open the seal's key.
    """
    cipher = _require(cipher)
    # Serialises first use: two requests must not both generate a seal.
    session.execute(
        select(AuditSettings.id).where(AuditSettings.id == 1).with_for_update()
    )
    seal = session.scalars(
        select(SystemSeal).where(SystemSeal.is_active.is_(True))
    ).first()
    if seal is None:
        material = _create(session, cipher)
        audit_service.record(
            session,
            actor=audit_service.SYSTEM,
            action="audit.seal_created",
            resource_type="system_seal",
            resource_id=material.seal.id,
            details={"fingerprint_sha256": material.seal.fingerprint_sha256},
        )
        return material
    try:
        key_der = cipher.open(session, seal.sealed_private_key, purpose=PURPOSE)
    except CryptoError as exc:
        raise SealUnavailable(
            f"The system seal's key cannot be opened: {exc}."
        ) from None
    return SealMaterial(seal, key_der)


def rotate(
    session: Session, cipher: EnvelopeCipher | None, *, actor: audit_service.Actor
) -> SystemSeal:
    """Retire the active seal (its key is destroyed) and generate a new one.

    Raises:
        SealUnavailable: no master key is loaded.
    """
    cipher = _require(cipher)
    session.execute(
        select(AuditSettings.id).where(AuditSettings.id == 1).with_for_update()
    )
    retired = list(
        session.scalars(select(SystemSeal).where(SystemSeal.is_active.is_(True)))
    )
    for old in retired:
        cipher.destroy(session, old.sealed_private_key)
    session.execute(
        update(SystemSeal).where(SystemSeal.is_active.is_(True)).values(is_active=False)
    )
    material = _create(session, cipher)
    audit_service.record(
        session,
        actor=actor,
        action="audit.seal_rotated",
        resource_type="system_seal",
        resource_id=material.seal.id,
        details={
            "fingerprint_sha256": material.seal.fingerprint_sha256,
            "retired": [old.fingerprint_sha256 for old in retired],
        },
    )
    return material.seal


def certificate_pem(der: bytes) -> str:
    return (
        x509.load_der_x509_certificate(der)
        .public_bytes(serialization.Encoding.PEM)
        .decode()
    )
