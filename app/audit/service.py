"""Recording audit events inside the caller's transaction, chained at commit."""

import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Select,
    bindparam,
    delete,
    event,
    func,
    insert,
    or_,
    select,
    text,
    union_all,
    update,
)
from sqlalchemy.engine import Row
from sqlalchemy.orm import Session, sessionmaker

from app.audit.chain import (
    GENESIS_HASH,
    ChainBreak,
    content_hash,
    content_of,
    event_hash,
    find_break,
    format_time,
)
from app.audit.errors import AuditEventNotFound, AuditTrailTooLarge
from app.audit.models import (
    AuditChainHead,
    AuditCheckpoint,
    AuditEvent,
    AuditSettings,
)
from app.core.context import current_request
from app.core.db import after_transaction
from app.core.pagination import PageParams, bounded_count, paginate
from app.core.types import utcnow

_PENDING = "audit_pending"
_REDACTED_KEYS = frozenset(
    {
        "password",
        "new_password",
        "old_password",
        "secret",
        "client_secret",
        "access_token",
        "refresh_token",
        "token",
        "totp",
        "private_key",
        "pkcs12_base64",
    }
)


class ActorKind(StrEnum):
    USER = "user"
    CLIENT = "client"
    SYSTEM = "system"
    ANONYMOUS = "anonymous"


class Outcome(StrEnum):
    SUCCESS = "success"
    FAILURE = "failure"
    DENIED = "denied"


@dataclass(frozen=True, slots=True)
class Actor:
    kind: ActorKind
    id: str | None = None
    name: str | None = None


SYSTEM = Actor(ActorKind.SYSTEM, None, "signvault")
ANONYMOUS = Actor(ActorKind.ANONYMOUS)


def _scrub(details: Mapping[str, Any]) -> dict[str, Any]:
    # Defence in depth: callers never pass secrets, and if one slips in it is not kept.
    return {
        key: "[redacted]"
        if key.lower() in _REDACTED_KEYS
        else (_scrub(value) if isinstance(value, Mapping) else value)
        for key, value in details.items()
    }


def _build_entry(
    *,
    actor: Actor,
    action: str,
    resource_type: str | None = None,
    resource_id: uuid.UUID | str | None = None,
    outcome: Outcome = Outcome.SUCCESS,
    details: Mapping[str, Any] | None = None,
) -> AuditEvent:
    context = current_request()
    return AuditEvent(
        id=uuid.uuid4(),
        occurred_at=utcnow(),
        actor_kind=actor.kind.value,
        actor_id=actor.id,
        actor_name=actor.name,
        action=action,
        resource_type=resource_type,
        resource_id=str(resource_id) if resource_id is not None else None,
        outcome=outcome.value,
        ip=context.ip if context else None,
        peer_ip=context.peer_ip if context else None,
        user_agent=context.user_agent if context else None,
        request_id=context.request_id if context else None,
        details=_scrub(details or {}),
    )


def record(
    session: Session,
    *,
    actor: Actor,
    action: str,
    resource_type: str | None = None,
    resource_id: uuid.UUID | str | None = None,
    outcome: Outcome = Outcome.SUCCESS,
    details: Mapping[str, Any] | None = None,
) -> AuditEvent:
    """Add an audit entry to the session's transaction; it is chained and stored at commit."""
    entry = _build_entry(
        actor=actor,
        action=action,
        resource_type=resource_type,
        resource_id=resource_id,
        outcome=outcome,
        details=details,
    )
    session.info.setdefault(_PENDING, []).append(entry)
    return entry


