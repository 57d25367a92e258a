"""Imports every feature's models so `Base.metadata` is complete (Alembic, tests)."""

from app.access.models import Department, Role, User, user_roles
from app.audit.models import (
    AuditChainHead,
    AuditCheckpoint,
    AuditEvent,
    AuditSettings,
    SystemSeal,
)
from app.auth.models import ApiClient, AuthSession, RefreshToken, RevokedAccessToken
from app.core.crypto import DataKey
from app.core.db import Base

__all__ = [
    "ApiClient",
    "AuditChainHead",
    "AuditCheckpoint",
    "AuditEvent",
    "AuditSettings",
    "AuthSession",
    "Base",
    "DataKey",
    "Department",
    "RefreshToken",
    "RevokedAccessToken",
    "Role",
    "SystemSeal",
    "User",
    "user_roles",
]
