"""Case-insensitive unique names folded in Python (str.casefold), the same on every database.

Departments and roles get a `name_key` column with a unique constraint; usernames'
`username_key` is folded the same way (and widened: folding can lengthen a name).
Names that already collide once folded keep apart with their id in the key.

Revision ID: d1casefold
Revises: c7clientsigners
Create Date: 2026-12-05 20:00:00
"""

import unicodedata
from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "d1casefold"
down_revision: str | None = "c7clientsigners"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _key(name: str) -> str:
    # app.core.types.name_key, frozen here as of this revision.
    return unicodedata.normalize("NFC", name.strip()).casefold()


def _backfill(table_name: str, source: str, target: str) -> None:
    bind = op.get_bind()
    table = sa.table(table_name, sa.column("id"), sa.column(source), sa.column(target))
    rows = bind.execute(
        sa.select(table.c.id, table.c[source]).order_by(table.c.id)
    ).all()
    taken: set[str] = set()
    for row_id, name in rows:
        key = _key(name)
        if key in taken:
            key = f"{key} ({row_id})"
        taken.add(key)
        bind.execute(table.update().where(table.c.id == row_id).values({target: key}))


def upgrade() -> None:
    for table, length in (("departments", 800), ("roles", 400)):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.add_column(sa.Column("name_key", sa.String(length), nullable=True))
        _backfill(table, "name", "name_key")
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.alter_column(
                "name_key", existing_type=sa.String(length), nullable=False
            )
            batch_op.create_unique_constraint(f"uq_{table}_name_key", ["name_key"])
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.alter_column(
            "username_key",
            existing_type=sa.String(150),
            type_=sa.String(600),
            existing_nullable=False,
        )
    _backfill("users", "username", "username_key")


def downgrade() -> None:
    bind = op.get_bind()
    users = sa.table(
        "users", sa.column("id"), sa.column("username"), sa.column("username_key")
    )
    for row_id, username in bind.execute(sa.select(users.c.id, users.c.username)):
        bind.execute(
            users.update()
            .where(users.c.id == row_id)
            .values(username_key=username.strip().lower())
        )
    with op.batch_alter_table("users", schema=None) as batch_op:
        batch_op.alter_column(
            "username_key",
            existing_type=sa.String(600),
            type_=sa.String(150),
            existing_nullable=False,
        )
    for table in ("roles", "departments"):
        with op.batch_alter_table(table, schema=None) as batch_op:
            batch_op.drop_constraint(f"uq_{table}_name_key", type_="unique")
            batch_op.drop_column("name_key")
