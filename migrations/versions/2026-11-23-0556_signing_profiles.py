"""Signing profiles: named sets of sign options that sign requests can name.

Revision ID: a9profiles
Revises: a7notifications
Create Date: 2026-11-23 05:56:43.506699
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "a9profiles"
down_revision: str | None = "a7notifications"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "signing_profiles",
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("level", sa.String(length=8), nullable=True),
        sa.Column("tsa_url", sa.String(length=500), nullable=True),
        sa.Column("certify", sa.String(length=32), nullable=True),
        sa.Column("appearance", sa.JSON(), nullable=True),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_signing_profiles")),
        sa.UniqueConstraint("name", name=op.f("uq_signing_profiles_name")),
    )


def downgrade() -> None:
    op.drop_table("signing_profiles")