def record_isolated(
    session: Session,
    *,
    actor: Actor,
    action: str,
    resource_type: str | None = None,
    resource_id: uuid.UUID | str | None = None,
    outcome: Outcome = Outcome.FAILURE,
    details: Mapping[str, Any] | None = None,
    along: Callable[[Session], None] | None = None,
) -> None:
    """Record a failure or denial in a short transaction of its own, after the request's ends.

    The request's transaction rolls back on the error being reported and would
    take an ordinary entry with it. `along` runs in that same transaction (the
    notification event of the failure), so both are stored or neither.
    """
    # Built now, while this request's context (IP, request id) is current.
    captured = _build_entry(
        actor=actor,
        action=action,
        resource_type=resource_type,
        resource_id=resource_id,
        outcome=outcome,
        details=details,
    )

    def store(own: Session) -> None:
        own.info.setdefault(_PENDING, []).append(captured)
        if along is not None:
            along(own)

    after_transaction(session, store)


_HEAD_FOR_UPDATE = (
    select(AuditChainHead.seq, AuditChainHead.last_hash)
    .where(AuditChainHead.id == 1)
    .with_for_update()
)
_MOVE_HEAD = (
    update(AuditChainHead)
    .where(AuditChainHead.id == 1)
    .values(seq=bindparam("head_seq"), last_hash=bindparam("head_hash"))
)
_MOVED_HEAD = _MOVE_HEAD.cte("moved_head")
_INSERT_EVENTS = insert(AuditEvent)
_EVENT_COLUMNS = tuple(column.key for column in AuditEvent.__table__.columns)


@event.listens_for(Session, "before_commit")
def _chain_at_commit(session: Session) -> None:
    append_pending(session)


def append_pending(session: Session) -> None:
    """Chain and store the entries recorded so far in this transaction, now rather than at commit.

    For what must know an entry's place in the chain before the commit (an
    anchor signs it); the chain head then stays locked to the end of the
    transaction, as it does at commit.
    """
    pending: list[AuditEvent] = session.info.pop(_PENDING, [])
    if not pending:
        return
    # The transaction's other changes first: the head stays locked only for the append.
    session.flush()
    connection = session.connection()
    # The row lock serialises appenders on PostgreSQL (SQLite's writer lock already does).
    seq, last_hash = connection.execute(_HEAD_FOR_UPDATE).one()
    rows = []
    for entry in pending:
        seq += 1
        entry.seq, entry.prev_hash = seq, last_hash
        entry.hash = last_hash = event_hash(entry)
        rows.append({column: getattr(entry, column) for column in _EVENT_COLUMNS})
    moved = {"head_seq": seq, "head_hash": last_hash}
    if connection.dialect.name == "postgresql":
        # One round trip fewer while every other appender waits on the head.
        connection.execute(insert(AuditEvent).values(rows).add_cte(_MOVED_HEAD), moved)
    else:
        connection.execute(_INSERT_EVENTS, rows)
        connection.execute(_MOVE_HEAD, moved)


@event.listens_for(Session, "after_rollback")
def _drop_pending(session: Session) -> None:
    session.info.pop(_PENDING, None)


_OPTIONAL = dict.fromkeys(
    (
        "actor_id",
        "actor_name",
        "resource_type",
        "resource_id",
        "ip",
        "peer_ip",
        "user_agent",
        "request_id",
    )
)


def append_many(
    session: Session, rows: Iterable[Mapping[str, Any]], *, batch_size: int = 5000
) -> int:
    """Chain and insert prepared entries in bulk (imports, benchmarks); returns how many.

    Each row has the columns of `AuditEvent` but `seq`, `prev_hash` and `hash`,
    which are assigned here. Holds the chain head for the caller's transaction,
    like `record`; `occurred_at` is kept as given.
    """
    head = session.execute(
        select(AuditChainHead).where(AuditChainHead.id == 1).with_for_update()
    ).scalar_one()
    seq, last_hash, count = head.seq, head.last_hash, 0
    statement = insert(AuditEvent)
    connection = session.connection()
    batch: list[dict[str, Any]] = []
    for given in rows:
        seq += 1
        row = {**_OPTIONAL, **given, "seq": seq, "prev_hash": last_hash}
        row["hash"] = last_hash = content_hash(
            {
                **row,
                "id": str(row["id"]),
                "occurred_at": format_time(row["occurred_at"]),
            }
        )
        batch.append(row)
        if len(batch) >= batch_size:
            connection.execute(statement, batch)
            count += len(batch)
            batch = []
    if batch:
        connection.execute(statement, batch)
        count += len(batch)
    head.seq, head.last_hash = seq, last_hash
    session.flush()
    return count


