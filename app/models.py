"""Imports every feature's models so `Base.metadata` is complete (Alembic, tests)."""

from app.access.models import (
    Department,
    PasswordHistory,
    RateLimitWindow,
    Role,
    User,
    user_roles,
)
from app.audit.models import AuditChainHead, AuditEvent
from app.auth.models import ApiClient, AuthSession, RefreshToken, RevokedAccessToken
from app.core.crypto import DataKey
from app.core.db import Base
from app.license.models import LicenseStateRow, LicenseUsage
from app.settings.models import SettingsSection

__all__ = [
    "ApiClient",
    "AuditChainHead",
    "AuditEvent",
    "AuthSession",
    "Base",
    "DataKey",
    "Department",
    "LicenseStateRow",
    "LicenseUsage",
    "PasswordHistory",
    "RateLimitWindow",
    "RefreshToken",
    "RevokedAccessToken",
    "Role",
    "SettingsSection",
    "User",
    "user_roles",
]
