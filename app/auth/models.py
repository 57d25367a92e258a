import uuid
from datetime import datetime
from enum import StrEnum

from sqlalchemy import ForeignKey, Integer, LargeBinary, String, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from app.access.models import User
from app.core.db import Base, IdMixin, TimestampMixin
from app.core.types import enum_column_type, utcnow


class ClientStatus(StrEnum):
    ACTIVE = "active"
    DISABLED = "disabled"


class ApiClient(IdMixin, TimestampMixin, Base):
    """An OAuth2 machine client (client-credentials grant); its entitlements are its scopes."""

    __tablename__ = "api_clients"

    client_id: Mapped[str] = mapped_column(String(64), unique=True)
    name: Mapped[str] = mapped_column(String(200))
    description: Mapped[str] = mapped_column(Text, default="")
    secret_digest: Mapped[str] = mapped_column(String(64))
    entitlements: Mapped[list[str]] = mapped_column(default=list)
    status: Mapped[ClientStatus] = mapped_column(
        enum_column_type(ClientStatus), default=ClientStatus.ACTIVE
    )
    expires_at: Mapped[datetime | None]
    last_used_at: Mapped[datetime | None]
    secret_rotated_at: Mapped[datetime | None]
    created_by_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("users.id", ondelete="SET NULL"), index=True
    )
    department_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("departments.id", ondelete="RESTRICT"), index=True
    )

    created_by: Mapped[User | None] = relationship(lazy="raise")


class AuthSession(IdMixin, Base):
    """A login and its refresh-token family; revoking it ends every token issued in it."""

    __tablename__ = "auth_sessions"

    user_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), index=True
    )
    # The API client that authenticated at the password grant: RFC 7009 lets it
    # revoke the session's tokens with its own credentials.
    client_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("api_clients.id", ondelete="SET NULL")
    )
    scope: Mapped[list[str] | None]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime]
    revoked_at: Mapped[datetime | None]
    revoke_reason: Mapped[str | None] = mapped_column(String(64))


class RefreshToken(IdMixin, Base):
    __tablename__ = "refresh_tokens"

    session_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("auth_sessions.id", ondelete="CASCADE"), index=True
    )
    token_digest: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime]
    spent_at: Mapped[datetime | None]

    session: Mapped[AuthSession] = relationship(lazy="raise")


class RevokedAccessToken(Base):
    """Deny-list of access tokens by `jti`, kept until they would have expired anyway."""

    __tablename__ = "revoked_access_tokens"

    jti: Mapped[str] = mapped_column(String(64), primary_key=True)
    expires_at: Mapped[datetime] = mapped_column(index=True)
    revoked_at: Mapped[datetime] = mapped_column(default=utcnow)


class TokenSigningKey(Base):
    """An EC P-256 key that signs (the newest generation) or still verifies access tokens.

    Shared by every process and host through the database. A superseded key's
    private half is destroyed at once (it never signs again); its public half
    verifies until `retire_at`, when the last token it signed has expired. The
    row stays, so a key once retired is never imported again.
    """

    __tablename__ = "token_signing_keys"

    kid: Mapped[str] = mapped_column(String(32), primary_key=True)
    # The newest generation signs; a unique number makes racing creators collide.
    generation: Mapped[int] = mapped_column(Integer, unique=True)
    public_key_pem: Mapped[str] = mapped_column(Text)
    sealed_private_key: Mapped[bytes | None] = mapped_column(LargeBinary)
    source: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    superseded_at: Mapped[datetime | None]
    retire_at: Mapped[datetime | None]
