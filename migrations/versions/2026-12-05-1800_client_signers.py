"""API clients sign: certificates are assigned to clients, and a client has a default certificate.

Revision ID: c7clientsigners
Revises: c6issue16
Create Date: 2026-12-05 18:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "c7clientsigners"
down_revision: str | None = "c6issue16"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

ONE_OF_THREE = (
    "(CASE WHEN user_id IS NULL THEN 0 ELSE 1 END)"
    " + (CASE WHEN department_id IS NULL THEN 0 ELSE 1 END)"
    " + (CASE WHEN client_id IS NULL THEN 0 ELSE 1 END) = 1"
)
ONE_OF_TWO = "(user_id IS NULL) != (department_id IS NULL)"


def upgrade() -> None:
    with op.batch_alter_table("certificate_assignments", schema=None) as batch_op:
        batch_op.add_column(sa.Column("client_id", sa.Uuid(), nullable=True))
        batch_op.create_index(
            batch_op.f("ix_certificate_assignments_client_id"),
            ["client_id"],
            unique=False,
        )
        batch_op.create_foreign_key(
            batch_op.f("fk_certificate_assignments_client_id_api_clients"),
            "api_clients",
            ["client_id"],
            ["id"],
            ondelete="CASCADE",
        )
        batch_op.create_unique_constraint(
            "uq_certificate_assignments_client", ["certificate_id", "client_id"]
        )
        batch_op.drop_constraint(
            batch_op.f("ck_certificate_assignments_one_assignee"), type_="check"
        )
        batch_op.create_check_constraint(
            batch_op.f("ck_certificate_assignments_one_assignee"), ONE_OF_THREE
        )

    op.create_table(
        "client_default_certificates",
        sa.Column("client_id", sa.Uuid(), nullable=False),
        sa.Column("certificate_id", sa.Uuid(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["certificate_id"],
            ["signing_certificates.id"],
            name=op.f(
                "fk_client_default_certificates_certificate_id_signing_certificates"
            ),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["client_id"],
            ["api_clients.id"],
            name=op.f("fk_client_default_certificates_client_id_api_clients"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint(
            "client_id", name=op.f("pk_client_default_certificates")
        ),
    )
    with op.batch_alter_table("client_default_certificates", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_client_default_certificates_certificate_id"),
            ["certificate_id"],
            unique=False,
        )


def downgrade() -> None:
    op.drop_table("client_default_certificates")
    op.execute(
        sa.text("DELETE FROM certificate_assignments WHERE client_id IS NOT NULL")
    )
    with op.batch_alter_table("certificate_assignments", schema=None) as batch_op:
        batch_op.drop_constraint(
            batch_op.f("ck_certificate_assignments_one_assignee"), type_="check"
        )
        batch_op.create_check_constraint(
            batch_op.f("ck_certificate_assignments_one_assignee"), ONE_OF_TWO
        )
        batch_op.drop_constraint("uq_certificate_assignments_client", type_="unique")
        batch_op.drop_constraint(
            batch_op.f("fk_certificate_assignments_client_id_api_clients"),
            type_="foreignkey",
        )
        batch_op.drop_index(batch_op.f("ix_certificate_assignments_client_id"))
        batch_op.drop_column("client_id")
