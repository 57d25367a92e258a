"""TOTP (RFC 6238) second factor: enrolment, confirmation, login codes that are never accepted twice."""

import hmac

import pyotp
from sqlalchemy import or_, update
from sqlalchemy.orm import Session

from app.access.models import User
from app.access.principal import Principal
from app.audit import service as audit_service
from app.audit.service import Actor
from app.auth.errors import TotpAlreadyEnabled, TotpCodeRejected, TotpNotEnabled
from app.core.crypto import EnvelopeCipher
from app.core.errors import ServiceUnavailable
from app.core.types import utcnow

PURPOSE = "totp_seed"
ISSUER = "SignVault"
# A code from the previous or next 30-second step is accepted (clock drift).
DRIFT_STEPS = 1


def require_cipher(cipher: EnvelopeCipher | None) -> EnvelopeCipher:
    """Raises: ServiceUnavailable when no master key is loaded (seeds cannot be sealed or opened)."""
    if cipher is None:
        raise ServiceUnavailable(
            "Two-factor authentication is unavailable: no master key is loaded."
        )
    return cipher


def start_enrolment(
    session: Session, cipher: EnvelopeCipher, principal: Principal, *, user: User
) -> tuple[str, str]:
    """A new seed, sealed and held pending until confirmed; returns it and its otpauth URI.

    Raises: TotpAlreadyEnabled.
    """
    if user.totp_seed is not None:
        raise TotpAlreadyEnabled(
            "Two-factor authentication is already enabled; disable it first."
        )
    if user.totp_pending_seed is not None:
        cipher.destroy(session, user.totp_pending_seed)
    seed = pyotp.random_base32()
    user.totp_pending_seed = cipher.seal(session, seed.encode(), purpose=PURPOSE)
    audit_service.record(
        session,
        actor=principal.actor,
        action="user.2fa_setup_started",
        resource_type="user",
        resource_id=user.id,
    )
    uri = pyotp.TOTP(seed).provisioning_uri(name=user.username, issuer_name=ISSUER)
    return seed, uri


def confirm_enrolment(
    session: Session,
    cipher: EnvelopeCipher,
    principal: Principal,
    *,
    user: User,
    code: str,
) -> None:
    """Turn 2FA on once the user proves their authenticator has the pending seed.

    Raises: TotpAlreadyEnabled, TotpNotEnabled (nothing pending), TotpCodeRejected.
    """
    if user.totp_seed is not None:
        raise TotpAlreadyEnabled("Two-factor authentication is already enabled.")
    if user.totp_pending_seed is None:
        raise TotpNotEnabled("Start with POST /api/v1/auth/2fa/setup.")
    seed = cipher.open(session, user.totp_pending_seed, purpose=PURPOSE).decode()
    step = _matching_step(seed, code)
    if step is None:
        _record_refused(session, principal.actor, user, "wrong_code")
        raise TotpCodeRejected(
            "The code does not match; check the authenticator's clock."
        )
    user.totp_seed, user.totp_pending_seed = user.totp_pending_seed, None
    user.totp_enabled_at = utcnow()
    user.totp_last_step = step
    audit_service.record(
        session,
        actor=principal.actor,
        action="user.2fa_enabled",
        resource_type="user",
        resource_id=user.id,
    )


def verify_login_code(
    session: Session, cipher: EnvelopeCipher, *, user: User, code: str
) -> bool:
    """Whether `code` is valid now and not used before; marks its time step used.

    The step is claimed with a conditional UPDATE, so a code replayed in a
    concurrent request (another worker) is refused too.
    """
    if user.totp_seed is None:
        return False
    seed = cipher.open(session, user.totp_seed, purpose=PURPOSE).decode()
    step = _matching_step(seed, code)
    if step is None:
        return False
    claimed = session.execute(
        update(User)
        .where(
            User.id == user.id,
            or_(User.totp_last_step.is_(None), User.totp_last_step < step),
        )
        .values(totp_last_step=step)
        .execution_options(synchronize_session=False)
    ).rowcount  # type: ignore[attr-defined]
    return bool(claimed)


def disable(
    session: Session,
    cipher: EnvelopeCipher | None,
    actor: Actor,
    *,
    user: User,
    code: str | None,
) -> None:
    """Turn 2FA off; the seed's data key is destroyed. `code=None`: by an administrator.

    Raises: TotpNotEnabled, TotpCodeRejected.
    """
    if user.totp_seed is None and user.totp_pending_seed is None:
        raise TotpNotEnabled("Two-factor authentication is not enabled.")
    if code is not None and (
        user.totp_seed is None
        or not verify_login_code(session, require_cipher(cipher), user=user, code=code)
    ):
        _record_refused(session, actor, user, "wrong_code")
        raise TotpCodeRejected("The code is wrong or was already used.")
    if cipher is not None:
        for blob in (user.totp_seed, user.totp_pending_seed):
            if blob is not None:
                cipher.destroy(session, blob)
    user.totp_seed = user.totp_pending_seed = None
    user.totp_enabled_at = None
    user.totp_last_step = None
    audit_service.record(
        session,
        actor=actor,
        action="user.2fa_disabled",
        resource_type="user",
        resource_id=user.id,
        details={"by": "code" if code is not None else "administrator"},
    )


def _matching_step(seed: str, code: str) -> int | None:
    totp = pyotp.TOTP(seed)
    now_step = totp.timecode(utcnow())
    for step in range(now_step - DRIFT_STEPS, now_step + DRIFT_STEPS + 1):
        if hmac.compare_digest(totp.generate_otp(step), code.strip()):
            return step
    return None


def _record_refused(session: Session, actor: Actor, user: User, reason: str) -> None:
    audit_service.record_isolated(
        session,
        actor=actor,
        action="user.2fa_refused",
        resource_type="user",
        resource_id=user.id,
        details={"reason": reason},
    )
