"""Usage reports: SQL aggregates over the live tables and the audit log (no tables of their own)."""

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from enum import StrEnum
from typing import Any

from sqlalchemy import ColumnElement, case, func, select
from sqlalchemy.orm import Session

from app.access.models import Department, User
from app.audit import service as audit_service
from app.audit.models import AuditEvent
from app.audit.service import AuditFilters, Outcome
from app.auth.models import ApiClient
from app.certificates.models import SigningCertificate, StoredStatus
from app.core.errors import InvalidInput
from app.core.types import utcnow
from app.documents.models import Document, DocumentStatus
from app.license import service as license_service
from app.signing.models import Signature

MAX_TIME_BUCKETS = 1000


class SignatureGroupBy(StrEnum):
    DAY = "day"
    MONTH = "month"
    USER = "user"
    DEPARTMENT = "department"
    CERTIFICATE = "certificate"


class GroupBy(StrEnum):
    DAY = "day"
    MONTH = "month"
    ACTION = "action"
    ACTOR = "actor"
    OUTCOME = "outcome"


@dataclass(frozen=True, slots=True)
class Bucket:
    key: str
    count: int
    failures: int
    label: str | None = None


@dataclass(frozen=True, slots=True)
class Activity:
    occurred_from: datetime
    occurred_to: datetime
    group_by: GroupBy
    total: int
    buckets: list[Bucket]


def _counts_by(session: Session, column: Any) -> dict[str, int]:
    rows = session.execute(select(column, func.count()).group_by(column)).all()
    return {str(key): int(count) for key, count in rows}


def _start_of_day(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)


def summary(session: Session) -> dict[str, Any]:
    """Dashboard figures, each one SQL aggregate."""
    now = utcnow()
    today = _start_of_day(now)
    month = today.replace(day=1)
    day_ago = now - timedelta(days=1)
    not_success = AuditEvent.outcome != Outcome.SUCCESS.value

    def count_if(condition: ColumnElement[bool]) -> Any:
        return func.coalesce(func.sum(case((condition, 1), else_=0)), 0)

    # Only this month's entries are scanned (occurred_at index); the chain head gives the total.
    audit = session.execute(
        select(
            count_if(AuditEvent.occurred_at >= today),
            count_if(AuditEvent.occurred_at >= month),
            count_if((AuditEvent.occurred_at >= day_ago) & not_success),
            count_if(
                (AuditEvent.occurred_at >= day_ago)
                & (AuditEvent.action == "auth.login")
                & not_success
            ),
            count_if(
                (AuditEvent.occurred_at >= day_ago)
                & (AuditEvent.action == "access.denied")
            ),
        ).where(AuditEvent.occurred_at >= min(month, day_ago))
    ).one()
    stored = session.scalar(select(func.count()).select_from(AuditEvent)) or 0
    head_seq, _ = audit_service.chain_head(session)
    users = _counts_by(session, User.status)
    clients = _counts_by(session, ApiClient.status)
    return {
        "generated_at": now,
        "users": {"total": sum(users.values()), "by_status": users},
        "api_clients": {"total": sum(clients.values()), "by_status": clients},
        "departments": session.scalar(select(func.count()).select_from(Department))
        or 0,
        **signing_summary(session),
        "audit": {
            "events_today": int(audit[0]),
            "events_this_month": int(audit[1]),
            "failures_last_24h": int(audit[2]),
            "failed_logins_last_24h": int(audit[3]),
            "denials_last_24h": int(audit[4]),
            "events_stored": int(stored),
            "chain_head_seq": head_seq,
        },
    }


def _bucket_expression(
    session: Session,
    group_by: GroupBy | SignatureGroupBy,
    column: Any = AuditEvent.occurred_at,
) -> Any:
    day = group_by in (GroupBy.DAY, SignatureGroupBy.DAY)
    if session.get_bind().dialect.name == "postgresql":
        return func.to_char(
            func.timezone("UTC", column), "YYYY-MM-DD" if day else "YYYY-MM"
        )
    # SQLite stores UTC text, 'YYYY-MM-DD HH:MM:SS.ffffff'.
    return func.strftime("%Y-%m-%d" if day else "%Y-%m", column)


