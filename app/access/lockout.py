"""Failed logins, counted per account and source address in the database.

An address that fails `lockout_threshold` times in a row against an account is
locked out of that account for `lockout_minutes`. Other addresses are not: the
owner, logging in from elsewhere, never pays for an attacker's guesses. An
attacker who spreads guesses over many addresses slows the account down
instead. Once the account's recent failures from all addresses reach the
threshold, an address that has already failed against it must wait after each
failure, longer as failures grow (a Retry-After doubling up to
`lockout_minutes`). An address with no failure on the account is never held
back, and a success clears its counter. Password guesses alone never lock the
account itself; only an administrator does (status `locked`).

Accounts are keyed by the lower-cased name as typed, whether or not such a user
exists, so a refusal answers the same for a name that does not exist.
"""

import math
import uuid
from datetime import datetime, timedelta

from sqlalchemy import ColumnElement, case, delete, func, null, or_, select, update
from sqlalchemy.orm import Session

from app.access.errors import LoginDelayed, LoginLockedOut
from app.access.models import LoginFailure, User
from app.audit import service as audit_service
from app.audit.service import SYSTEM
from app.core.db import upsert_into
from app.core.types import name_key, utcnow
from app.notifications.outbox import Event, emit
from app.settings import service as settings_service
from app.settings.schemas import PasswordPolicy

# The source of the row that counts an account's failures from every address.
ACCOUNT_WIDE = "*"
UNKNOWN_SOURCE = "unknown"
# An address's failures are forgotten after this long without another (or the
# policy's lockout time, if longer): rows do not pile up for ever.
FORGET_AFTER = timedelta(days=1)


def account_key(username: str) -> str:
    return name_key(username)[:150]


def source_of(ip: str | None) -> str:
    return (ip or UNKNOWN_SOURCE)[:64]


def spread_delay(failures: int, policy: PasswordPolicy) -> int:
    """Seconds an address that failed must wait, given the account's recent failures."""
    threshold = policy.lockout_threshold
    if not threshold or failures < threshold:
        return 0
    return min(1 << min(failures - threshold, 30), policy.lockout_minutes * 60)


def check(session: Session, *, account: str, source: str, now: datetime) -> None:
    """Refuse an attempt from an address that is locked out of, or must still wait for, the account.

    Checked before the password, so a refused attempt learns nothing and costs no hashing.

    Raises:
        LoginLockedOut: the address failed `lockout_threshold` times in a row.
        LoginDelayed: the account is under spread attack and this address failed too recently.
    """
    policy = settings_service.password_policy(session)
    if not policy.lockout_threshold:
        return
    rows = {
        row.source: row
        for row in session.scalars(
            select(LoginFailure).where(
                LoginFailure.account == account,
                LoginFailure.source.in_((source, ACCOUNT_WIDE)),
            )
        )
    }
    mine, spread = rows.get(source), rows.get(ACCOUNT_WIDE)
    if mine is None:
        return
    if mine.locked_until is not None and mine.locked_until > now:
        wait = _seconds_until(mine.locked_until, now)
        raise LoginLockedOut(
            f"Too many failed logins for this account from your address; try again in {wait} s.",
            headers={"Retry-After": str(wait)},
        )
    if spread is None or spread.last_failed_at <= now - _window(policy):
        return
    until = mine.last_failed_at + timedelta(seconds=spread_delay(spread.count, policy))
    if until > now:
        wait = _seconds_until(until, now)
        raise LoginDelayed(
            f"This account has had {spread.count} recent failed logins; try again in {wait} s.",
            headers={"Retry-After": str(wait)},
        )


def count_failure(
    session: Session, *, account: str, source: str, user_id: uuid.UUID | None
) -> None:
    """Count a failed login against the account from `source`, in the caller's (own) transaction.

    Each increment is one `INSERT … ON CONFLICT DO UPDATE … RETURNING`, so
    concurrent failures in several processes each see a distinct count, and
    exactly one of them locks the address or raises the alarm.
    """
    policy = settings_service.password_policy(session)
    if not policy.lockout_threshold:
        return
    now = utcnow()
    forget = now - max(FORGET_AFTER, _window(policy))
    mine = _increment(
        session,
        account=account,
        source=source,
        now=now,
        restart=or_(
            LoginFailure.locked_until <= now, LoginFailure.last_failed_at < forget
        ),
    )
    spread = _increment(
        session,
        account=account,
        source=ACCOUNT_WIDE,
        now=now,
        restart=LoginFailure.last_failed_at <= now - _window(policy),
    )
    if mine == 1:
        # A new row (or a restarted one): sweep those nobody needs any more.
        session.execute(
            delete(LoginFailure).where(
                LoginFailure.last_failed_at < forget,
                or_(
                    LoginFailure.locked_until.is_(None), LoginFailure.locked_until < now
                ),
            )
        )
    user = session.get(User, user_id) if user_id is not None else None
    if mine == policy.lockout_threshold:
        until = now + timedelta(minutes=policy.lockout_minutes)
        session.execute(
            update(LoginFailure)
            .where(LoginFailure.account == account, LoginFailure.source == source)
            .values(locked_until=until)
        )
        if user is not None:
            _announce_locked_out(
                session, user, source=source, failures=mine, until=until
            )
    if spread == 2 * policy.lockout_threshold and user is not None:
        _announce_attack(
            session, user, account=account, failures=spread, since=now - _window(policy)
        )


