"""Imports every feature's models so `Base.metadata` is complete (Alembic, tests)."""

from app.access.models import Department, Role, User, user_roles
from app.audit.models import AuditChainHead, AuditEvent
from app.auth.models import ApiClient, AuthSession, RefreshToken, RevokedAccessToken
from app.core.crypto import DataKey
from app.core.db import Base
from app.license.models import LicenseStateRow, LicenseUsage

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
    "RefreshToken",
    "RevokedAccessToken",
    "Role",
    "User",
    "user_roles",
]