def _time_keys(
    start: datetime, end: datetime, group_by: GroupBy | SignatureGroupBy
) -> list[str]:
    """Every bucket key in [start, end), so empty periods show as zero."""
    keys: list[str] = []
    day: date = start.astimezone(UTC).date()
    last = (end - timedelta(microseconds=1)).astimezone(UTC).date()
    monthly = group_by in (GroupBy.MONTH, SignatureGroupBy.MONTH)
    if monthly:
        day = day.replace(day=1)
    while day <= last:
        keys.append(day.isoformat()[:7] if monthly else day.isoformat())
        if len(keys) > MAX_TIME_BUCKETS:
            raise InvalidInput(
                f"The range holds more than {MAX_TIME_BUCKETS} {group_by.value}s; narrow it or group by month.",
                invalid_params=[
                    {"name": "from", "in": "query", "reason": "range too long"}
                ],
            )
        if monthly:
            day = (day.replace(day=28) + timedelta(days=4)).replace(day=1)
        else:
            day += timedelta(days=1)
    return keys


def activity(
    session: Session,
    *,
    occurred_from: datetime | None,
    occurred_to: datetime | None,
    group_by: GroupBy,
    action: str | None = None,
    outcome: Sequence[Outcome] = (),
    top: int = 10,
) -> Activity:
    """Audit entries counted per day, month, action, actor or outcome over a range.

    Day and month buckets are UTC and zero-filled; the others are the `top` largest.

    Raises:
        InvalidInput: `from` is not before `to`, or too many day buckets.
    """
    end = occurred_to or utcnow()
    start = occurred_from or (
        _start_of_day(end) - timedelta(days=29)
        if group_by is not GroupBy.MONTH
        else _start_of_day(end).replace(day=1) - timedelta(days=334)
    )
    if start >= end:
        raise InvalidInput(
            "from must be before to.",
            invalid_params=[{"name": "from", "in": "query", "reason": "not before to"}],
        )
    filters = audit_service.conditions(
        AuditFilters(
            action=action, outcome=tuple(outcome), occurred_from=start, occurred_to=end
        )
    )
    failures = func.coalesce(
        func.sum(case((AuditEvent.outcome != Outcome.SUCCESS.value, 1), else_=0)), 0
    )
    buckets: list[Bucket]
    if group_by in (GroupBy.DAY, GroupBy.MONTH):
        key = _bucket_expression(session, group_by).label("key")
        rows = session.execute(
            select(key, func.count(), failures).where(*filters).group_by(key)
        ).all()
        found = {str(k): (int(c), int(f)) for k, c, f in rows}
        buckets = [
            Bucket(k, *found.get(k, (0, 0))) for k in _time_keys(start, end, group_by)
        ]
    elif group_by is GroupBy.ACTOR:
        rows = session.execute(
            select(
                AuditEvent.actor_kind,
                AuditEvent.actor_id,
                func.max(AuditEvent.actor_name),
                func.count(),
                failures,
            )
            .where(*filters)
            .group_by(AuditEvent.actor_kind, AuditEvent.actor_id)
            .order_by(func.count().desc(), AuditEvent.actor_id)
            .limit(top)
        ).all()
        buckets = [
            Bucket(f"{kind}:{actor_id or ''}", int(c), int(f), label=name)
            for kind, actor_id, name, c, f in rows
        ]
    else:
        column = AuditEvent.action if group_by is GroupBy.ACTION else AuditEvent.outcome
        rows = session.execute(
            select(column, func.count(), failures)
            .where(*filters)
            .group_by(column)
            .order_by(func.count().desc(), column)
            .limit(top)
        ).all()
        buckets = [Bucket(str(k), int(c), int(f)) for k, c, f in rows]
    total = session.scalar(select(func.count()).select_from(AuditEvent).where(*filters))
    return Activity(start, end, group_by, int(total or 0), buckets)


@dataclass(frozen=True, slots=True)
class SignatureBucket:
    key: str
    count: int
    label: str | None = None


