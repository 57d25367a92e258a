"""Failed logins per account and source address; the audit log keeps the peer address.

Failed logins no longer lock a user: the users' failure counter and lock time
go, and accounts they had locked are active again (their addresses start afresh).

Revision ID: c3lockout
Revises: b1batchuploads
Create Date: 2026-11-24 09:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "c3lockout"
down_revision: str | None = "b1batchuploads"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "login_failures",
        sa.Column("account", sa.String(length=150), nullable=False),
        sa.Column("source", sa.String(length=64), nullable=False),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.Column("last_failed_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("locked_until", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("account", "source", name=op.f("pk_login_failures")),
    )
    op.create_index(
        op.f("ix_login_failures_last_failed_at"),
        "login_failures",
        ["last_failed_at"],
        unique=False,
    )
    op.execute(
        "UPDATE users SET status = 'active' "
        "WHERE status = 'locked' AND locked_until IS NOT NULL"
    )
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.drop_column("failed_login_count")
        batch_op.drop_column("locked_until")
    with op.batch_alter_table("audit_events", schema=None) as batch_op:
        batch_op.add_column(sa.Column("peer_ip", sa.String(length=64), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("audit_events", schema=None) as batch_op:
        batch_op.drop_column("peer_ip")
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("locked_until", sa.DateTime(timezone=True), nullable=True)
        )
        batch_op.add_column(
            sa.Column(
                "failed_login_count", sa.Integer(), server_default="0", nullable=False
            )
        )
    op.drop_index(op.f("ix_login_failures_last_failed_at"), table_name="login_failures")
    op.drop_table("login_failures")
