"""Licence: the installed licence file, the evaluation start, signature counters.

Revision ID: a8license
Revises: a1departments
Create Date: 2026-11-23 03:13:29.919225
"""

from collections.abc import Sequence
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision: str = "a8license"
down_revision: str | None = "a1departments"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    state = op.create_table(
        "license_state",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("evaluation_started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("license_text", sa.Text(), nullable=True),
        sa.Column("installed_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("installed_by", sa.String(length=200), nullable=True),
        sa.Column("expiry_warned_days", sa.Integer(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_license_state")),
    )
    usage = op.create_table(
        "license_usage",
        sa.Column("period", sa.String(length=7), nullable=False),
        sa.Column("signatures", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("period", name=op.f("pk_license_usage")),
    )
    # The evaluation period starts with the database: the first `signvault serve`
    # (or `migrate`) creates it.
    op.bulk_insert(state, [{"id": 1, "evaluation_started_at": datetime.now(UTC)}])
    op.bulk_insert(usage, [{"period": "total", "signatures": 0}])


def downgrade() -> None:
    op.drop_table("license_usage")
    op.drop_table("license_state")
