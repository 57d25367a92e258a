import uuid
from datetime import datetime
from enum import StrEnum

from sqlalchemy import (
    BigInteger,
    Column,
    ForeignKey,
    Integer,
    LargeBinary,
    String,
    Table,
    Text,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship, validates

from app.core.db import Base, IdMixin, TimestampMixin
from app.core.types import enum_column_type, name_key, utcnow


class UserStatus(StrEnum):
    ACTIVE = "active"
    DISABLED = "disabled"
    LOCKED = "locked"


user_roles = Table(
    "user_roles",
    Base.metadata,
    Column("user_id", ForeignKey("users.id", ondelete="CASCADE"), primary_key=True),
    Column(
        "role_id",
        ForeignKey("roles.id", ondelete="RESTRICT"),
        primary_key=True,
        index=True,
    ),
)


class Department(IdMixin, TimestampMixin, Base):
    __tablename__ = "departments"

    name: Mapped[str] = mapped_column(String(200), unique=True)
    # name_key(name): uniqueness ignores case, the same way on every database.
    name_key: Mapped[str] = mapped_column(String(800), unique=True)
    description: Mapped[str] = mapped_column(Text, default="")

    @validates("name")
    def _keep_name_key(self, _attribute: str, name: str) -> str:
        self.name_key = name_key(name)
        return name


class Role(IdMixin, TimestampMixin, Base):
    __tablename__ = "roles"

    name: Mapped[str] = mapped_column(String(100), unique=True)
    name_key: Mapped[str] = mapped_column(String(400), unique=True)
    description: Mapped[str] = mapped_column(Text, default="")
    is_builtin: Mapped[bool] = mapped_column(default=False)
    entitlements: Mapped[list[str]] = mapped_column(default=list)

    @validates("name")
    def _keep_name_key(self, _attribute: str, name: str) -> str:
        self.name_key = name_key(name)
        return name


class User(IdMixin, TimestampMixin, Base):
    __tablename__ = "users"

    username: Mapped[str] = mapped_column(String(150))
    # name_key(username): uniqueness and lookup ignore case.
    username_key: Mapped[str] = mapped_column(String(600), unique=True)
    email: Mapped[str | None] = mapped_column(String(320))
    full_name: Mapped[str] = mapped_column(String(200), default="")
    password_hash: Mapped[str] = mapped_column(String(255))
    status: Mapped[UserStatus] = mapped_column(
        enum_column_type(UserStatus), default=UserStatus.ACTIVE
    )
    last_login_at: Mapped[datetime | None]
    password_changed_at: Mapped[datetime | None]
    department_id: Mapped[uuid.UUID | None] = mapped_column(
        ForeignKey("departments.id", ondelete="RESTRICT"), index=True
    )
    must_change_password: Mapped[bool] = mapped_column(
        default=False, server_default="0"
    )
    # TOTP seeds, sealed by the envelope cipher (never stored in clear).
    totp_seed: Mapped[bytes | None] = mapped_column(LargeBinary)
    totp_pending_seed: Mapped[bytes | None] = mapped_column(LargeBinary)
    totp_enabled_at: Mapped[datetime | None]
    # The last accepted TOTP time step: a code is never accepted twice.
    totp_last_step: Mapped[int | None] = mapped_column(BigInteger)

    roles: Mapped[list[Role]] = relationship(secondary=user_roles, lazy="raise")
    department: Mapped[Department | None] = relationship(lazy="raise")

    @property
    def entitlements(self) -> frozenset[str]:
        return frozenset(e for role in self.roles for e in role.entitlements)

    @property
    def role_ids(self) -> list[uuid.UUID]:
        return [role.id for role in self.roles]

    @property
    def two_factor_enabled(self) -> bool:
        return self.totp_seed is not None


class PasswordHistory(IdMixin, Base):
    """Hashes of a user's earlier passwords, for the policy's `history` rule."""

    __tablename__ = "password_history"

    user_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("users.id", ondelete="CASCADE"), index=True
    )
    password_hash: Mapped[str] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class LoginFailure(Base):
    """Failed logins against one account name from one source address (see access.lockout).

    `account` is the lower-cased name as typed, whether or not such a user
    exists; the source `*` holds the account's failures from every address.
    Incremented with one atomic upsert, so every worker process and host agrees.
    """

    __tablename__ = "login_failures"

    account: Mapped[str] = mapped_column(String(150), primary_key=True)
    source: Mapped[str] = mapped_column(String(64), primary_key=True)
    count: Mapped[int] = mapped_column(Integer, default=0)
    last_failed_at: Mapped[datetime] = mapped_column(index=True)
    # This address may not try this account again before then.
    locked_until: Mapped[datetime | None]


class RateLimitWindow(Base):
    """A fixed one-minute window's request count for one bucket (a principal or an IP).

    Shared by every worker process: incremented with one atomic upsert.
    """

    __tablename__ = "rate_limit_windows"

    bucket: Mapped[str] = mapped_column(String(200), primary_key=True)
    window_start: Mapped[int] = mapped_column(
        BigInteger, primary_key=True, autoincrement=False
    )
    count: Mapped[int] = mapped_column(Integer, default=0)
