"""External anchors: the chain head `(seq, hash, time)` signed by the system seal.

The hash chain shows an edited or removed entry, but someone who can write the
database can delete the newest entries and move the head back in one
transaction: what is left is a shorter chain that verifies. An anchor taken
earlier and kept outside the server (the process log, a webhook receiver, an
export) still names the entry at its `seq` and that entry's hash, so
verification against it finds the cut and names the missing range.

An anchor is the signature of its own `audit.anchored` entry: that entry is
chained first, then the head it became is signed. So the anchored entry's time
is the anchor's time, and a chain whose newest entry is an anchor needs no
other anchor until something else is appended.

The signed bytes are the canonical JSON (sorted keys, no spaces, UTF-8) of
`format, seq, hash, anchored_at, seal_fingerprint_sha256`; the signature is
RSA PKCS#1 v1.5 or ECDSA (DER), with SHA-256, by the seal certificate's key,
which the anchor carries (base64 DER) so that anyone can check it with openssl.
"""

import base64
import binascii
import functools
import json
import logging
import re
import sys
from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from sqlalchemy import func, select
from sqlalchemy.orm import Session, sessionmaker

from app.audit import seal as seal_service
from app.audit import service as audit_service
from app.audit.chain import ChainBreak, format_time
from app.audit.errors import AuditAnchorInvalid
from app.audit.models import AuditEvent, AuditSettings, SystemSeal
from app.core.crypto import EnvelopeCipher
from app.core.db import on_commit, unit_of_work
from app.core.types import utcnow
from app.notifications.outbox import Event, emit

FORMAT = "signvault-audit-anchor/1"
SIGNED_FIELDS = ("format", "seq", "hash", "anchored_at", "seal_fingerprint_sha256")
ACTION = "audit.anchored"
LOGGER_NAME = "signvault.audit.anchor"
RSA_SHA256 = "rsa-pkcs1v15-sha256"
ECDSA_SHA256 = "ecdsa-sha256"
# How often a worker looks whether an anchor is due (at most; sooner for a shorter period).
CHECK_SECONDS = 15.0

logger = logging.getLogger(LOGGER_NAME)

_HEX64 = re.compile(r"[0-9a-f]{64}")


class AnchorReason(StrEnum):
    REQUESTED = "requested"
    EXPORT = "export"
    ENTRIES = "entries"
    MINUTES = "minutes"


@dataclass(frozen=True, slots=True)
class Anchor:
    format: str
    seq: int
    hash: str
    anchored_at: str  # kept as signed: a re-formatted time would not verify
    seal_fingerprint_sha256: str
    signature_algorithm: str
    signature: str
    seal_certificate: str | None = None

    def signed_bytes(self) -> bytes:
        return signed_bytes(asdict(self))

    def as_json(self) -> dict[str, Any]:
        return asdict(self)

    def line(self) -> str:
        """The anchor as one line of JSON (the log line, the file `signvault audit anchor` writes)."""
        return json.dumps(self.as_json(), separators=(",", ":"))


def signed_bytes(fields: Mapping[str, Any]) -> bytes:
    """What the seal signs: `jq -jcS '{format, seq, hash, anchored_at, seal_fingerprint_sha256}'`."""
    return json.dumps(
        {name: fields[name] for name in SIGNED_FIELDS},
        sort_keys=True,
        separators=(",", ":"),
        ensure_ascii=False,
    ).encode()


# --- making anchors -------------------------------------------------------------


def install_log_handler() -> None:
    """Write anchors to stderr, one JSON line each, whatever the rest of logging does.

    Python logs only warnings without configuration; an anchor is an INFO
    record meant to reach the process log, so its logger gets its own handler.
    """
    if logger.handlers:
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(message)s"))
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)


