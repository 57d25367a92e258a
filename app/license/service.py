"""Licence state, usage counters and enforcement.

Other features call the enforcement functions inside their own transaction:

- `reserve_signature(session, actor=...)` once per signature, as the last step
  before the signing transaction commits (it holds the counter rows' locks
  until then, and a rolled-back signature does not count);
- `check_capacity(session, Capacity.USERS | Capacity.CERTIFICATES, actor=...)`
  before creating (or re-enabling) a user or importing a certificate;
- `require_feature(session, Feature.PKCS11 | BATCH | LTV, actor=...)`.

Each raises a 403 `LicenseRefusal` (`license_limit_reached`, `license_expired`,
`license_invalid`, `license_feature_missing`) after recording the refusal in the
audit log. Every function takes `now` so tests (and schedulers) control the clock.

The time used is never earlier than the latest signature counted or refused
(the `total` counter's `updated_at`): setting the system clock back does not
bring an expired licence back to life.
"""

import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from functools import cache
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from sqlalchemy import Integer, bindparam, case, func, select, update
from sqlalchemy.dialects.postgresql import insert as postgresql_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session, sessionmaker

from app.access.models import User, UserStatus
from app.audit import service as audit_service
from app.audit.service import Actor, Outcome
from app.core.config import Settings
from app.core.db import after_transaction
from app.core.types import utcnow
from app.license.errors import (
    LicenseAlreadyExpired,
    LicenseExpired,
    LicenseFeatureMissing,
    LicenseFileRefused,
    LicenseInvalid,
    LicenseLimitReached,
    LicenseNotInstalled,
    LicenseNotYetValid,
    LicenseRefusal,
)
from app.license.events import LicenseEvent, announce
from app.license.models import (
    STATE_ROW_ID,
    TOTAL_PERIOD,
    LicenseStateRow,
    LicenseUsage,
)
from app.license.verifier import (
    LicensePayload,
    Limits,
    builtin_issuer_key,
    load_public_key,
    verify_license,
)

ISSUER_KEY_INFO = "license_issuer_key"


class LicenseState(StrEnum):
    VALID = "valid"
    EVALUATION = "evaluation"
    EXPIRED = "expired"
    INVALID = "invalid"
    MISSING = "missing"


class Capacity(StrEnum):
    USERS = "users"
    CERTIFICATES = "certificates"


class Feature(StrEnum):
    PKCS11 = "pkcs11"
    BATCH = "batch"
    LTV = "ltv"


EVALUATION_DAYS = 30
EVALUATION_LIMITS = Limits(
    users=25, certificates=25, signatures_per_month=None, signatures_total=500
)
EVALUATION_FEATURES = frozenset(f.value for f in Feature)
EXPIRY_WARNING_DAYS = (30, 7, 1)