def signatures(
    session: Session,
    *,
    signed_from: datetime | None,
    signed_to: datetime | None,
    group_by: SignatureGroupBy,
    top: int = 100,
) -> tuple[datetime, datetime, int, list[SignatureBucket]]:
    """Signatures counted per UTC day or month (zero-filled), signer, department or certificate.

    Raises:
        InvalidInput: `from` is not before `to`, or too many day buckets.
    """
    end = signed_to or utcnow()
    monthly = group_by is SignatureGroupBy.MONTH
    start = signed_from or (
        _start_of_day(end).replace(day=1) - timedelta(days=334)
        if monthly
        else _start_of_day(end) - timedelta(days=29)
    )
    if start >= end:
        raise InvalidInput(
            "from must be before to.",
            invalid_params=[{"name": "from", "in": "query", "reason": "not before to"}],
        )
    in_range = (Signature.created_at >= start) & (Signature.created_at < end)
    total = (
        session.scalar(select(func.count()).select_from(Signature).where(in_range)) or 0
    )
    buckets: list[SignatureBucket]
    if group_by in (SignatureGroupBy.DAY, SignatureGroupBy.MONTH):
        key = _bucket_expression(session, group_by, Signature.created_at).label("key")
        found = {
            str(k): int(c)
            for k, c in session.execute(
                select(key, func.count()).where(in_range).group_by(key)
            ).all()
        }
        buckets = [
            SignatureBucket(k, found.get(k, 0))
            for k in _time_keys(start, end, group_by)
        ]
    elif group_by is SignatureGroupBy.USER:
        signer_rows = session.execute(
            select(
                Signature.signer_kind,
                Signature.signer_id,
                func.max(Signature.signer_name),
                func.count(),
            )
            .where(in_range)
            .group_by(Signature.signer_kind, Signature.signer_id)
            .order_by(func.count().desc(), Signature.signer_id)
            .limit(top)
        ).all()
        buckets = [
            SignatureBucket(f"{kind}:{signer}", int(count), name)
            for kind, signer, name, count in signer_rows
        ]
    elif group_by is SignatureGroupBy.DEPARTMENT:
        # The department of the signed document (its owner's at upload).
        department_rows = session.execute(
            select(Document.department_id, func.max(Department.name), func.count())
            .select_from(Signature)
            .join(Document, Document.id == Signature.document_id)
            .outerjoin(Department, Department.id == Document.department_id)
            .where(in_range)
            .group_by(Document.department_id)
            .order_by(func.count().desc())
            .limit(top)
        ).all()
        buckets = [
            SignatureBucket(str(dept) if dept else "none", int(count), name)
            for dept, name, count in department_rows
        ]
    else:
        certificate_rows = session.execute(
            select(
                Signature.certificate_fingerprint,
                func.max(Signature.certificate_subject),
                func.count(),
            )
            .where(in_range)
            .group_by(Signature.certificate_fingerprint)
            .order_by(func.count().desc(), Signature.certificate_fingerprint)
            .limit(top)
        ).all()
        buckets = [
            SignatureBucket(fingerprint, int(count), subject)
            for fingerprint, subject, count in certificate_rows
        ]
    return start, end, total, buckets


def documents(session: Session) -> dict[str, Any]:
    """Documents by status, with the size of the content still held (purged content is gone)."""
    by_status = _counts_by(session, Document.status)
    size = (
        session.scalar(
            select(func.coalesce(func.sum(Document.size), 0)).where(
                Document.status != DocumentStatus.PURGED
            )
        )
        or 0
    )
    return {
        "total": sum(by_status.values()),
        "by_status": by_status,
        "total_bytes": int(size),
    }


def signing_summary(session: Session) -> dict[str, Any]:
    """Certificates, documents and signatures for the dashboard."""
    now = utcnow()
    month = _start_of_day(now).replace(day=1)
    usable = SigningCertificate.stored_status == StoredStatus.ACTIVE
    active = session.scalar(
        select(func.count())
        .select_from(SigningCertificate)
        .where(usable, SigningCertificate.not_after > now)
    )
    expiring = session.scalar(
        select(func.count())
        .select_from(SigningCertificate)
        .where(
            usable,
            SigningCertificate.not_after > now,
            SigningCertificate.not_after <= now + timedelta(days=30),
        )
    )
    this_month = session.scalar(
        select(func.count()).select_from(Signature).where(Signature.created_at >= month)
    )
    total = session.scalar(select(func.count()).select_from(Signature))
    return {
        "certificates": {
            "active": int(active or 0),
            "expiring_within_30_days": int(expiring or 0),
        },
        "signatures": {"this_month": int(this_month or 0), "total": int(total or 0)},
        "documents": documents(session)["total"],
        "license": _license_figures(session),
    }


def _license_figures(session: Session) -> dict[str, Any]:
    """The licence state and each limit's use, as GET /license/usage has them."""
    current = license_service.usage(session)

    def allowance(value: Any) -> dict[str, int | None]:
        return {"used": value.used, "limit": value.limit, "remaining": value.remaining}

    return {
        "state": current.state.value,
        "users": allowance(current.users),
        "certificates": allowance(current.certificates),
        "signatures_this_month": allowance(current.signatures_this_month),
        "signatures_total": allowance(current.signatures_total),
    }