# --- search ---------------------------------------------------------------

SORTABLE = {
    "occurred_at": AuditEvent.occurred_at,
    "seq": AuditEvent.seq,
    "action": AuditEvent.action,
    "actor_name": AuditEvent.actor_name,
}
DEFAULT_SORT = "-occurred_at"


@dataclass(frozen=True, slots=True)
class AuditFilters:
    """Search filters; `action` ending in "." matches every action under that prefix."""

    actor_id: str | None = None
    actor_kind: Sequence[ActorKind] = ()
    action: str | None = None
    resource_type: str | None = None
    resource_id: str | None = None
    outcome: Sequence[Outcome] = ()
    ip: str | None = None
    occurred_from: datetime | None = None
    occurred_to: datetime | None = None

    def describe(self) -> dict[str, Any]:
        """The filters in force, as JSON values (for the audit entry of an export)."""
        described: dict[str, Any] = {}
        for spec in fields(self):
            name, value = spec.name, getattr(self, spec.name)
            if value in (None, ()):
                continue
            if isinstance(value, datetime):
                value = value.isoformat()
            elif isinstance(value, tuple | list):
                value = [str(v) for v in value]
            described[name] = value
        return described


def conditions(filters: AuditFilters) -> list[ColumnElement[bool]]:
    """The WHERE terms of a search."""
    terms: list[ColumnElement[bool]] = []
    if filters.actor_id is not None:
        terms.append(AuditEvent.actor_id == filters.actor_id)
    if filters.actor_kind:
        terms.append(AuditEvent.actor_kind.in_([k.value for k in filters.actor_kind]))
    if filters.action:
        if filters.action.endswith("."):
            # A range, so the (action, occurred_at) index serves it ("." + 1 is "/").
            # Exact because the column compares bytes (SQLite BINARY, "C" on PostgreSQL).
            terms.append(AuditEvent.action >= filters.action)
            terms.append(AuditEvent.action < filters.action[:-1] + "/")
        else:
            terms.append(AuditEvent.action == filters.action)
    if filters.resource_type is not None:
        terms.append(AuditEvent.resource_type == filters.resource_type)
    if filters.resource_id is not None:
        terms.append(AuditEvent.resource_id == filters.resource_id)
    if filters.outcome:
        terms.append(AuditEvent.outcome.in_([o.value for o in filters.outcome]))
    if filters.ip is not None:
        terms.append(AuditEvent.ip == filters.ip)
    if filters.occurred_from is not None:
        terms.append(AuditEvent.occurred_at >= filters.occurred_from)
    if filters.occurred_to is not None:
        terms.append(AuditEvent.occurred_at < filters.occurred_to)
    return terms


def filtered(filters: AuditFilters) -> Select[Any]:
    return select(AuditEvent).where(*conditions(filters))


def list_events(
    session: Session, *, filters: AuditFilters, params: PageParams
) -> tuple[Sequence[AuditEvent], int]:
    """One page of matching entries and the total (newest first by default).

    Raises:
        InvalidInput: an unknown sort field.
    """
    time_order = _time_order(params.sort)
    if filters.action and filters.action.endswith(".") and time_order is not None:
        actions = _actions_with_prefix(session, filters.action)
        if actions is not None:
            return _merged_page(session, filters, params, actions, time_order)
    return paginate(
        session,
        filtered(filters),
        params,
        sortable=SORTABLE,
        default_sort=DEFAULT_SORT,
        tiebreaker=AuditEvent.seq,
    )


_MAX_MERGED_ACTIONS = 64


