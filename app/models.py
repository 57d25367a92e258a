"""Imports every feature's models so `Base.metadata` is complete (Alembic, tests)."""

from app.access.models import Department, Role, User, user_roles
from app.audit.models import AuditChainHead, AuditEvent
from app.auth.models import ApiClient, AuthSession, RefreshToken, RevokedAccessToken
from app.batches.models import Batch, BatchItem
from app.certificates.models import (
    CertificateAssignment,
    DefaultCertificate,
    SigningCertificate,
    VaultState,
)
from app.core.crypto import DataKey
from app.core.db import Base
from app.documents.models import Document, DocumentVersion
from app.license.models import LicenseStateRow, LicenseUsage
from app.signing.models import IdempotencyRecord, Signature

__all__ = [
    "ApiClient",
    "AuditChainHead",
    "AuditEvent",
    "AuthSession",
    "Base",
    "Batch",
    "BatchItem",
    "CertificateAssignment",
    "DataKey",
    "DefaultCertificate",
    "Department",
    "Document",
    "DocumentVersion",
    "IdempotencyRecord",
    "LicenseStateRow",
    "LicenseUsage",
    "RefreshToken",
    "RevokedAccessToken",
    "Role",
    "Signature",
    "SigningCertificate",
    "User",
    "VaultState",
    "user_roles",
]