@dataclass(frozen=True, slots=True)
class LicenseStatus:
    state: LicenseState
    detail: str
    now: datetime
    valid_from: datetime | None = None
    valid_until: datetime | None = None
    limits: Limits | None = None
    features: frozenset[str] = frozenset()
    license: LicensePayload | None = None
    installed_at: datetime | None = None
    installed_by: str | None = None
    # The smallest expiry warning (days) already announced for this licence.
    expiry_warned_days: int | None = None

    @property
    def days_left(self) -> int | None:
        if self.valid_until is None:
            return None
        return max(0, (self.valid_until - self.now) // timedelta(days=1))


@dataclass(frozen=True, slots=True)
class Allowance:
    used: int
    limit: int | None

    @property
    def remaining(self) -> int | None:
        return None if self.limit is None else max(0, self.limit - self.used)


@dataclass(frozen=True, slots=True)
class Usage:
    state: LicenseState
    period: str
    users: Allowance
    certificates: Allowance
    signatures_this_month: Allowance
    signatures_total: Allowance
    months: list[tuple[str, int]]


@dataclass(frozen=True, slots=True)
class SignatureReservation:
    period: str
    signatures_this_month: int
    signatures_total: int


# ---- the issuer key --------------------------------------------------------------


def issuer_key_from_settings(settings: Settings) -> Ed25519PublicKey:
    if settings.license_public_key:
        return load_public_key(settings.license_public_key)
    return builtin_issuer_key()


def bind_issuer_key(factory: sessionmaker[Session], settings: Settings) -> None:
    """Give every session of `factory` the issuer key licences are verified with."""
    factory.configure(info={ISSUER_KEY_INFO: issuer_key_from_settings(settings)})


def issuer_key(session: Session) -> Ed25519PublicKey:
    key = session.info.get(ISSUER_KEY_INFO)
    return key if isinstance(key, Ed25519PublicKey) else builtin_issuer_key()


# ---- capacity counters -------------------------------------------------------------


def _count_users(session: Session) -> int:
    # Disabled users hold no seat: disabling one frees it.
    return (
        session.scalar(
            select(func.count())
            .select_from(User)
            .where(User.status != UserStatus.DISABLED)
        )
        or 0
    )


_COUNTERS: dict[Capacity, Callable[[Session], int]] = {Capacity.USERS: _count_users}


def register_capacity_counter(
    capacity: Capacity, count: Callable[[Session], int]
) -> None:
    """Let the feature owning a counted resource say how many are in use.

    The certificate vault registers its counter here (it counts certificates that
    are not revoked or deleted); until it does, none exist to count.
    """
    _COUNTERS[capacity] = count


def _in_use(session: Session, capacity: Capacity) -> int:
    counter = _COUNTERS.get(capacity)
    return counter(session) if counter else 0


# ---- state ---------------------------------------------------------------------------


def _state_row(session: Session) -> LicenseStateRow:
    return session.get_one(LicenseStateRow, STATE_ROW_ID)


# The state row with the latest time a signature was counted (or refused) at, in one read.
_STATE_AND_LAST_COUNTED = select(
    LicenseStateRow,
    select(LicenseUsage.updated_at)
    .where(LicenseUsage.period == TOTAL_PERIOD)
    .scalar_subquery(),
).where(LicenseStateRow.id == STATE_ROW_ID)


def _state_and_now(
    session: Session, now: datetime | None
) -> tuple[LicenseStateRow, datetime]:
    """The state row, and `now` moved forward to the latest time counted at (never back)."""
    row, last_counted = session.execute(_STATE_AND_LAST_COUNTED).one()
    now = now or utcnow()
    return row, max(now, last_counted) if last_counted else now


def _effective_now(session: Session, now: datetime | None) -> datetime:
    return _state_and_now(session, now)[1]


def month_of(moment: datetime) -> str:
    return moment.strftime("%Y-%m")


def current_status(session: Session, *, now: datetime | None = None) -> LicenseStatus:
    """What the licence allows now: the installed licence, re-verified, or evaluation."""
    row, now = _state_and_now(session, now)
    if row.license_text is None:
        ends = row.evaluation_started_at + timedelta(days=EVALUATION_DAYS)
        running = now < ends
        return LicenseStatus(
            LicenseState.EVALUATION if running else LicenseState.MISSING,
            f"No licence is installed: evaluation mode until {ends:%Y-%m-%d %H:%M}Z."
            if running
            else f"No licence is installed and the evaluation ended on "
            f"{ends:%Y-%m-%d %H:%M}Z: install a licence to sign again.",
            now=now,
            valid_from=row.evaluation_started_at,
            valid_until=ends,
            limits=EVALUATION_LIMITS,
            features=EVALUATION_FEATURES,
            expiry_warned_days=row.expiry_warned_days,
        )
    try:
        payload = verify_license(row.license_text.encode("utf-8"), issuer_key(session))
    except LicenseFileRefused as exc:
        return LicenseStatus(
            LicenseState.INVALID,
            f"The installed licence does not verify: {exc.detail}",
            now=now,
            installed_at=row.installed_at,
            installed_by=row.installed_by,
        )
    if now >= payload.valid_until:
        state = LicenseState.EXPIRED
        detail = f"The licence expired on {payload.valid_until:%Y-%m-%d %H:%M}Z."
    elif now < payload.valid_from:
        state = LicenseState.INVALID
        detail = f"The licence is valid only from {payload.valid_from:%Y-%m-%d %H:%M}Z."
    else:
        state = LicenseState.VALID
        detail = f"Licensed to {payload.licensee} until {payload.valid_until:%Y-%m-%d %H:%M}Z."
    return LicenseStatus(
        state,
        detail,
        now=now,
        valid_from=payload.valid_from,
        valid_until=payload.valid_until,
        limits=payload.limits,
        features=frozenset(payload.features),
        license=payload,
        installed_at=row.installed_at,
        installed_by=row.installed_by,
        expiry_warned_days=row.expiry_warned_days,
    )


def usage(session: Session, *, now: datetime | None = None) -> Usage:
    """Counts against each limit: users, certificates, signatures this month and in total."""
    status = current_status(session, now=now)
    limits = status.limits or Limits(
        users=0, certificates=0, signatures_per_month=0, signatures_total=0
    )
    period = month_of(status.now)
    counts = dict(
        session.execute(select(LicenseUsage.period, LicenseUsage.signatures)).all()
    )
    months = sorted(
        ((p, n) for p, n in counts.items() if p != TOTAL_PERIOD), reverse=True
    )[:12]
    return Usage(
        state=status.state,
        period=period,
        users=Allowance(_in_use(session, Capacity.USERS), limits.users),
        certificates=Allowance(
            _in_use(session, Capacity.CERTIFICATES), limits.certificates
        ),
        signatures_this_month=Allowance(
            counts.get(period, 0), limits.signatures_per_month
        ),
        signatures_total=Allowance(
            counts.get(TOTAL_PERIOD, 0), limits.signatures_total
        ),
        months=months,
    )


def license_file(session: Session) -> str:
    """The installed licence file as uploaded. Raises: LicenseNotInstalled."""
    text = _state_row(session).license_text
    if text is None:
        raise LicenseNotInstalled(
            "No licence is installed: the server is in evaluation mode."
        )
    return text


# ---- install ---------------------------------------------------------------------------


def install_license(
    session: Session, *, actor: Actor, content: bytes, now: datetime | None = None
) -> LicenseStatus:
    """Verify and install a licence file; it replaces the one in force.

    Raises:
        LicenseFileRefused: malformed, tampered, from another issuer, not yet valid or
            expired (the refusal is audited; the licence in force stays).
    """
    now = _effective_now(session, now)
    try:
        payload = verify_license(content, issuer_key(session))
        if now < payload.valid_from:
            raise LicenseNotYetValid(
                f"The licence is valid from {payload.valid_from:%Y-%m-%d %H:%M}Z; "
                "install it then."
            )
        if now >= payload.valid_until:
            raise LicenseAlreadyExpired(
                f"The licence expired on {payload.valid_until:%Y-%m-%d %H:%M}Z."
            )
    except LicenseFileRefused as exc:
        audit_service.record_isolated(
            session,
            actor=actor,
            action="license.install_refused",
            resource_type="license",
            outcome=Outcome.FAILURE,
            details={
                "code": exc.code,
                "reason": exc.detail,
                "sha256": hashlib.sha256(content).hexdigest(),
                "size": len(content),
            },
        )
        raise
    row = _state_row(session)
    previous = current_status(session, now=now).license
    row.license_text = content.decode("utf-8")
    row.installed_at = now
    row.installed_by = actor.name
    row.expiry_warned_days = None
    session.flush()
    audit_service.record(
        session,
        actor=actor,
        action="license.installed",
        resource_type="license",
        resource_id=payload.license_id,
        details={
            "license_id": payload.license_id,
            "licensee": payload.licensee,
            "valid_from": payload.valid_from.isoformat(),
            "valid_until": payload.valid_until.isoformat(),
            "limits": payload.limits.model_dump(),
            "features": list(payload.features),
            "replaced": previous.license_id if previous else None,
            "sha256": hashlib.sha256(content).hexdigest(),
        },
    )
    return current_status(session, now=now)


# ---- enforcement -----------------------------------------------------------------------


def _refuse(
    session: Session,
    error: LicenseRefusal,
    *,
    actor: Actor,
    details: Mapping[str, Any],
) -> LicenseRefusal:
    audit_service.record_isolated(
        session,
        actor=actor,
        action="license.denied",
        resource_type="license",
        outcome=Outcome.DENIED,
        details={"code": error.code, "reason": error.detail, **details},
    )
    return error


def _usable(
    session: Session, *, actor: Actor, now: datetime | None, operation: str
) -> LicenseStatus:
    status = current_status(session, now=now)
    if status.state is LicenseState.INVALID:
        raise _refuse(
            session,
            LicenseInvalid(f"{status.detail} Install a valid licence."),
            actor=actor,
            details={"operation": operation},
        )
    return status


def reserve_signature(
    session: Session, *, actor: Actor, now: datetime | None = None
) -> SignatureReservation:
    """Count one signature against the monthly and total limits, in the caller's transaction.

    Call it last, just before the signing transaction commits: the counter rows
    stay locked until then. The conditional upserts make concurrent signers (threads,
    worker processes, hosts) pass a limit never, and a rollback un-counts.

    Raises:
        LicenseExpired: the licence (or the evaluation) has ended.
        LicenseInvalid: the installed licence does not verify.
        LicenseLimitReached: the monthly or total signature limit is used up.
    """
    status = _usable(session, actor=actor, now=now, operation="sign")
    if status.state in (LicenseState.EXPIRED, LicenseState.MISSING):
        # Remember having seen this moment: setting the clock back does not help.
        after_transaction(session, lambda own: _advance_clock(own, status.now))
        raise _refuse(
            session,
            LicenseExpired(status.detail),
            actor=actor,
            details={"operation": "sign"},
        )
    limits = status.limits or EVALUATION_LIMITS
    period = month_of(status.now)
    # A limit of 0 refuses even the first signature, which would make a new row.
    if _none_allowed(limits.signatures_per_month):
        raise _month_used_up(session, actor, limits, period)
    if _none_allowed(limits.signatures_total):
        raise _total_used_up(session, actor, limits)
    counted = _count_both(session, period, limits, status.now)
    in_month, in_total = counted.get(period), counted.get(TOTAL_PERIOD)
    if in_month is None or in_total is None:
        # Un-count the other at once (its row is locked by us), for callers that
        # catch the refusal and commit other work.
        for counted_period in counted:
            session.connection().execute(_UNCOUNT, {"counted_period": counted_period})
        if in_month is None:
            raise _month_used_up(session, actor, limits, period)
        raise _total_used_up(session, actor, limits)
    for name, count, allowed in (
        ("signatures_per_month", in_month, limits.signatures_per_month),
        ("signatures_total", in_total, limits.signatures_total),
    ):
        if count == allowed:
            announce(
                session,
                LicenseEvent.LIMIT_REACHED,
                {"limit": name, "allowed": allowed, "used": count, "period": period},
            )
    _announce_expiry(session, status)
    return SignatureReservation(period, in_month, in_total)


_NOW = bindparam("now", type_=LicenseUsage.updated_at.type)
# `updated_at` moved forward to :now, never backwards.
_LATEST = case(
    (LicenseUsage.updated_at.is_(None) | (LicenseUsage.updated_at < _NOW), _NOW),
    else_=LicenseUsage.updated_at,
)
_ADVANCE_CLOCK = (
    update(LicenseUsage)
    .where(LicenseUsage.period == TOTAL_PERIOD)
    .values(updated_at=_LATEST)
)
_UNCOUNT = (
    update(LicenseUsage)
    .where(LicenseUsage.period == bindparam("counted_period"))
    .values(signatures=LicenseUsage.signatures - 1)
)


def _advance_clock(session: Session, now: datetime) -> None:
    session.connection().execute(_ADVANCE_CLOCK, {"now": now})


def _none_allowed(limit: int | None) -> bool:
    return limit is not None and limit <= 0


def _month_used_up(
    session: Session, actor: Actor, limits: Limits, period: str
) -> LicenseRefusal:
    return _refuse(
        session,
        LicenseLimitReached(
            f"The licence allows {limits.signatures_per_month} signatures per month; "
            f"those of {period} are used up."
        ),
        actor=actor,
        details={
            "limit": "signatures_per_month",
            "allowed": limits.signatures_per_month,
            "period": period,
        },
    )


def _total_used_up(session: Session, actor: Actor, limits: Limits) -> LicenseRefusal:
    return _refuse(
        session,
        LicenseLimitReached(
            f"The licence allows {limits.signatures_total} signatures in total; "
            "they are used up."
        ),
        actor=actor,
        details={"limit": "signatures_total", "allowed": limits.signatures_total},
    )


def _count_both(
    session: Session, period: str, limits: Limits, now: datetime
) -> dict[str, int]:
    """Count one signature in the month's row and the total's (made if new), in one
    statement: signers queue on these rows until they commit, so every round trip
    saved while holding them is saved once per signature. The new counts by
    period; a period is missing when its limit is reached (its row unchanged)."""
    statement = _counting_statement(session.get_bind().dialect.name)
    rows = session.connection().execute(
        statement,
        {
            "counted_period": period,
            "now": now,
            "month_limit": limits.signatures_per_month,
            "total_limit": limits.signatures_total,
        },
    )
    return {row.period: row.signatures for row in rows}


_LIMIT = case(
    (
        LicenseUsage.period == TOTAL_PERIOD,
        bindparam("total_limit", type_=Integer),
    ),
    else_=bindparam("month_limit", type_=Integer),
)


@cache
def _counting_statement(dialect: str) -> Any:
    # Built once: the counters are hit on every signature.
    insert = postgresql_insert if dialect == "postgresql" else sqlite_insert
    # Rows in this order (month, total) in every transaction: no deadlock between signers.
    return (
        insert(LicenseUsage)
        .values(
            [
                {
                    "period": bindparam("counted_period"),
                    "signatures": 1,
                    "updated_at": _NOW,
                },
                {"period": TOTAL_PERIOD, "signatures": 1, "updated_at": _NOW},
            ]
        )
        .on_conflict_do_update(
            index_elements=[LicenseUsage.period],
            set_={"signatures": LicenseUsage.signatures + 1, "updated_at": _LATEST},
            # No limit (NULL): always counted.
            where=LicenseUsage.signatures
            < func.coalesce(_LIMIT, LicenseUsage.signatures + 1),
        )
        .returning(LicenseUsage.period, LicenseUsage.signatures)
    )


def check_capacity(
    session: Session,
    capacity: Capacity,
    *,
    actor: Actor,
    now: datetime | None = None,
) -> None:
    """Refuse to add one more user or certificate beyond the licence's limit.

    Creators are serialised on the licence row for the rest of their transaction,
    so two concurrent creations cannot both take the last place. The first user of
    an empty database (the bootstrap administrator) is always allowed.

    Raises:
        LicenseInvalid: the installed licence does not verify.
        LicenseLimitReached: the limit is reached.
    """
    session.execute(
        select(LicenseStateRow.id)
        .where(LicenseStateRow.id == STATE_ROW_ID)
        .with_for_update()
    )
    used = _in_use(session, capacity)
    if capacity is Capacity.USERS and used == 0:
        return  # the first user (the bootstrap administrator): always administrable
    status = _usable(session, actor=actor, now=now, operation=f"add {capacity.value}")
    limits = status.limits or EVALUATION_LIMITS
    allowed: int | None = getattr(limits, capacity.value)
    if allowed is None:
        return
    if used >= allowed:
        raise _refuse(
            session,
            LicenseLimitReached(
                f"The licence allows {allowed} {capacity.value}; {used} are in use."
            ),
            actor=actor,
            details={"limit": capacity.value, "allowed": allowed, "used": used},
        )
    if used + 1 == allowed:
        announce(
            session,
            LicenseEvent.LIMIT_REACHED,
            {"limit": capacity.value, "allowed": allowed, "used": used + 1},
        )


def require_feature(
    session: Session,
    feature: Feature,
    *,
    actor: Actor,
    now: datetime | None = None,
) -> None:
    """Raises: LicenseInvalid; LicenseFeatureMissing when the licence lacks `feature`."""
    status = _usable(session, actor=actor, now=now, operation=f"use {feature.value}")
    if feature.value not in status.features:
        raise _refuse(
            session,
            LicenseFeatureMissing(
                f"The licence does not include the '{feature.value}' feature."
            ),
            actor=actor,
            details={"feature": feature.value},
        )


# ---- warnings --------------------------------------------------------------------------


def scan_expiry(session: Session, *, now: datetime | None = None) -> int | None:
    """Announce `license.expiring` once per threshold (30, 7, 1 days); the threshold announced.

    Safe to run from several workers at once: a conditional UPDATE lets one win.
    """
    return _announce_expiry(session, current_status(session, now=now))


def _announce_expiry(session: Session, status: LicenseStatus) -> int | None:
    days_left = status.days_left
    if status.state not in (LicenseState.VALID, LicenseState.EVALUATION):
        return None
    if days_left is None or days_left > EXPIRY_WARNING_DAYS[0]:
        return None
    threshold = min(t for t in EXPIRY_WARNING_DAYS if days_left <= t)
    warned = status.expiry_warned_days
    if warned is not None and warned <= threshold:
        return None  # announced already (the UPDATE below decides races)
    won = session.execute(
        update(LicenseStateRow)
        .where(
            LicenseStateRow.id == STATE_ROW_ID,
            (LicenseStateRow.expiry_warned_days.is_(None))
            | (LicenseStateRow.expiry_warned_days > threshold),
        )
        .values(expiry_warned_days=threshold)
        .returning(LicenseStateRow.id)
    ).scalar_one_or_none()
    if won is None:
        return None
    announce(
        session,
        LicenseEvent.EXPIRING,
        {
            "state": status.state.value,
            "threshold_days": threshold,
            # The name notification rules give their thresholds.
            "days_before": threshold,
            "days_left": days_left,
            "valid_until": status.valid_until.isoformat()
            if status.valid_until
            else None,
            "license_id": status.license.license_id if status.license else None,
        },
    )
    return threshold