def _sign(private_key_der: bytes, message: bytes) -> tuple[str, bytes]:
    key = serialization.load_der_private_key(private_key_der, password=None)
    if isinstance(key, rsa.RSAPrivateKey):
        return RSA_SHA256, key.sign(message, padding.PKCS1v15(), hashes.SHA256())
    if isinstance(key, ec.EllipticCurvePrivateKey):
        return ECDSA_SHA256, key.sign(message, ec.ECDSA(hashes.SHA256()))
    raise TypeError(f"a seal key of type {type(key).__name__} cannot sign anchors")


def make_anchor(
    session: Session,
    cipher: EnvelopeCipher | None,
    *,
    actor: audit_service.Actor,
    reason: AnchorReason,
) -> Anchor:
    """Record an `audit.anchored` entry, chain it now, sign the head it became; publish at commit.

    Publishing is the `audit.anchor` notification event (in this transaction) and,
    once it commits, one line on the `signvault.audit.anchor` logger.

    Raises:
        SealUnavailable: no master key is loaded, or it cannot open the seal's key.
    """
    material = seal_service.active_seal(session, cipher)
    fingerprint = material.seal.fingerprint_sha256
    entry = audit_service.record(
        session,
        actor=actor,
        action=ACTION,
        resource_type="audit_log",
        details={"reason": reason.value, "seal_fingerprint_sha256": fingerprint},
    )
    audit_service.append_pending(session)
    unsigned = Anchor(
        format=FORMAT,
        seq=entry.seq,
        hash=entry.hash,
        anchored_at=format_time(entry.occurred_at),
        seal_fingerprint_sha256=fingerprint,
        signature_algorithm="",
        signature="",
    )
    algorithm, signature = _sign(material.private_key_der, unsigned.signed_bytes())
    anchor = replace(
        unsigned,
        signature_algorithm=algorithm,
        signature=base64.b64encode(signature).decode(),
        seal_certificate=base64.b64encode(material.seal.certificate_der).decode(),
    )
    emit(session, Event.AUDIT_ANCHOR, anchor.as_json())
    on_commit(session, functools.partial(logger.info, "%s", anchor.line()))
    return anchor


def _last_anchored_seq(session: Session) -> int:
    return int(
        session.scalar(
            select(func.max(AuditEvent.seq)).where(AuditEvent.action == ACTION)
        )
        or 0
    )


def due_reason(
    session: Session,
    *,
    every_entries: int,
    every_minutes: float,
    now: datetime | None = None,
) -> AnchorReason | None:
    """Why an anchor is due now, or None: `every_entries` appended since the last
    anchor, or the oldest entry not yet anchored is `every_minutes` old."""
    head_seq, _ = audit_service.chain_head(session)
    last = _last_anchored_seq(session)
    if head_seq <= last:
        return None
    if every_entries and head_seq - last >= every_entries:
        return AnchorReason.ENTRIES
    if every_minutes:
        oldest = session.scalar(
            select(AuditEvent.occurred_at)
            .where(AuditEvent.seq > last)
            .order_by(AuditEvent.seq)
            .limit(1)
        )
        if oldest is not None and oldest <= (now or utcnow()) - timedelta(
            minutes=every_minutes
        ):
            return AnchorReason.MINUTES
    return None


def anchor_if_due(
    factory: sessionmaker[Session],
    *,
    cipher: EnvelopeCipher | None,
    every_entries: int,
    every_minutes: float,
    now: datetime | None = None,
) -> Anchor | None:
    """The periodic job: sign an anchor when one is due (see `due_reason`), else None.

    Any number of workers may run it: the decision is taken again under the
    lock every sealer takes first, so one anchor is made per occasion.
    """
    if not every_entries and not every_minutes:
        return None
    due = functools.partial(
        due_reason, every_entries=every_entries, every_minutes=every_minutes, now=now
    )
    with factory() as session:
        # A cheap look without a lock: nothing is due most of the time.
        if due(session) is None:
            return None
    with unit_of_work(factory) as session:
        session.execute(
            select(AuditSettings.id).where(AuditSettings.id == 1).with_for_update()
        )
        reason = due(session)
        if reason is None:
            return None
        return make_anchor(session, cipher, actor=audit_service.SYSTEM, reason=reason)