def clear_source(session: Session, *, account: str, source: str) -> None:
    """A success from this address: its failures (the owner's typos) no longer count, here or account-wide."""
    cleared = session.execute(
        delete(LoginFailure)
        .where(LoginFailure.account == account, LoginFailure.source == source)
        .returning(LoginFailure.count)
    ).scalar_one_or_none()
    if cleared:
        session.execute(
            update(LoginFailure)
            .where(LoginFailure.account == account, LoginFailure.source == ACCOUNT_WIDE)
            .values(
                count=case(
                    (LoginFailure.count > cleared, LoginFailure.count - cleared),
                    else_=0,
                )
            )
        )


def clear_account(session: Session, *, account: str) -> int:
    """Forget every failure against the account (an administrator's unlock); returns the addresses cleared."""
    cleared: int = session.execute(
        delete(LoginFailure).where(
            LoginFailure.account == account, LoginFailure.source != ACCOUNT_WIDE
        )
    ).rowcount  # type: ignore[attr-defined]
    session.execute(
        delete(LoginFailure).where(
            LoginFailure.account == account, LoginFailure.source == ACCOUNT_WIDE
        )
    )
    return cleared


def _increment(
    session: Session,
    *,
    account: str,
    source: str,
    now: datetime,
    restart: ColumnElement[bool],
) -> int:
    statement = (
        upsert_into(session, LoginFailure)
        .values(
            account=account,
            source=source,
            count=1,
            last_failed_at=now,
            locked_until=None,
        )
        .on_conflict_do_update(
            index_elements=["account", "source"],
            set_={
                "count": case((restart, 1), else_=LoginFailure.count + 1),
                "last_failed_at": now,
                "locked_until": case(
                    (LoginFailure.locked_until <= now, null()),
                    else_=LoginFailure.locked_until,
                ),
            },
        )
        .returning(LoginFailure.count)
    )
    count: int = session.execute(statement).scalar_one()
    return count


def _window(policy: PasswordPolicy) -> timedelta:
    return timedelta(minutes=policy.lockout_minutes)


def _seconds_until(moment: datetime, now: datetime) -> int:
    return max(1, math.ceil((moment - now).total_seconds()))


def _announce_locked_out(
    session: Session, user: User, *, source: str, failures: int, until: datetime
) -> None:
    """An address was just locked out of the account: audit `user.locked` and emit it."""
    emit(
        session,
        Event.USER_LOCKED,
        {
            "user_id": user.id,
            "username": user.username,
            "email": user.email,
            "ip": source,
            "failures": failures,
            "locked_until": until,
        },
    )
    audit_service.record(
        session,
        actor=SYSTEM,
        action="user.locked",
        resource_type="user",
        resource_id=user.id,
        details={
            "username": user.username,
            "ip": source,
            "failures": failures,
            "locked_until": until.isoformat(),
        },
    )


def _announce_attack(
    session: Session, user: User, *, account: str, failures: int, since: datetime
) -> None:
    """Failures against the account reached twice the threshold: audit and emit `login.attack_suspected`."""
    addresses = session.scalar(
        select(func.count()).where(
            LoginFailure.account == account,
            LoginFailure.source != ACCOUNT_WIDE,
            LoginFailure.last_failed_at > since,
        )
    )
    emit(
        session,
        Event.LOGIN_ATTACK_SUSPECTED,
        {
            "user_id": user.id,
            "username": user.username,
            "email": user.email,
            "failures": failures,
            "addresses": addresses,
        },
    )
    audit_service.record(
        session,
        actor=SYSTEM,
        action="login.attack_suspected",
        resource_type="user",
        resource_id=user.id,
        details={
            "username": user.username,
            "failures": failures,
            "addresses": addresses,
        },
    )
