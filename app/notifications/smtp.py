"""The SMTP settings: a settings section whose password is sealed, never returned, never audited."""

import base64

from sqlalchemy.orm import Session

from app.access.principal import Principal
from app.audit import service as audit_service
from app.core.crypto import EnvelopeCipher
from app.notifications.delivery import SendFailed, send_email
from app.notifications.destinations import (
    AllowList,
    DestinationRefused,
    DestinationUnresolved,
    resolve_host,
)
from app.notifications.errors import SmtpHostRefused, SmtpNotConfigured, SmtpTestFailed
from app.notifications.schemas import (
    SmtpSettings,
    SmtpSettingsRead,
    SmtpSettingsWrite,
    SmtpTestResult,
    StoredSmtpSettings,
)
from app.settings import service as settings_service
from app.settings.models import SettingsSection

SECTION = "smtp"
PASSWORD_PURPOSE = "smtp_password"  # noqa: S105 (a purpose label)


def stored(session: Session) -> StoredSmtpSettings:
    return settings_service.get_section(session, SECTION, StoredSmtpSettings)


def read_smtp(session: Session) -> SmtpSettingsRead:
    current = stored(session)
    return SmtpSettingsRead(
        **SmtpSettings.model_validate(current.model_dump()).model_dump(),
        password_set=current.sealed_password is not None,
    )


def load_smtp(
    session: Session, cipher: EnvelopeCipher | None
) -> tuple[SmtpSettings, str | None]:
    """The settings and the opened password, for sending.

    Raises: SendFailed (a password is stored but the master key is not loaded).
    """
    current = stored(session)
    if current.sealed_password is None:
        return current, None
    if cipher is None:
        raise SendFailed(
            "the master key is not loaded: the SMTP password cannot be opened"
        )
    blob = base64.b64decode(current.sealed_password)
    return current, cipher.open(session, blob, purpose=PASSWORD_PURPOSE).decode()


def replace_smtp(
    session: Session,
    principal: Principal,
    cipher: EnvelopeCipher,
    *,
    body: SmtpSettingsWrite,
    fields_set: set[str],
    allowed: AllowList,
) -> SmtpSettingsRead:
    """Store new settings; `password` absent from the request keeps the stored one, null clears it.

    The audit entry lists the changed fields and whether the password changed, never its value.

    Raises: SmtpHostRefused (checked again before each connection: DNS may change).
    """
    try:
        resolve_host(
            body.host, body.port, allowed, setting="SIGNVAULT_SMTP_ALLOWED_HOSTS"
        )
    except DestinationUnresolved:
        pass  # checked again at each send, when the name may resolve
    except DestinationRefused as exc:
        raise SmtpHostRefused(
            f"{exc}.",
            invalid_params=[{"name": "host", "in": "body", "reason": str(exc)}],
        ) from None
    before = stored(session)
    sealed = before.sealed_password
    password_changed = "password" in fields_set
    if password_changed:
        if sealed is not None:
            cipher.destroy(session, base64.b64decode(sealed))
        sealed = (
            base64.b64encode(
                cipher.seal(
                    session,
                    body.password.get_secret_value().encode(),
                    purpose=PASSWORD_PURPOSE,
                )
            ).decode()
            if body.password is not None
            else None
        )
    after = StoredSmtpSettings(
        **body.model_dump(exclude={"password"}, mode="json"), sealed_password=sealed
    )
    row = session.get(SettingsSection, SECTION)
    if row is None:
        row = SettingsSection(name=SECTION, value={})
        session.add(row)
    row.value = after.model_dump(mode="json")
    row.updated_by = principal.name
    old = before.model_dump(mode="json", exclude={"sealed_password"})
    new = after.model_dump(mode="json", exclude={"sealed_password"})
    changed = sorted(key for key in new if old.get(key) != new[key])
    audit_service.record(
        session,
        actor=principal.actor,
        action="notifications.smtp_updated",
        resource_type="settings",
        resource_id=SECTION,
        details={
            "before": {key: old.get(key) for key in changed},
            "after": {key: new[key] for key in changed},
            "password_changed": password_changed,
            "password_set": sealed is not None,
        },
    )
    session.flush()
    return read_smtp(session)


def send_test(
    session: Session,
    principal: Principal,
    cipher: EnvelopeCipher | None,
    *,
    to: str,
    allowed: AllowList,
) -> SmtpTestResult:
    """Send a test email now; audited either way.

    Raises: SmtpNotConfigured, SmtpTestFailed (with the server's answer, when
    it answered as an SMTP server).
    """
    config, password = _for_test(session, cipher)
    try:
        send_email(
            config,
            password,
            to=[to],
            subject="[SignVault] Test email",
            body=(
                "This is a test email from SignVault: notifications can reach "
                f"{to} through {config.host}:{config.port}.\n"
            ),
            allowed=allowed,
        )
    except SendFailed as exc:
        audit_service.record_isolated(
            session,
            actor=principal.actor,
            action="notifications.smtp_tested",
            resource_type="settings",
            resource_id=SECTION,
            details={"to": to, "error": str(exc)},
        )
        raise SmtpTestFailed(f"The test email was not sent: {exc}") from None
    audit_service.record(
        session,
        actor=principal.actor,
        action="notifications.smtp_tested",
        resource_type="settings",
        resource_id=SECTION,
        details={"to": to},
    )
    return SmtpTestResult(
        delivered=True, detail=f"{config.host}:{config.port} accepted the test email."
    )


def _for_test(
    session: Session, cipher: EnvelopeCipher | None
) -> tuple[SmtpSettings, str | None]:
    config = stored(session)
    if not config.host or not config.from_address:
        raise SmtpNotConfigured(
            "Set the SMTP server first: PUT /api/v1/notifications/smtp."
        )
    try:
        return load_smtp(session, cipher)
    except SendFailed as exc:
        raise SmtpTestFailed(str(exc)) from None
