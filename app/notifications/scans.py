"""The daily expiry scans: certificates and the licence, announced once per threshold.

`run_due_scans` is cheap enough to call every few minutes from every worker:
one UPSERT on the `expiry-scan` row claims the day's run, and when the run is
not due it matches nothing. Whoever claims it runs both scans; the others
return at once. Once-ness per certificate and threshold does not rely on the
claim: each announcement inserts a `NotificationMark` in the transaction of
its event, so even overlapping scans (a forced run, a clock jump) announce once.
"""

import os
import socket
import uuid
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from app.audit import service as audit_service
from app.certificates.models import SigningCertificate, StoredStatus
from app.core.db import unit_of_work, upsert_into
from app.core.types import utcnow
from app.license import service as license_service
from app.notifications.models import NotificationMark, NotificationRule, ScheduledJob
from app.notifications.outbox import Event, emit

EXPIRY_SCAN_JOB = "expiry-scan"
EXPIRY_SCAN_INTERVAL = timedelta(days=1)
# When no enabled `certificate.expiring` rule names its own `days_before`.
DEFAULT_THRESHOLDS = (30, 7, 1)
# Revoked certificates cannot sign again: their expiry is not news.
_SCANNED = (StoredStatus.ACTIVE, StoredStatus.DISABLED)


def run_due_scans(
    factory: sessionmaker[Session], *, now: datetime | None = None
) -> int:
    """Run the expiry scans if no worker has run them in the last day; events emitted.

    Safe from any number of threads, processes and hosts: `claim_job` lets one
    caller a day through. A run that fails part-way is not retried before the
    next day (what it announced stays announced; the rest comes then).
    """
    moment = now or utcnow()
    if not claim_job(factory, EXPIRY_SCAN_JOB, now=moment, every=EXPIRY_SCAN_INTERVAL):
        return 0
    return run_scans(factory, now=moment)


def run_scans(factory: sessionmaker[Session], *, now: datetime | None = None) -> int:
    """Both expiry scans now, whether due or not (tests, a manual run); events emitted."""
    moment = now or utcnow()
    with unit_of_work(factory) as session:
        emitted = scan_certificate_expiry(session, now=moment)
    with unit_of_work(factory) as session:
        if license_service.scan_expiry(session, now=moment) is not None:
            emitted += 1
    return emitted


def claim_job(
    factory: sessionmaker[Session],
    name: str,
    *,
    now: datetime,
    every: timedelta,
    claimer: str | None = None,
) -> bool:
    """Claim the periodic job `name` if it last ran `every` ago or more (or never).

    One statement: INSERT the job's row, or on conflict UPDATE it only where
    it is due. Concurrent callers on PostgreSQL wait on the row and see the
    winner's `last_run_at`; SQLite's writer lock serialises them. Exactly one
    gets a row back.
    """
    claim = {
        "last_run_at": now,
        "claimed_by": claimer or f"{socket.gethostname()}:{os.getpid()}",
    }
    with factory.begin() as session:
        claimed = session.execute(
            upsert_into(session, ScheduledJob)
            .values(name=name, **claim)
            .on_conflict_do_update(
                index_elements=[ScheduledJob.name],
                set_=claim,
                where=(ScheduledJob.last_run_at.is_(None))
                | (ScheduledJob.last_run_at <= now - every),
            )
            .returning(ScheduledJob.name)
        ).scalar_one_or_none()
    return claimed is not None


def certificate_thresholds(session: Session) -> tuple[int, ...]:
    """The `days_before` of enabled `certificate.expiring` rules, largest first (else 30, 7, 1)."""
    chosen: set[int] = set()
    for days in session.scalars(
        select(NotificationRule.days_before).where(
            NotificationRule.event == Event.CERTIFICATE_EXPIRING.value,
            NotificationRule.enabled.is_(True),
        )
    ):
        chosen.update(d for d in days or () if isinstance(d, int) and d > 0)
    return tuple(sorted(chosen, reverse=True)) or DEFAULT_THRESHOLDS


