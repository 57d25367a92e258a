"""Login sessions name the API client that authenticated at the password grant.

Revision ID: c6issue16
Revises: b1batchuploads
Create Date: 2026-12-05 13:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "c6issue16"
down_revision: str | None = "c3lockout"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("auth_sessions", schema=None) as batch_op:
        batch_op.add_column(sa.Column("client_id", sa.Uuid(), nullable=True))
        batch_op.create_foreign_key(
            batch_op.f("fk_auth_sessions_client_id_api_clients"),
            "api_clients",
            ["client_id"],
            ["id"],
            ondelete="SET NULL",
        )


def downgrade() -> None:
    with op.batch_alter_table("auth_sessions", schema=None) as batch_op:
        batch_op.drop_constraint(
            batch_op.f("fk_auth_sessions_client_id_api_clients"), type_="foreignkey"
        )
        batch_op.drop_column("client_id")
