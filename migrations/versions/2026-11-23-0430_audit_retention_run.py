"""When the daily audit retention run was last claimed.

Revision ID: a6retention
Revises: a5batches
Create Date: 2026-11-23 04:25:45.777805
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "a6retention"
down_revision: str | None = "a5batches"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("audit_settings", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("retention_run_at", sa.DateTime(timezone=True), nullable=True)
        )


def downgrade() -> None:
    with op.batch_alter_table("audit_settings", schema=None) as batch_op:
        batch_op.drop_column("retention_run_at")
