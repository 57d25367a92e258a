"""Indexes that give lists their order with its tiebreaker (issue #17's soak).

A time-ordered audit search ends `ORDER BY occurred_at DESC, seq DESC`: with `seq`
in each filter's index the page is a range scan, where PostgreSQL sorted every match
before. Documents get their default order (`created_at`, `id`), alone and under the
status filter.

Revision ID: f1listorder
Revises: e1tokenkeys
Create Date: 2026-12-21 09:00:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "f1listorder"
down_revision: str | None = "e1tokenkeys"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

AUDIT_INDEXES = {
    "ix_audit_events_resource": ["resource_type", "resource_id", "occurred_at"],
    "ix_audit_events_actor_time": ["actor_id", "occurred_at"],
    "ix_audit_events_action_time": ["action", "occurred_at"],
    "ix_audit_events_outcome_time": ["outcome", "occurred_at"],
    "ix_audit_events_ip_time": ["ip", "occurred_at"],
}


def upgrade() -> None:
    with op.batch_alter_table("audit_events") as batch_op:
        for name, columns in AUDIT_INDEXES.items():
            batch_op.drop_index(name)
            batch_op.create_index(name, [*columns, "seq"], unique=False)
        batch_op.drop_index("ix_audit_events_occurred_at")
        batch_op.create_index(
            "ix_audit_events_time", ["occurred_at", "seq"], unique=False
        )
    with op.batch_alter_table("documents") as batch_op:
        batch_op.create_index(
            "ix_documents_created", ["created_at", "id"], unique=False
        )
        batch_op.create_index(
            "ix_documents_status_created", ["status", "created_at", "id"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("documents") as batch_op:
        batch_op.drop_index("ix_documents_status_created")
        batch_op.drop_index("ix_documents_created")
    with op.batch_alter_table("audit_events") as batch_op:
        batch_op.drop_index("ix_audit_events_time")
        batch_op.create_index(
            "ix_audit_events_occurred_at", ["occurred_at"], unique=False
        )
        for name, columns in AUDIT_INDEXES.items():
            batch_op.drop_index(name)
            batch_op.create_index(name, columns, unique=False)
