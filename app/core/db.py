"""Engine, sessions and the declarative base."""

import logging
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import Any, ClassVar

from fastapi import Request
from sqlalchemy import JSON, MetaData, Uuid, create_engine, event, make_url
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Engine
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker

from app.core.storage import create_private_file, make_private_dir, make_private_files
from app.core.types import UTCDateTime, utcnow

logger = logging.getLogger(__name__)

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)
    type_annotation_map: ClassVar[dict[Any, Any]] = {
        uuid.UUID: Uuid(),
        datetime: UTCDateTime(),
        dict[str, Any]: JSON(),
        list[str]: JSON(),
        list[int]: JSON(),
    }


class IdMixin:
    id: Mapped[uuid.UUID] = mapped_column(primary_key=True, default=uuid.uuid4)


class TimestampMixin:
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


def make_engine(
    url: str, *, sqlite_busy_timeout: float = 30.0, pool_size: int = 5
) -> Engine:
    """Create the engine; SQLite gets WAL, foreign keys and write-serialising transactions."""
    if not url.startswith("sqlite"):
        # Connections past `pool_size` are closed as soon as they are returned: a
        # load steadily above it forks a PostgreSQL backend per request (15 a
        # second in the soak, with 5), each slow for its first queries.
        return create_engine(
            url, pool_pre_ping=True, pool_size=pool_size, max_overflow=10
        )
    _make_sqlite_file_private(url)
    engine = create_engine(
        url, connect_args={"timeout": sqlite_busy_timeout, "check_same_thread": False}
    )

    @event.listens_for(engine, "connect")
    def _configure_sqlite(dbapi_connection: Any, _record: Any) -> None:
        # Take over BEGIN from pysqlite (SQLAlchemy's SAVEPOINT recipe).
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys=ON")
        if ":memory:" not in url:
            cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @event.listens_for(engine, "before_cursor_execute")
    def _lock_before_first_write(
        connection: Any,
        cursor: Any,
        statement: str,
        _parameters: Any,
        context: Any,
        _executemany: bool,
    ) -> None:
        # Until a transaction writes, its reads run one by one in autocommit, each
        # seeing the latest commit (like PostgreSQL's READ COMMITTED), and hold no
        # lock. Its first write, or a read FOR UPDATE, begins IMMEDIATE: it waits for
        # SQLite's one write lock and holds it to the end, so from there on it is
        # serialised with every other writer. (A deferred BEGIN that read first and
        # writes later would fail with SQLITE_BUSY instead of waiting.) The lock is
        # thus held for the writing end of a request, not while it signs.
        dbapi_connection = cursor.connection
        if dbapi_connection.in_transaction or not connection.in_transaction():
            return
        if _reads_only(statement, context):
            return
        dbapi_connection.execute("BEGIN IMMEDIATE")

    return engine


def _make_sqlite_file_private(url: str) -> None:
    """The database file exists 0600 before SQLite opens it, and -wal/-shm follow.

    SQLite creates its files 0644 less the umask, but gives the -wal and -shm
    files the mode of the database file whatever the umask: creating that one
    0600 first covers all three. Files of an older install are tightened.
    """
    parsed = make_url(url)
    database = parsed.database
    if not database or database == ":memory:" or parsed.query.get("mode") == "memory":
        return
    path = Path(database.removeprefix("file:").split("?", 1)[0])
    if not path.parent.exists():
        make_private_dir(path.parent)
    create_private_file(path)
    make_private_files(
        path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")
    )


def _reads_only(statement: str, context: Any) -> bool:
    if statement.lstrip()[:6].upper() != "SELECT":
        return False
    compiled = getattr(context, "compiled", None)
    # SQLite drops FOR UPDATE from the SQL; the statement object still says it.
    return (
        getattr(getattr(compiled, "statement", None), "_for_update_arg", None) is None
    )


def upsert_into(session: Session, table: Any) -> postgresql.Insert | sqlite.Insert:
    """An INSERT on the session's dialect that takes `ON CONFLICT` (PostgreSQL and SQLite alike)."""
    if session.get_bind().dialect.name == "postgresql":
        return postgresql.insert(table)
    return sqlite.insert(table)


def make_sessionmaker(engine: Engine) -> sessionmaker[Session]:
    return sessionmaker(engine, expire_on_commit=False)


def get_session(request: Request) -> Iterator[Session]:
    """One transaction per request, committed before the response is sent.

    Audit entries of failures (`audit.record_isolated`) are written after the
    request's transaction has ended, in a short transaction of their own.
    """
    with unit_of_work(request.app.state.sessionmaker) as session:
        yield session


@contextmanager
def unit_of_work(factory: sessionmaker[Session]) -> Iterator[Session]:
    """One transaction, run the way a request runs it (for work outside a request).

    Commits at the end or rolls back on an exception; then the work registered
    with `after_transaction` runs in short transactions of its own, and the
    `on_commit` or `on_rollback` actions run.
    """
    session = factory()
    committed = False
    try:
        with session.begin():
            yield session
        committed = True
    finally:
        committed = committed or bool(session.info.pop(_COMMITTED, False))
        deferred = session.info.pop("after_transaction", [])
        on_commit_work = session.info.pop("on_commit", [])
        on_rollback_work = session.info.pop("on_rollback", [])
        session.close()
        for work in deferred:
            with factory.begin() as own:
                work(own)
        for action in on_commit_work if committed else on_rollback_work:
            try:
                action()
            except Exception:
                # Deleting files after the outcome (the object store unreachable):
                # the outcome stands, and the blob sweeper removes what is left.
                logger.exception("clean-up after the transaction failed")


_COMMITTED = "committed_early"


def commit_now(session: Session) -> None:
    """Commit the request's transaction here, in the route's thread, not at the end.

    `get_session` commits once the route has returned, a thread-pool hop later:
    under load that is milliseconds during which the transaction's locks stay
    held (SQLite's one write lock; row locks such as the licence counters'). A
    route whose writes are done calls this, and does not use the session again.
    The `on_commit` actions still run when the request's unit of work ends.
    """
    session.commit()
    session.info[_COMMITTED] = True


def after_transaction(session: Session, work: Callable[[Session], None]) -> None:
    """Run `work` in a short transaction of its own once the request's transaction has ended.

    For what must be stored even though the request fails (audit of a denial,
    revoking a token family on refresh-token reuse): the failing request's own
    transaction rolls back.
    """
    session.info.setdefault("after_transaction", []).append(work)


def on_commit(session: Session, action: Callable[[], None]) -> None:
    """Run `action` once the request's transaction has committed (never after a rollback).

    For side effects outside the database that must not precede the commit,
    such as deleting a deleted document's files.
    """
    session.info.setdefault("on_commit", []).append(action)


def on_rollback(session: Session, action: Callable[[], object]) -> None:
    """Run `action` if the request's transaction rolls back (to undo files written for it)."""
    session.info.setdefault("on_rollback", []).append(action)
