"""Certificate vault: certificates, assignments, default certificates, signer-cache version.

Revision ID: a4vault
Revises: a3access
Create Date: 2026-11-23 03:12:15.698532
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "a4vault"
down_revision: str | None = "a3access"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "signing_certificates",
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("key_store", sa.String(length=32), nullable=False),
        sa.Column("stored_status", sa.String(length=32), nullable=False),
        sa.Column("subject", sa.Text(), nullable=False),
        sa.Column("subject_cn", sa.String(length=400), nullable=True),
        sa.Column("subject_o", sa.String(length=400), nullable=True),
        sa.Column("subject_email", sa.String(length=320), nullable=True),
        sa.Column("issuer", sa.Text(), nullable=False),
        sa.Column("serial_number", sa.String(length=80), nullable=False),
        sa.Column("not_before", sa.DateTime(timezone=True), nullable=False),
        sa.Column("not_after", sa.DateTime(timezone=True), nullable=False),
        sa.Column("fingerprint_sha256", sa.String(length=64), nullable=False),
        sa.Column("key_algorithm", sa.String(length=16), nullable=False),
        sa.Column("key_size", sa.Integer(), nullable=False),
        sa.Column("key_curve", sa.String(length=32), nullable=True),
        sa.Column("key_usage", sa.JSON(), nullable=False),
        sa.Column("extended_key_usage", sa.JSON(), nullable=False),
        sa.Column("certificate_der", sa.LargeBinary(), nullable=False),
        sa.Column("chain_pem", sa.Text(), nullable=False),
        sa.Column("sealed_private_key", sa.LargeBinary(), nullable=True),
        sa.Column("pkcs11_token_label", sa.String(length=200), nullable=True),
        sa.Column("pkcs11_key_label", sa.String(length=200), nullable=True),
        sa.Column("pkcs11_cert_label", sa.String(length=200), nullable=True),
        sa.Column("last_used_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("disabled_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("revocation_reason", sa.String(length=400), nullable=True),
        sa.Column("deleted_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_signing_certificates")),
    )
    with op.batch_alter_table("signing_certificates", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_signing_certificates_fingerprint_sha256"),
            ["fingerprint_sha256"],
            unique=False,
        )
        batch_op.create_index(
            batch_op.f("ix_signing_certificates_not_after"), ["not_after"], unique=False
        )

    vault_state = op.create_table(
        "vault_state",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_vault_state")),
    )
    op.bulk_insert(vault_state, [{"id": 1, "version": 0}])
    op.create_table(
        "certificate_assignments",
        sa.Column("certificate_id", sa.Uuid(), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=True),
        sa.Column("department_id", sa.Uuid(), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.CheckConstraint(
            "(user_id IS NULL) != (department_id IS NULL)",
            name=op.f("ck_certificate_assignments_one_assignee"),
        ),
        sa.ForeignKeyConstraint(
            ["certificate_id"],
            ["signing_certificates.id"],
            name=op.f("fk_certificate_assignments_certificate_id_signing_certificates"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["department_id"],
            ["departments.id"],
            name=op.f("fk_certificate_assignments_department_id_departments"),
            ondelete="RESTRICT",
        ),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_certificate_assignments_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_certificate_assignments")),
        sa.UniqueConstraint(
            "certificate_id",
            "department_id",
            name="uq_certificate_assignments_department",
        ),
        sa.UniqueConstraint(
            "certificate_id", "user_id", name="uq_certificate_assignments_user"
        ),
    )
    with op.batch_alter_table("certificate_assignments", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_certificate_assignments_certificate_id"),
            ["certificate_id"],
            unique=False,
        )
        batch_op.create_index(
            batch_op.f("ix_certificate_assignments_department_id"),
            ["department_id"],
            unique=False,
        )
        batch_op.create_index(
            batch_op.f("ix_certificate_assignments_user_id"), ["user_id"], unique=False
        )

    op.create_table(
        "default_certificates",
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("certificate_id", sa.Uuid(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["certificate_id"],
            ["signing_certificates.id"],
            name=op.f("fk_default_certificates_certificate_id_signing_certificates"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["user_id"],
            ["users.id"],
            name=op.f("fk_default_certificates_user_id_users"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("user_id", name=op.f("pk_default_certificates")),
    )
    with op.batch_alter_table("default_certificates", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_default_certificates_certificate_id"),
            ["certificate_id"],
            unique=False,
        )


def downgrade() -> None:
    with op.batch_alter_table("default_certificates", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_default_certificates_certificate_id"))

    op.drop_table("default_certificates")
    with op.batch_alter_table("certificate_assignments", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_certificate_assignments_user_id"))
        batch_op.drop_index(batch_op.f("ix_certificate_assignments_department_id"))
        batch_op.drop_index(batch_op.f("ix_certificate_assignments_certificate_id"))

    op.drop_table("certificate_assignments")
    op.drop_table("vault_state")
    with op.batch_alter_table("signing_certificates", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_signing_certificates_not_after"))
        batch_op.drop_index(batch_op.f("ix_signing_certificates_fingerprint_sha256"))

    op.drop_table("signing_certificates")
