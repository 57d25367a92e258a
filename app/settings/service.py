"""Named sections of server settings stored as JSON: read with defaults, replaced whole, audited.

A feature declares its section as a pydantic model whose defaults are the
values in force before anyone changes them, and registers it in `SECTIONS`.
"""

from datetime import timedelta
from typing import Any, TypeVar

from cryptography import x509
from pydantic import BaseModel, ValidationError
from sqlalchemy import event, select
from sqlalchemy.orm import Session, SessionTransaction
from sqlalchemy.orm.util import identity_key

from app.access.principal import Principal
from app.audit import service as audit_service
from app.certificates.parsing import to_pem
from app.core.config import Settings
from app.core.errors import InvalidInput
from app.settings.errors import InvalidTrustRoot, UploadLimitAboveServerCap
from app.settings.models import SettingsSection
from app.settings.schemas import (
    DocumentSettings,
    PasswordPolicy,
    SecuritySettings,
    SigningSettings,
)

PASSWORD_POLICY = "password-policy"  # noqa: S105 (a section name)
SECURITY = "security"
SIGNING = "signing"
DOCUMENTS = "documents"

SECTIONS: dict[str, type[BaseModel]] = {
    PASSWORD_POLICY: PasswordPolicy,
    SECURITY: SecuritySettings,
    SIGNING: SigningSettings,
    DOCUMENTS: DocumentSettings,
}

S = TypeVar("S", bound=BaseModel)


_ROWS = "settings_sections"


def get_section(session: Session, name: str, schema: type[S]) -> S:
    """The stored section, or its defaults; fields added since it was stored take their default."""
    row = _row(session, name)
    if row is None:
        return schema()
    try:
        return schema.model_validate(row.value)
    except ValidationError:
        # Stored by an older release that accepted other values: keep what still fits.
        defaults = schema().model_dump()
        kept = {}
        for key, value in row.value.items():
            try:
                schema.model_validate({**defaults, key: value})
            except ValidationError:
                continue
            kept[key] = value
        return schema.model_validate({**defaults, **kept})


def _row(session: Session, name: str) -> SettingsSection | None:
    """The section's row, if stored.

    The first use in a transaction reads every row (a request needs several
    sections, the table holds a few); held here, they stay in the session, where
    a change through them is seen. A row stored since that read is found in the
    session too.
    """
    rows: dict[str, SettingsSection] | None = session.info.get(_ROWS)
    if rows is None:
        rows = session.info[_ROWS] = {
            row.name: row for row in session.scalars(select(SettingsSection))
        }
    found = rows.get(name)
    if found is None:
        in_session = session.identity_map.get(identity_key(SettingsSection, name))
        found = in_session if isinstance(in_session, SettingsSection) else None
    return found


@event.listens_for(Session, "after_transaction_end")
def _forget_rows(session: Session, transaction: SessionTransaction) -> None:
    if transaction.parent is None:
        session.info.pop(_ROWS, None)


def put_section(session: Session, principal: Principal, *, name: str, value: S) -> S:
    """Replace a section; the audit entry holds the changed fields before and after."""
    schema = type(value)
    before = get_section(session, name, schema).model_dump(mode="json")
    after = value.model_dump(mode="json")
    row = session.get(SettingsSection, name)
    if row is None:
        row = SettingsSection(name=name, value=after)
        session.add(row)
    else:
        row.value = after
    row.updated_by = principal.name
    session.flush()
    changed = sorted(key for key in after if before.get(key) != after[key])
    audit_service.record(
        session,
        actor=principal.actor,
        action="settings.updated",
        resource_type="settings",
        resource_id=name,
        details={
            "before": {key: before.get(key) for key in changed},
            "after": {key: after[key] for key in changed},
        },
    )
    return value


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7396 §2: members of `patch` replace those of `target`, objects merge, null removes."""
    if not isinstance(patch, dict):
        return patch
    merged = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            merged.pop(key, None)
        else:
            merged[key] = merge_patch(merged.get(key), value)
    return merged


def patched_section(current: S, patch: dict[str, Any]) -> S:
    """`current` with an RFC 7396 merge patch applied; a removed member is back at its default.

    Raises:
        InvalidInput: the result is not a valid section (an unknown member, a bad value).
    """
    try:
        return type(current).model_validate(
            merge_patch(current.model_dump(mode="json"), patch)
        )
    except ValidationError as exc:
        raise InvalidInput(
            "The merge patch does not make a valid section.",
            invalid_params=[
                {
                    "name": ".".join(str(part) for part in error["loc"]),
                    "in": "body",
                    "reason": error["msg"],
                }
                for error in exc.errors()
            ],
        ) from None


def password_policy(session: Session) -> PasswordPolicy:
    return get_section(session, PASSWORD_POLICY, PasswordPolicy)


def security(session: Session) -> SecuritySettings:
    return get_section(session, SECURITY, SecuritySettings)


def token_lifetimes(
    session: Session, settings: Settings
) -> tuple[timedelta, timedelta]:
    """Access- and refresh-token lifetimes: the `security` section's, else the server settings'."""
    section = security(session)
    return (
        timedelta(
            seconds=section.access_token_ttl_seconds
            or settings.access_token_ttl_seconds
        ),
        timedelta(
            seconds=section.refresh_token_ttl_seconds
            or settings.refresh_token_ttl_seconds
        ),
    )


def signing(session: Session) -> SigningSettings:
    return get_section(session, SIGNING, SigningSettings)


def documents(session: Session) -> DocumentSettings:
    return get_section(session, DOCUMENTS, DocumentSettings)


def checked_signing(section: SigningSettings) -> SigningSettings:
    """The section with each trust root parsed and re-armoured (an expired one is fine).

    Raises:
        InvalidTrustRoot: an entry is not exactly one PEM certificate (422).
    """
    armoured = []
    for position, text in enumerate(section.trust_roots):
        try:
            armoured.append(_one_pem_certificate(text))
        except ValueError as exc:
            raise InvalidTrustRoot(
                f"trust_roots[{position}] is not a PEM certificate: {exc}",
                invalid_params=[
                    {
                        "name": f"trust_roots.{position}",
                        "in": "body",
                        "reason": str(exc),
                    }
                ],
            ) from None
    return section.model_copy(update={"trust_roots": armoured})


def _one_pem_certificate(text: str) -> str:
    data = text.encode()
    if data.count(b"-----BEGIN ") != 1:
        raise ValueError("give exactly one -----BEGIN CERTIFICATE----- block per entry")
    try:
        [certificate] = x509.load_pem_x509_certificates(data)
    except ValueError:
        raise ValueError("the block is not a valid X.509 certificate") from None
    # Stripped as the section schema strips strings, so a stored root reads back the same.
    return to_pem(certificate).strip()


def checked_documents(
    section: DocumentSettings, settings: Settings
) -> DocumentSettings:
    """The section, if its upload limit is within the server's cap on request bodies.

    Raises:
        UploadLimitAboveServerCap: `max_upload_bytes` above SIGNVAULT_MAX_UPLOAD_BYTES (422).
    """
    if (
        section.max_upload_bytes is not None
        and section.max_upload_bytes > settings.max_upload_bytes
    ):
        raise UploadLimitAboveServerCap(
            f"max_upload_bytes can lower the server's limit, not raise it: at most {settings.max_upload_bytes} (SIGNVAULT_MAX_UPLOAD_BYTES).",
            invalid_params=[
                {
                    "name": "max_upload_bytes",
                    "in": "body",
                    "reason": f"above {settings.max_upload_bytes}",
                }
            ],
        )
    return section
