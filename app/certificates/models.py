import uuid
from datetime import datetime
from enum import StrEnum
from typing import TYPE_CHECKING

from cryptography import x509
from sqlalchemy import (
    CheckConstraint,
    ForeignKey,
    Integer,
    LargeBinary,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.certificates.parsing import chain_summary
from app.core.db import Base, IdMixin, TimestampMixin
from app.core.types import enum_column_type, utcnow

if TYPE_CHECKING:
    from app.access.models import Department, User
    from app.auth.models import ApiClient


class KeyStore(StrEnum):
    PKCS12 = "pkcs12"
    PKCS11 = "pkcs11"


class StoredStatus(StrEnum):
    """The status an operator sets; `expired` is computed from the dates."""

    ACTIVE = "active"
    DISABLED = "disabled"
    REVOKED = "revoked"
    DELETED = "deleted"


class CertificateStatus(StrEnum):
    ACTIVE = "active"
    DISABLED = "disabled"
    EXPIRED = "expired"
    REVOKED = "revoked"
    DELETED = "deleted"


class SigningCertificate(IdMixin, TimestampMixin, Base):
    """A signing certificate with its key: sealed PKCS#8 in the database, or in an HSM."""

    __tablename__ = "signing_certificates"

    name: Mapped[str] = mapped_column(String(200))
    key_store: Mapped[KeyStore] = mapped_column(enum_column_type(KeyStore))
    stored_status: Mapped[StoredStatus] = mapped_column(
        enum_column_type(StoredStatus), default=StoredStatus.ACTIVE
    )
    subject: Mapped[str] = mapped_column(Text)
    subject_cn: Mapped[str | None] = mapped_column(String(400))
    subject_o: Mapped[str | None] = mapped_column(String(400))
    subject_email: Mapped[str | None] = mapped_column(String(320))
    issuer: Mapped[str] = mapped_column(Text)
    serial_number: Mapped[str] = mapped_column(String(80))
    not_before: Mapped[datetime]
    not_after: Mapped[datetime] = mapped_column(index=True)
    fingerprint_sha256: Mapped[str] = mapped_column(String(64), index=True)
    key_algorithm: Mapped[str] = mapped_column(String(16))
    key_size: Mapped[int] = mapped_column(Integer)
    key_curve: Mapped[str | None] = mapped_column(String(32))
    key_usage: Mapped[list[str]] = mapped_column(default=list)
    extended_key_usage: Mapped[list[str]] = mapped_column(default=list)
    certificate_der: Mapped[bytes] = mapped_column(LargeBinary)
    # The issuers from the import, leaf first excluded; public data, PEM.
    chain_pem: Mapped[str] = mapped_column(Text, default="")
    # PKCS#8 DER of the private key, sealed by the envelope cipher; None for HSM
    # keys and once the key material is destroyed.
    sealed_private_key: Mapped[bytes | None] = mapped_column(LargeBinary)
    pkcs11_token_label: Mapped[str | None] = mapped_column(String(200))
    pkcs11_key_label: Mapped[str | None] = mapped_column(String(200))
    pkcs11_cert_label: Mapped[str | None] = mapped_column(String(200))
    last_used_at: Mapped[datetime | None]
    disabled_at: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None]
    revocation_reason: Mapped[str | None] = mapped_column(String(400))
    deleted_at: Mapped[datetime | None]

    assignments: Mapped[list["CertificateAssignment"]] = relationship(
        back_populates="certificate",
        lazy="raise",
        cascade="all, delete-orphan",
        passive_deletes=True,
    )

    def chain_certificates(self) -> list[x509.Certificate]:
        return certificates_in_pem(self.chain_pem)

    @property
    def chain(self) -> list[dict[str, object]]:
        """The issuers kept from the import: public facts only."""
        return chain_summary(self.chain_certificates())

    @property
    def status(self) -> CertificateStatus:
        if self.stored_status in (StoredStatus.DELETED, StoredStatus.REVOKED):
            return CertificateStatus(self.stored_status.value)
        if self.not_after <= utcnow():
            return CertificateStatus.EXPIRED
        return CertificateStatus(self.stored_status.value)


class CertificateAssignment(IdMixin, Base):
    """Who may sign with a certificate: one user, one API client, or every member of one department."""

    __tablename__ = "certificate_assignments"
    __table_args__ = (
        CheckConstraint(
            "(CASE WHEN user_id IS NULL THEN 0 ELSE 1 END)"
            " + (CASE WHEN department_id IS NULL THEN 0 ELSE 1 END)"
            " + (CASE WHEN client_id IS NULL THEN 0 ELSE 1 END) = 1",
            name="one_assignee",
        ),
        UniqueConstraint(
            "certificate_id", "user_id", name="uq_certificate_assignments_user"
        ),
        UniqueConstraint(
            "certificate_id",
            "department_id",
            name="uq_certificate_assignments_department",
        ),
        UniqueConstraint(
            "certificate_id", "client_id", name="uq_certificate_assignments_client"
        ),
    )

    certificate_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("signing_certificates.id", ondelete="CASCADE"), index=True
    )
    user_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), index=True
    )
    department_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("departments.id", ondelete="RESTRICT"), index=True
    )
    client_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("api_clients.id", ondelete="CASCADE"), index=True
    )
    created_at: Mapped[datetime] = mapped_column(default=utcnow)

    certificate: Mapped[SigningCertificate] = relationship(
        back_populates="assignments", lazy="raise"
    )
    user: Mapped["User | None"] = relationship(lazy="raise")
    department: Mapped["Department | None"] = relationship(lazy="raise")
    client: Mapped["ApiClient | None"] = relationship(lazy="raise")


class VaultState(Base):
    """One row; `version` grows whenever a cached signer must be dropped in every process."""

    __tablename__ = "vault_state"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    version: Mapped[int] = mapped_column(Integer, default=0)


class DefaultCertificate(Base):
    """The certificate a user signs with when a sign request names none."""

    __tablename__ = "default_certificates"

    user_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), primary_key=True
    )
    certificate_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("signing_certificates.id", ondelete="CASCADE"), index=True
    )
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class ClientDefaultCertificate(Base):
    """The certificate an API client signs with when a sign request names none."""

    __tablename__ = "client_default_certificates"

    client_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("api_clients.id", ondelete="CASCADE"), primary_key=True
    )
    certificate_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("signing_certificates.id", ondelete="CASCADE"), index=True
    )
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


def certificates_in_pem(pem: str) -> list[x509.Certificate]:
    """The certificates of a PEM bundle, in order (none for an empty one)."""
    return x509.load_pem_x509_certificates(pem.encode()) if pem.strip() else []