def _time_order(sort: str | None) -> str | None:
    """ "desc" or "asc" when the page is ordered by time alone, else None."""
    terms = [t.strip() for t in (sort or DEFAULT_SORT).split(",") if t.strip()]
    if len(terms) != 1 or terms[0].lstrip("+-") != "occurred_at":
        return None
    return "desc" if terms[0].startswith("-") else "asc"


def _actions_with_prefix(session: Session, prefix: str) -> list[str] | None:
    """The distinct actions under a prefix, by a loose index scan (one seek each).

    None when there are too many to merge.
    """
    found = session.execute(
        text(
            """
            WITH RECURSIVE found(action, n) AS (
                SELECT min(action), 1 FROM audit_events
                 WHERE action >= :low AND action < :high
                UNION ALL
                SELECT (SELECT min(action) FROM audit_events
                         WHERE action > found.action AND action < :high), n + 1
                  FROM found
                 WHERE found.action IS NOT NULL AND n <= :most
            )
            SELECT action FROM found WHERE action IS NOT NULL
            """
        ),
        {"low": prefix, "high": prefix[:-1] + "/", "most": _MAX_MERGED_ACTIONS},
    ).scalars()
    actions = [a for a in found if a.startswith(prefix)]
    return actions if len(actions) <= _MAX_MERGED_ACTIONS else None


def _merged_page(
    session: Session,
    filters: AuditFilters,
    params: PageParams,
    actions: list[str],
    direction: str,
) -> tuple[Sequence[AuditEvent], int]:
    """A time-ordered page over several actions, merged from one index range each.

    A prefix spanning several actions would otherwise sort every match to show
    one page; each (action, occurred_at) range is already in time order, so the
    first offset+limit of each are enough.
    """
    if not actions:
        return [], 0
    others = conditions(replace(filters, action=None))
    # Equality seeks count faster than one range over the same entries.
    total = bounded_count(
        session, select(AuditEvent.seq).where(AuditEvent.action.in_(actions), *others)
    )
    wanted = params.offset + params.limit

    def ordered(time: Any, seq: Any) -> list[Any]:
        # The tiebreaker runs with the time, as the (action, occurred_at, seq) index does.
        return [time.desc(), seq.desc()] if direction == "desc" else [time, seq]

    parts = []
    for action in actions:
        top = (
            select(AuditEvent.seq, AuditEvent.occurred_at)
            .where(AuditEvent.action == action, *others)
            .order_by(*ordered(AuditEvent.occurred_at, AuditEvent.seq))
            .limit(wanted)
            .subquery()
        )
        parts.append(select(top.c.seq, top.c.occurred_at))
    merged = union_all(*parts).subquery()
    page = list(
        session.scalars(
            select(merged.c.seq)
            .order_by(*ordered(merged.c.occurred_at, merged.c.seq))
            .offset(params.offset)
            .limit(params.limit)
        )
    )
    rows = {
        e.seq: e
        for e in session.scalars(select(AuditEvent).where(AuditEvent.seq.in_(page)))
    }
    return [rows[seq] for seq in page], total


def get_event(session: Session, event_id: uuid.UUID) -> AuditEvent:
    """Raises: AuditEventNotFound."""
    found = session.get(AuditEvent, event_id)
    if found is None:
        raise AuditEventNotFound(f"No audit event with id {event_id}.")
    return found


def chain_head(session: Session) -> tuple[int, str]:
    """The last appended entry's seq and hash, as committed now (not a cached object)."""
    head = session.execute(
        select(AuditChainHead.seq, AuditChainHead.last_hash).where(
            AuditChainHead.id == 1
        )
    ).one()
    return int(head.seq), str(head.last_hash)