def check_seconds(every_minutes: float) -> float:
    """How often a worker offers to run `anchor_if_due`."""
    return min(CHECK_SECONDS, every_minutes * 60) if every_minutes else CHECK_SECONDS


# --- reading and checking anchors ---------------------------------------------------


def parse_anchor(text: str | bytes) -> Anchor:
    """An anchor from its JSON, the base64url of its JSON, or an export's `{"anchor": ...}` line.

    Checks its shape only; `verify_signature` checks who signed it.

    Raises:
        AuditAnchorInvalid: not an anchor.
    """
    raw = text.decode("utf-8", "replace") if isinstance(text, bytes) else text
    raw = raw.strip()
    try:
        value = json.loads(raw)
    except ValueError:
        try:
            value = json.loads(base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4)))
        except (binascii.Error, ValueError):
            raise AuditAnchorInvalid(
                "The anchor is neither JSON nor base64url of JSON."
            ) from None
    if isinstance(value, dict) and set(value) == {"anchor"}:
        value = value["anchor"]
    return anchor_from(value)


def anchor_from(value: object) -> Anchor:
    """An anchor from its decoded JSON.

    Raises:
        AuditAnchorInvalid: not an anchor.
    """
    if not isinstance(value, dict):
        raise AuditAnchorInvalid("The anchor must be a JSON object.")
    if value.get("format") != FORMAT:
        raise AuditAnchorInvalid(f'The anchor\'s "format" must be "{FORMAT}".')
    seq = value.get("seq")
    if not isinstance(seq, int) or isinstance(seq, bool) or seq < 1:
        raise AuditAnchorInvalid('The anchor\'s "seq" must be a positive integer.')
    for name in ("hash", "seal_fingerprint_sha256"):
        if not isinstance(value.get(name), str) or not _HEX64.fullmatch(value[name]):
            raise AuditAnchorInvalid(
                f'The anchor\'s "{name}" must be 64 lowercase hex digits.'
            )
    for name in ("anchored_at", "signature_algorithm", "signature"):
        if not isinstance(value.get(name), str) or not value[name]:
            raise AuditAnchorInvalid(f'The anchor has no "{name}": it is not signed.')
    try:
        aware = datetime.fromisoformat(value["anchored_at"]).tzinfo is not None
    except ValueError:
        aware = False
    if not aware:
        raise AuditAnchorInvalid(
            'The anchor\'s "anchored_at" is not an ISO 8601 UTC time.'
        )
    certificate = value.get("seal_certificate")
    if certificate is not None and not isinstance(certificate, str):
        raise AuditAnchorInvalid('The anchor\'s "seal_certificate" must be base64.')
    unknown = (
        set(value)
        - {*SIGNED_FIELDS, "signature_algorithm", "signature"}
        - {"seal_certificate"}
    )
    if unknown:
        raise AuditAnchorInvalid(
            f"The anchor has unknown fields: {', '.join(sorted(unknown))}."
        )
    return Anchor(
        format=FORMAT,
        seq=seq,
        hash=value["hash"],
        anchored_at=value["anchored_at"],
        seal_fingerprint_sha256=value["seal_fingerprint_sha256"],
        signature_algorithm=value["signature_algorithm"],
        signature=value["signature"],
        seal_certificate=certificate,
    )


def _b64(value: str, what: str) -> bytes:
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise AuditAnchorInvalid(f"The anchor's {what} is not base64.") from None


def signature_matches(anchor: Anchor, certificate_der: bytes) -> bool:
    """Whether the anchor's signature verifies under the certificate's public key."""
    try:
        key = x509.load_der_x509_certificate(certificate_der).public_key()
    except ValueError:
        return False
    try:
        signature = _b64(anchor.signature, "signature")
    except AuditAnchorInvalid:
        return False
    try:
        if (
            isinstance(key, rsa.RSAPublicKey)
            and anchor.signature_algorithm == RSA_SHA256
        ):
            key.verify(
                signature, anchor.signed_bytes(), padding.PKCS1v15(), hashes.SHA256()
            )
        elif (
            isinstance(key, ec.EllipticCurvePublicKey)
            and anchor.signature_algorithm == ECDSA_SHA256
        ):
            key.verify(signature, anchor.signed_bytes(), ec.ECDSA(hashes.SHA256()))
        else:
            return False
    except InvalidSignature:
        return False
    return True


