from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlalchemy.orm import Session, sessionmaker

from app.access.entitlements import ALL, BUILTIN_ROLES
from app.access.models import Role
from app.audit.models import AuditChainHead
from app.core.migrations import head_revision
from app.models import Base


def test_migrated_schema_matches_the_models(engine: Engine) -> None:
    with engine.connect() as connection:
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        differences = compare_metadata(context, Base.metadata)
    assert differences == []


def test_database_is_at_the_head_revision(engine: Engine) -> None:
    with engine.connect() as connection:
        assert (
            MigrationContext.configure(connection).get_current_revision()
            == head_revision()
        )


def test_builtin_roles_are_seeded_with_their_catalogue_entitlements(
    session_factory: sessionmaker[Session],
) -> None:
    with session_factory() as session:
        roles = {role.name: role for role in session.scalars(select(Role))}
    assert set(roles) == set(BUILTIN_ROLES)
    for name, (_description, entitlements) in BUILTIN_ROLES.items():
        assert roles[name].is_builtin
        assert set(roles[name].entitlements) == set(entitlements), name
    # administrator = all: a new catalogue entry needs a migration granting it
    assert set(roles["administrator"].entitlements) == ALL


def test_audit_chain_starts_at_genesis(session_factory: sessionmaker[Session]) -> None:
    with session_factory() as session:
        head = session.get_one(AuditChainHead, 1)
    assert (head.seq, head.last_hash) == (0, "0" * 64)