def iter_export(
    factory: sessionmaker[Session],
    *,
    filters: AuditFilters,
    through_seq: int,
    batch_size: int = 2000,
) -> Iterator[dict[str, Any]]:
    """Matching entries up to `through_seq` in chain order, as export rows (content + hash).

    Keyset pagination over `seq`, one short transaction per batch: memory stays flat
    however many rows match, and no lock is held between batches.
    """
    after = 0
    while True:
        with factory() as session:
            # Plain rows, not ORM objects: a third of the cost per entry.
            batch = session.execute(
                select(AuditEvent.__table__)
                .where(*conditions(filters))
                .where(AuditEvent.seq > after, AuditEvent.seq <= through_seq)
                .order_by(AuditEvent.seq)
                .limit(batch_size)
            ).all()
            rows = [{**content_of(e), "hash": e.hash} for e in batch]
        if not rows:
            return
        yield from rows
        after = rows[-1]["seq"]


def trail(
    session: Session, *, resource_type: str, resource_id: str, limit: int = 10_000
) -> list[AuditEvent]:
    """Every entry of one resource, in chain order.

    Raises:
        AuditTrailTooLarge: more than `limit` entries (use the export instead).
    """
    events = list(
        session.scalars(
            filtered(AuditFilters(resource_type=resource_type, resource_id=resource_id))
            .order_by(AuditEvent.seq)
            .limit(limit + 1)
        )
    )
    if len(events) > limit:
        raise AuditTrailTooLarge(
            f"This resource has more than {limit} audit entries; export them with "
            "GET /api/v1/audit-logs/export?resource_type=...&resource_id=... instead."
        )
    return events


# --- verification -----------------------------------------------------------

PURGE_ACTION = "audit.purged"


@dataclass(frozen=True, slots=True)
class ChainReport:
    intact: bool
    checked: int
    first_seq: int | None
    last_seq: int | None
    head_seq: int
    checkpoint: AuditCheckpoint | None
    broken: ChainBreak | None
    verified_at: datetime = field(default_factory=utcnow)


def latest_checkpoint(session: Session) -> AuditCheckpoint | None:
    return session.scalars(
        select(AuditCheckpoint).order_by(AuditCheckpoint.through_seq.desc()).limit(1)
    ).first()


def verify(session: Session, *, batch_size: int = 2000) -> ChainReport:
    """Recompute the chain from the latest retention checkpoint (or genesis) to its end.

    A purge that commits while the walk runs (PostgreSQL; SQLite's writer lock
    keeps them apart) moves the checkpoint: the walk is then redone once from it.
    """
    report = _verify(session, batch_size=batch_size)
    if report.broken is not None:
        moved = latest_checkpoint(session)
        before = report.checkpoint.through_seq if report.checkpoint else None
        if moved is not None and moved.through_seq != before:
            report = _verify(session, batch_size=batch_size)
    return report