def embedded_certificate(anchor: Anchor) -> bytes:
    """The seal certificate the anchor carries, checked against its fingerprint.

    Raises:
        AuditAnchorInvalid: none, or it is not the one the fingerprint names.
    """
    if anchor.seal_certificate is None:
        raise AuditAnchorInvalid("The anchor carries no seal certificate.")
    der = _b64(anchor.seal_certificate, "seal certificate")
    if seal_service.fingerprint(der) != anchor.seal_fingerprint_sha256:
        raise AuditAnchorInvalid(
            "The anchor's seal certificate is not the one its fingerprint names."
        )
    return der


def verify_signature(session: Session, anchor: Anchor) -> SystemSeal:
    """The seal (active or retired) that signed the anchor.

    Seals are looked up by fingerprint among those this server made: a retired
    seal's key is destroyed but its certificate is kept, so anchors it signed
    stay verifiable after a rotation. A certificate the anchor carries is only
    compared, never trusted.

    Raises:
        AuditAnchorInvalid: signed by no seal of this server, or the signature
            does not verify (forged or altered).
    """
    seal = session.scalars(
        select(SystemSeal).where(
            SystemSeal.fingerprint_sha256 == anchor.seal_fingerprint_sha256
        )
    ).first()
    if seal is None:
        raise AuditAnchorInvalid(
            f"The anchor names seal {anchor.seal_fingerprint_sha256}, which is not a seal of this server."
        )
    if (
        anchor.seal_certificate is not None
        and embedded_certificate(anchor) != seal.certificate_der
    ):
        raise AuditAnchorInvalid(
            "The anchor's seal certificate differs from the seal of this server."
        )
    if not signature_matches(anchor, seal.certificate_der):
        raise AuditAnchorInvalid(
            "The anchor's signature does not verify under the seal it names: "
            "it is forged or was altered."
        )
    return seal


class AnchorStatus(StrEnum):
    MATCHED = "matched"  # the entry at the anchor's seq is there, with its hash
    PURGED = "purged"  # retention removed it legitimately; the chain reached it
    TRUNCATED = "truncated"  # entries up to the anchor's seq are gone
    MISMATCH = "mismatch"  # the entry at the anchor's seq is another one


@dataclass(frozen=True, slots=True)
class AnchorCheck:
    anchor: Anchor
    seal_active: bool
    status: AnchorStatus
    head_seq: int
    missing_from_seq: int | None = None
    missing_to_seq: int | None = None
    event_id: str | None = None
    reason: str | None = None

    @property
    def intact(self) -> bool:
        return self.status in (AnchorStatus.MATCHED, AnchorStatus.PURGED)

    def chain_break(self) -> ChainBreak | None:
        if self.intact:
            return None
        return ChainBreak(
            self.missing_from_seq or self.anchor.seq, self.event_id, self.reason or ""
        )


