"""Signing batches and their items (one row per document).

Revision ID: a5batches
Revises: a5signatures
Create Date: 2026-11-23 04:00:14.273360
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "a5batches"
down_revision: str | None = "a5signatures"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "signing_batches",
        sa.Column("owner_kind", sa.String(length=16), nullable=False),
        sa.Column("owner_id", sa.Uuid(), nullable=False),
        sa.Column("owner_name", sa.String(length=200), nullable=False),
        sa.Column("owner_scope", sa.JSON(), nullable=True),
        sa.Column("options", sa.JSON(), nullable=False),
        sa.Column("request_sha256", sa.String(length=64), nullable=False),
        sa.Column("idempotency_key", sa.String(length=200), nullable=True),
        sa.Column("status", sa.String(length=32), nullable=False),
        sa.Column("total", sa.Integer(), nullable=False),
        sa.Column("succeeded", sa.Integer(), nullable=False),
        sa.Column("failed", sa.Integer(), nullable=False),
        sa.Column("claimed_by", sa.String(length=200), nullable=True),
        sa.Column("heartbeat_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_signing_batches")),
        sa.UniqueConstraint(
            "owner_kind",
            "owner_id",
            "idempotency_key",
            name="uq_signing_batches_idempotency_key",
        ),
    )
    with op.batch_alter_table("signing_batches", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_signing_batches_created_at"), ["created_at"], unique=False
        )
        batch_op.create_index(
            "ix_signing_batches_owner", ["owner_kind", "owner_id"], unique=False
        )
        batch_op.create_index(
            "ix_signing_batches_queue", ["status", "heartbeat_at"], unique=False
        )

    op.create_table(
        "signing_batch_items",
        sa.Column("batch_id", sa.Uuid(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("document_id", sa.Uuid(), nullable=False),
        sa.Column("status", sa.String(length=32), nullable=False),
        sa.Column("signature_id", sa.Uuid(), nullable=True),
        sa.Column("error_code", sa.String(length=100), nullable=True),
        sa.Column("error_detail", sa.Text(), nullable=True),
        sa.Column("finished_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.ForeignKeyConstraint(
            ["batch_id"],
            ["signing_batches.id"],
            name=op.f("fk_signing_batch_items_batch_id_signing_batches"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["signature_id"],
            ["signatures.id"],
            name=op.f("fk_signing_batch_items_signature_id_signatures"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_signing_batch_items")),
        sa.UniqueConstraint(
            "batch_id", "position", name="uq_signing_batch_items_position"
        ),
    )
    with op.batch_alter_table("signing_batch_items", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_signing_batch_items_batch_id"), ["batch_id"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("signing_batch_items", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_signing_batch_items_batch_id"))

    op.drop_table("signing_batch_items")
    with op.batch_alter_table("signing_batches", schema=None) as batch_op:
        batch_op.drop_index("ix_signing_batches_queue")
        batch_op.drop_index("ix_signing_batches_owner")
        batch_op.drop_index(batch_op.f("ix_signing_batches_created_at"))

    op.drop_table("signing_batches")