def _verify(session: Session, *, batch_size: int) -> ChainReport:
    """Walk the chain once; see `verify`.

    Finds edited, deleted, inserted and reordered rows, a truncated tail (the head
    names a later entry than the last one stored), rows added beyond the head, and
    a forged checkpoint (none of the chain's `audit.purged` entries vouches for it).
    """
    snapshot_seq, snapshot_hash = chain_head(session)
    checkpoint = latest_checkpoint(session)
    prev_seq, prev_hash = (
        (checkpoint.through_seq, checkpoint.through_hash)
        if checkpoint
        else (0, GENESIS_HASH)
    )
    checked, first_seq, last_id = 0, None, None
    confirmed = checkpoint is None
    head_seq = snapshot_seq

    def report(broken: ChainBreak | None) -> ChainReport:
        return ChainReport(
            intact=broken is None,
            checked=checked,
            first_seq=first_seq,
            last_seq=prev_seq if checked else None,
            head_seq=head_seq,
            checkpoint=checkpoint,
            broken=broken,
        )

    while True:
        # Plain rows, not ORM objects: the walk reads every entry.
        batch = session.execute(
            select(AuditEvent.__table__)
            .where(AuditEvent.seq > prev_seq)
            .order_by(AuditEvent.seq)
            .limit(batch_size)
        ).all()
        if not batch:
            break
        broken = find_break(batch, prev_hash=prev_hash, prev_seq=prev_seq)
        if broken:
            return report(broken)
        if not confirmed and checkpoint is not None:
            confirmed = any(_vouches_for(e, checkpoint) for e in batch)
        first_seq = first_seq or batch[0].seq
        checked += len(batch)
        prev_seq, prev_hash, last_id = batch[-1].seq, batch[-1].hash, str(batch[-1].id)
    # Writers may have appended while we walked: compare with the head before and after.
    head_seq, head_hash = chain_head(session)
    if prev_seq > head_seq:
        beyond = session.execute(
            select(AuditEvent.seq, AuditEvent.id)
            .where(AuditEvent.seq > head_seq)
            .order_by(AuditEvent.seq)
            .limit(1)
        ).one()
        return report(
            ChainBreak(
                beyond.seq,
                str(beyond.id),
                f"entry is beyond the chain head ({head_seq}): not appended through the log",
            )
        )
    if prev_seq < snapshot_seq:
        return report(
            ChainBreak(
                prev_seq + 1,
                None,
                f"entries {prev_seq + 1} to {snapshot_seq} are missing: the chain head names {snapshot_seq}",
            )
        )
    if (prev_seq == snapshot_seq and prev_hash != snapshot_hash) or (
        prev_seq == head_seq and prev_hash != head_hash
    ):
        return report(
            ChainBreak(
                prev_seq, last_id, "the last entry does not match the chain head"
            )
        )
    if not confirmed and checkpoint is not None:
        return report(
            ChainBreak(
                checkpoint.through_seq,
                None,
                f"no {PURGE_ACTION} entry vouches for the retention checkpoint at {checkpoint.through_seq}",
            )
        )
    return report(None)


def record_verification(
    session: Session,
    *,
    actor: Actor,
    report: ChainReport,
    details: Mapping[str, Any] | None = None,
) -> None:
    """The `audit.verified` entry of a verification, failed when the chain is not intact."""
    record(
        session,
        actor=actor,
        action="audit.verified",
        resource_type="audit_log",
        outcome=Outcome.SUCCESS if report.intact else Outcome.FAILURE,
        details={
            **(details or {}),
            "intact": report.intact,
            "checked": report.checked,
            "head_seq": report.head_seq,
            "broken_seq": report.broken.seq if report.broken else None,
        },
    )


def _vouches_for(entry: "AuditEvent | Row[Any]", checkpoint: AuditCheckpoint) -> bool:
    return (
        entry.action == PURGE_ACTION
        and entry.details.get("through_seq") == checkpoint.through_seq
        and entry.details.get("through_hash") == checkpoint.through_hash
    )


def verify_chain(session: Session, *, batch_size: int = 2000) -> ChainBreak | None:
    """The first broken entry of the stored chain, or None if intact."""
    return verify(session, batch_size=batch_size).broken


# --- settings and retention ---------------------------------------------------


def get_settings(session: Session) -> AuditSettings:
    return session.get_one(AuditSettings, 1)


def update_settings(
    session: Session, *, actor: Actor, changes: Mapping[str, Any]
) -> AuditSettings:
    """Change retention and audit-trail generation; audited with before and after."""
    current = get_settings(session)
    before = {name: getattr(current, name) for name in changes}
    for name, value in changes.items():
        setattr(current, name, value)
    current.updated_at = utcnow()
    session.flush()
    record(
        session,
        actor=actor,
        action="audit.settings_updated",
        resource_type="audit_settings",
        details={"before": before, "after": dict(changes)},
    )
    return current


def trail_enabled(session: Session) -> bool:
    """Whether audit-trail reports (the sealed PDF) are produced."""
    return get_settings(session).audit_trail_enabled


@dataclass(frozen=True, slots=True)
class PurgeResult:
    purged: int
    batches: int
    through_seq: int | None
    cutoff: datetime | None