def scan_certificate_expiry(
    session: Session,
    *,
    now: datetime | None = None,
    thresholds: Sequence[int] | None = None,
) -> int:
    """Emit `certificate.expiring` once per certificate and threshold, `certificate.expired` once.

    In the caller's transaction; returns how many events were emitted. Deleted
    and revoked certificates are skipped. A threshold is crossed when at most
    that many days (of 24 hours) remain. When a certificate is past several
    thresholds not yet announced (first scan at 5 days left with thresholds 30
    and 7), only the smallest (7) is announced and the larger ones are marked
    as announced too, so recipients never hear "30 days" after "7 days".
    Once-ness: each announcement inserts its `NotificationMark`
    (`certificate.expiring:<id>:<days>`, `certificate.expired:<id>`) with
    ON CONFLICT DO NOTHING, and the event is emitted only if this scan inserted it.
    """
    moment = now or utcnow()
    crossing = sorted(thresholds or certificate_thresholds(session), reverse=True)
    horizon = moment + timedelta(days=crossing[0])
    certificates = session.scalars(
        select(SigningCertificate)
        .where(
            SigningCertificate.stored_status.in_(_SCANNED),
            SigningCertificate.not_after <= horizon,
        )
        .order_by(SigningCertificate.not_after, SigningCertificate.id)
    ).all()
    emitted = 0
    for certificate in certificates:
        left = certificate.not_after - moment
        if left <= timedelta(0):
            key = f"{Event.CERTIFICATE_EXPIRED.value}:{certificate.id}"
            if _mark(session, [key]):
                _announce(
                    session,
                    Event.CERTIFICATE_EXPIRED,
                    certificate,
                    _payload(certificate, left=left, days_before=None),
                )
                emitted += 1
            continue
        crossed = [t for t in crossing if left <= timedelta(days=t)]
        if not crossed:
            continue
        smallest = crossed[-1]
        fresh = _mark(session, [_expiring_key(certificate.id, t) for t in crossed])
        if _expiring_key(certificate.id, smallest) in fresh:
            _announce(
                session,
                Event.CERTIFICATE_EXPIRING,
                certificate,
                _payload(certificate, left=left, days_before=smallest),
            )
            emitted += 1
    return emitted


def _announce(
    session: Session,
    event: Event,
    certificate: SigningCertificate,
    payload: dict[str, object],
) -> None:
    """The event and its audit entry, once, in the scan's transaction (as licence warnings are)."""
    audit_service.record(
        session,
        actor=audit_service.SYSTEM,
        action=event.value,
        resource_type="certificate",
        resource_id=certificate.id,
        details={
            "certificate_name": certificate.name,
            "fingerprint": certificate.fingerprint_sha256,
            "not_after": certificate.not_after.isoformat(),
            "days_left": payload["days_left"],
            "days_before": payload["days_before"],
        },
    )
    emit(session, event, payload)


def _expiring_key(certificate_id: uuid.UUID, days: int) -> str:
    return f"{Event.CERTIFICATE_EXPIRING.value}:{certificate_id}:{days}"


def _mark(session: Session, keys: Iterable[str]) -> set[str]:
    """Insert the marks not stored yet; the keys this call inserted."""
    rows = [{"key": key} for key in keys]
    inserted = session.scalars(
        upsert_into(session, NotificationMark)
        .values(rows)
        .on_conflict_do_nothing(index_elements=[NotificationMark.key])
        .returning(NotificationMark.key)
    )
    return set(inserted)


def _payload(
    certificate: SigningCertificate, *, left: timedelta, days_before: int | None
) -> dict[str, object]:
    return {
        "certificate_id": certificate.id,
        "certificate_name": certificate.name,
        "subject": certificate.subject,
        "fingerprint": certificate.fingerprint_sha256,
        "not_after": certificate.not_after,
        "days_left": max(0, left // timedelta(days=1)),
        "days_before": days_before,
    }
