"""Audit settings, retention checkpoints, the system seal, and search indexes.

Revision ID: a6audit
Revises: a4vault
Create Date: 2026-11-23 03:14:06.353754
"""

from collections.abc import Sequence
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision: str = "a6audit"
down_revision: str | None = "a4vault"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "audit_checkpoints",
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("through_seq", sa.BigInteger(), nullable=False),
        sa.Column("through_hash", sa.String(length=64), nullable=False),
        sa.Column("purged_count", sa.BigInteger(), nullable=False),
        sa.Column("total_purged", sa.BigInteger(), nullable=False),
        sa.Column("cutoff", sa.DateTime(timezone=True), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_checkpoints")),
        sa.UniqueConstraint(
            "through_seq", name=op.f("uq_audit_checkpoints_through_seq")
        ),
    )
    settings = op.create_table(
        "audit_settings",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("retention_days", sa.Integer(), nullable=True),
        sa.Column("audit_trail_enabled", sa.Boolean(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_settings")),
    )
    # One row: keep entries for ever, produce audit-trail reports.
    op.bulk_insert(
        settings,
        [
            {
                "id": 1,
                "retention_days": None,
                "audit_trail_enabled": True,
                "updated_at": datetime.now(UTC),
            }
        ],
    )
    op.create_table(
        "system_seals",
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("subject", sa.String(length=500), nullable=False),
        sa.Column("fingerprint_sha256", sa.String(length=64), nullable=False),
        sa.Column("not_after", sa.DateTime(timezone=True), nullable=False),
        sa.Column("certificate_der", sa.LargeBinary(), nullable=False),
        sa.Column("root_certificate_der", sa.LargeBinary(), nullable=False),
        sa.Column("sealed_private_key", sa.LargeBinary(), nullable=False),
        sa.Column("is_active", sa.Boolean(), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_system_seals")),
        sa.UniqueConstraint(
            "fingerprint_sha256", name=op.f("uq_system_seals_fingerprint_sha256")
        ),
    )
    with op.batch_alter_table("system_seals", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_system_seals_is_active"), ["is_active"], unique=False
        )

    if op.get_bind().dialect.name == "postgresql":
        # Byte-order comparisons: an action prefix ("certificate.") is an index range
        # whatever the database's locale (SQLite already compares bytes).
        op.alter_column(
            "audit_events",
            "action",
            type_=sa.String(length=100, collation="C"),
            existing_type=sa.String(length=100),
            existing_nullable=False,
        )
    with op.batch_alter_table("audit_events", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_audit_events_action"))
        batch_op.drop_index(batch_op.f("ix_audit_events_actor_id"))
        batch_op.drop_index(batch_op.f("ix_audit_events_resource"))
        batch_op.create_index(
            "ix_audit_events_resource",
            ["resource_type", "resource_id", "occurred_at"],
            unique=False,
        )
        batch_op.create_index(
            "ix_audit_events_action_time", ["action", "occurred_at"], unique=False
        )
        batch_op.create_index(
            "ix_audit_events_actor_time", ["actor_id", "occurred_at"], unique=False
        )
        batch_op.create_index(
            "ix_audit_events_ip_time", ["ip", "occurred_at"], unique=False
        )
        batch_op.create_index(
            "ix_audit_events_outcome_time", ["outcome", "occurred_at"], unique=False
        )


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.alter_column(
            "audit_events",
            "action",
            type_=sa.String(length=100),
            existing_type=sa.String(length=100, collation="C"),
            existing_nullable=False,
        )
    with op.batch_alter_table("audit_events", schema=None) as batch_op:
        batch_op.drop_index("ix_audit_events_outcome_time")
        batch_op.drop_index("ix_audit_events_ip_time")
        batch_op.drop_index("ix_audit_events_actor_time")
        batch_op.drop_index("ix_audit_events_action_time")
        batch_op.drop_index("ix_audit_events_resource")
        batch_op.create_index(
            batch_op.f("ix_audit_events_resource"),
            ["resource_type", "resource_id"],
            unique=False,
        )
        batch_op.create_index(
            batch_op.f("ix_audit_events_actor_id"), ["actor_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_audit_events_action"), ["action"], unique=False
        )

    with op.batch_alter_table("system_seals", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_system_seals_is_active"))

    op.drop_table("system_seals")
    op.drop_table("audit_settings")
    op.drop_table("audit_checkpoints")