def check_chain(session: Session, anchor: Anchor, *, seal: SystemSeal) -> AnchorCheck:
    """Compare the stored chain with a (signature-checked) anchor."""
    head_seq, _ = audit_service.chain_head(session)
    checkpoint = audit_service.latest_checkpoint(session)
    check = functools.partial(AnchorCheck, anchor, seal.is_active, head_seq=head_seq)
    by = f"the anchor of {anchor.anchored_at} vouches for entry {anchor.seq}"
    if checkpoint is not None and anchor.seq <= checkpoint.through_seq:
        anchored_at = datetime.fromisoformat(anchor.anchored_at)
        if (
            anchor.seq == checkpoint.through_seq
            and checkpoint.through_hash != anchor.hash
        ):
            return check(
                AnchorStatus.MISMATCH,
                missing_from_seq=anchor.seq,
                missing_to_seq=anchor.seq,
                reason=f"the retention checkpoint's hash of entry {anchor.seq} is not the anchored one: {by}",
            )
        if anchored_at >= checkpoint.cutoff:
            # The anchored entry is as old as the anchor: no purge with this cutoff removed it.
            return check(
                AnchorStatus.TRUNCATED,
                missing_from_seq=anchor.seq,
                missing_to_seq=anchor.seq,
                reason=(
                    f"a retention checkpoint claims entries up to {checkpoint.through_seq} were purged "
                    f"before {format_time(checkpoint.cutoff)}, but {by}, which is newer"
                ),
            )
        return check(
            AnchorStatus.PURGED,
            reason=f"entry {anchor.seq} was purged by retention (checkpoint at {checkpoint.through_seq}); the chain reached it",
        )
    stored = session.execute(
        select(AuditEvent.id, AuditEvent.hash).where(AuditEvent.seq == anchor.seq)
    ).first()
    if stored is not None and stored.hash == anchor.hash and head_seq >= anchor.seq:
        return check(AnchorStatus.MATCHED)
    if stored is not None and head_seq >= anchor.seq:
        return check(
            AnchorStatus.MISMATCH,
            missing_from_seq=anchor.seq,
            missing_to_seq=anchor.seq,
            event_id=str(stored.id),
            reason=(
                f"entry {anchor.seq} is not the anchored one (its hash differs): "
                f"it, and possibly entries before it, were replaced; {by}"
            ),
        )
    kept_below = session.scalar(
        select(func.max(AuditEvent.seq)).where(AuditEvent.seq < anchor.seq)
    )
    start = max(
        kept_below or 0, checkpoint.through_seq if checkpoint is not None else 0
    )
    missing_from = min(start, head_seq) + 1
    return check(
        AnchorStatus.TRUNCATED,
        missing_from_seq=missing_from,
        missing_to_seq=anchor.seq,
        reason=(
            f"entries {missing_from} to {anchor.seq} are missing: the chain head names "
            f"{head_seq}, but {by}"
        ),
    )


def verify_against(
    session: Session, anchor: Anchor
) -> tuple[audit_service.ChainReport, AnchorCheck]:
    """The chain verified, then compared with the anchor; the report's verdict covers both.

    Raises:
        AuditAnchorInvalid: the anchor's signature does not verify (see `verify_signature`).
    """
    seal = verify_signature(session, anchor)
    report = audit_service.verify(session)
    check = check_chain(session, anchor, seal=seal)
    if report.broken is None and not check.intact:
        report = replace(report, intact=False, broken=check.chain_break())
    return report, check


def verify_presented(
    session: Session,
    *,
    actor: audit_service.Actor,
    text: str | bytes | None,
    details: Mapping[str, Any] | None = None,
) -> tuple[audit_service.ChainReport, AnchorCheck | None]:
    """Verify the chain, and against the anchor presented if any; audited either way.

    Raises:
        AuditAnchorInvalid: the anchor is malformed, unsigned, forged or by an
            unknown seal (recorded as a failed verification).
    """
    if text is None:
        report = audit_service.verify(session)
        audit_service.record_verification(
            session, actor=actor, report=report, details=details
        )
        return report, None
    try:
        report, check = verify_against(session, parse_anchor(text))
    except AuditAnchorInvalid as exc:
        audit_service.record_isolated(
            session,
            actor=actor,
            action="audit.verified",
            resource_type="audit_log",
            details={**(details or {}), "anchor": {"invalid": exc.detail}},
        )
        raise
    audit_service.record_verification(
        session,
        actor=actor,
        report=report,
        details={
            **(details or {}),
            "anchor": {
                "seq": check.anchor.seq,
                "status": check.status.value,
                "missing_from_seq": check.missing_from_seq,
                "missing_to_seq": check.missing_to_seq,
            },
        },
    )
    return report, check
