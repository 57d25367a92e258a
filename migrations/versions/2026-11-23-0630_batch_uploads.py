"""Batch items for uploaded files: the file name, and no document when the upload was refused.

Revision ID: b1batchuploads
Revises: a9profiles
Create Date: 2026-11-23 06:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "b1batchuploads"
down_revision: str | None = "a9profiles"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("signing_batch_items", schema=None) as batch_op:
        batch_op.add_column(sa.Column("filename", sa.String(length=255), nullable=True))
        batch_op.alter_column("document_id", existing_type=sa.Uuid(), nullable=True)


def downgrade() -> None:
    op.execute("DELETE FROM signing_batch_items WHERE document_id IS NULL")
    with op.batch_alter_table("signing_batch_items", schema=None) as batch_op:
        batch_op.alter_column("document_id", existing_type=sa.Uuid(), nullable=False)
        batch_op.drop_column("filename")
