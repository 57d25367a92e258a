"""Signature records and Idempotency-Key records of sign requests.

Revision ID: a5signatures
Revises: a5documents
Create Date: 2026-11-23 03:44:17.638591
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "a5signatures"
down_revision: str | None = "a5documents"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "signatures",
        sa.Column("document_id", sa.Uuid(), nullable=False),
        sa.Column("version_number", sa.Integer(), nullable=False),
        sa.Column("certificate_id", sa.Uuid(), nullable=True),
        sa.Column("certificate_fingerprint", sa.String(length=64), nullable=False),
        sa.Column("certificate_subject", sa.String(length=500), nullable=False),
        sa.Column("signer_kind", sa.String(length=16), nullable=False),
        sa.Column("signer_id", sa.Uuid(), nullable=False),
        sa.Column("signer_name", sa.String(length=200), nullable=False),
        sa.Column("level", sa.String(length=8), nullable=False),
        sa.Column("field_name", sa.String(length=200), nullable=False),
        sa.Column("reason", sa.String(length=500), nullable=True),
        sa.Column("location", sa.String(length=200), nullable=True),
        sa.Column("certified", sa.String(length=16), nullable=False),
        sa.Column("signing_time", sa.DateTime(timezone=True), nullable=False),
        sa.Column("timestamp_time", sa.DateTime(timezone=True), nullable=True),
        sa.Column("sha256_before", sa.String(length=64), nullable=False),
        sa.Column("sha256_after", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.ForeignKeyConstraint(
            ["certificate_id"],
            ["signing_certificates.id"],
            name=op.f("fk_signatures_certificate_id_signing_certificates"),
            ondelete="SET NULL",
        ),
        sa.ForeignKeyConstraint(
            ["document_id"],
            ["documents.id"],
            name=op.f("fk_signatures_document_id_documents"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_signatures")),
    )
    with op.batch_alter_table("signatures", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_signatures_certificate_id"), ["certificate_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_signatures_created_at"), ["created_at"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_signatures_document_id"), ["document_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_signatures_sha256_after"), ["sha256_after"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_signatures_signer_id"), ["signer_id"], unique=False
        )

    op.create_table(
        "idempotency_records",
        sa.Column("principal_kind", sa.String(length=16), nullable=False),
        sa.Column("principal_id", sa.Uuid(), nullable=False),
        sa.Column("key", sa.String(length=200), nullable=False),
        sa.Column("request_sha256", sa.String(length=64), nullable=False),
        sa.Column("signature_id", sa.Uuid(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("response", sa.JSON(), nullable=True),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.ForeignKeyConstraint(
            ["signature_id"],
            ["signatures.id"],
            name=op.f("fk_idempotency_records_signature_id_signatures"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_idempotency_records")),
        sa.UniqueConstraint(
            "principal_kind", "principal_id", "key", name="uq_idempotency_records_key"
        ),
    )


def downgrade() -> None:
    op.drop_table("idempotency_records")
    with op.batch_alter_table("signatures", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_signatures_signer_id"))
        batch_op.drop_index(batch_op.f("ix_signatures_sha256_after"))
        batch_op.drop_index(batch_op.f("ix_signatures_document_id"))
        batch_op.drop_index(batch_op.f("ix_signatures_created_at"))
        batch_op.drop_index(batch_op.f("ix_signatures_certificate_id"))

    op.drop_table("signatures")
