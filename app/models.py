"""Imports every feature's models so `Base.metadata` is complete (Alembic, tests)."""

from app.access.models import (
    Department,
    PasswordHistory,
    RateLimitWindow,
    Role,
    User,
    user_roles,
)
from app.audit.models import (
    AuditChainHead,
    AuditCheckpoint,
    AuditEvent,
    AuditSettings,
    SystemSeal,
)
from app.auth.models import (
    ApiClient,
    AuthSession,
    RefreshToken,
    RevokedAccessToken,
    TokenSigningKey,
)
from app.batches.models import Batch, BatchItem
from app.certificates.models import (
    CertificateAssignment,
    ClientDefaultCertificate,
    DefaultCertificate,
    SigningCertificate,
    VaultState,
)
from app.core.crypto import DataKey
from app.core.db import Base
from app.documents.models import Document, DocumentVersion
from app.license.models import LicenseStateRow, LicenseUsage
from app.notifications.models import (
    Delivery,
    NotificationMark,
    NotificationRule,
    OutboxEvent,
    ScheduledJob,
)
from app.settings.models import SettingsSection
from app.signing.models import IdempotencyRecord, Signature
from app.signing_profiles.models import SigningProfile

__all__ = [
    "ApiClient",
    "AuditChainHead",
    "AuditCheckpoint",
    "AuditEvent",
    "AuditSettings",
    "AuthSession",
    "Base",
    "Batch",
    "BatchItem",
    "CertificateAssignment",
    "ClientDefaultCertificate",
    "DataKey",
    "DefaultCertificate",
    "Delivery",
    "Department",
    "Document",
    "DocumentVersion",
    "IdempotencyRecord",
    "LicenseStateRow",
    "LicenseUsage",
    "NotificationMark",
    "NotificationRule",
    "OutboxEvent",
    "PasswordHistory",
    "RateLimitWindow",
    "RefreshToken",
    "RevokedAccessToken",
    "Role",
    "ScheduledJob",
    "SettingsSection",
    "Signature",
    "SigningCertificate",
    "SigningProfile",
    "SystemSeal",
    "TokenSigningKey",
    "User",
    "VaultState",
    "user_roles",
]