RETENTION_INTERVAL = timedelta(days=1)


def run_retention_if_due(
    factory: sessionmaker[Session], *, now: datetime | None = None
) -> PurgeResult | None:
    """The daily retention job: purge, if no process has claimed today's run yet.

    The claim is one conditional UPDATE, so with any number of processes and
    hosts polling, exactly one runs it per day. Returns None when not due.
    """
    moment = now or utcnow()
    with factory.begin() as session:
        claimed = session.execute(
            update(AuditSettings)
            .where(
                AuditSettings.id == 1,
                or_(
                    AuditSettings.retention_run_at.is_(None),
                    AuditSettings.retention_run_at <= moment - RETENTION_INTERVAL,
                ),
            )
            .values(retention_run_at=moment)
        )
        if claimed.rowcount != 1:  # type: ignore[attr-defined]
            return None
    return purge_expired(factory, now=moment)


def purge_expired(
    factory: sessionmaker[Session],
    *,
    actor: Actor = SYSTEM,
    now: datetime | None = None,
    batch_size: int = 5000,
) -> PurgeResult:
    """Delete entries older than the retention, oldest first, in batches.

    Only a prefix of the chain is removed (an entry is kept while an older-seq
    one is still within retention), so what remains is one unbroken chain. Each
    batch commits with a checkpoint (last purged seq and hash, counts) and an
    `audit.purged` entry carrying the same figures; verification starts there.
    """
    with factory() as session:
        retention = get_settings(session).retention_days
        if retention is None:
            return PurgeResult(0, 0, None, None)
        cutoff = (now or utcnow()) - timedelta(days=retention)
        # The first entry to keep: the oldest within retention, or (none being) the
        # next one to be appended, so that this run never purges its own entries.
        first_kept = session.scalar(
            select(func.min(AuditEvent.seq)).where(AuditEvent.occurred_at >= cutoff)
        )
        if first_kept is None:
            first_kept = chain_head(session)[0] + 1
    purged = batches = 0
    through: int | None = None
    while True:
        with factory.begin() as session:
            done = _purge_batch(
                session,
                actor=actor,
                cutoff=cutoff,
                retention=retention,
                below=first_kept,
                limit=batch_size,
            )
        if done is None:
            break
        through, count = done
        purged += count
        batches += 1
    return PurgeResult(purged, batches, through, cutoff)


def _purge_batch(
    session: Session,
    *,
    actor: Actor,
    cutoff: datetime,
    retention: int,
    below: int,
    limit: int,
) -> tuple[int, int] | None:
    previous = latest_checkpoint(session)
    after = previous.through_seq if previous else 0
    window = (
        select(AuditEvent.seq)
        .where(AuditEvent.seq > after, AuditEvent.seq < below)
        .order_by(AuditEvent.seq)
        .limit(limit)
        .subquery()
    )
    last = session.scalar(select(func.max(window.c.seq)))
    if last is None:
        return None
    last_hash = session.scalars(
        select(AuditEvent.hash).where(AuditEvent.seq == last)
    ).one()
    result = session.execute(
        delete(AuditEvent)
        .where(AuditEvent.seq > after, AuditEvent.seq <= last)
        .execution_options(synchronize_session=False)
    )
    count = int(result.rowcount)  # type: ignore[attr-defined]
    total = (previous.total_purged if previous else 0) + count
    session.add(
        AuditCheckpoint(
            through_seq=last,
            through_hash=last_hash,
            purged_count=count,
            total_purged=total,
            cutoff=cutoff,
        )
    )
    record(
        session,
        actor=actor,
        action=PURGE_ACTION,
        resource_type="audit_log",
        details={
            "through_seq": last,
            "through_hash": last_hash,
            "purged": count,
            "total_purged": total,
            "cutoff": cutoff.isoformat(),
            "retention_days": retention,
        },
    )
    return last, count
