"""Email recipients of a rule: literal addresses, `assignees`, `role:<name>`; expanded when an event is dispatched."""

import uuid
from collections.abc import Iterable, Mapping
from typing import Any

from email_validator import EmailNotValidError, validate_email
from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from app.access.models import Role, User, UserStatus, user_roles
from app.certificates.models import CertificateAssignment

ASSIGNEES = "assignees"
ROLE_PREFIX = "role:"


def normalised_address(value: str) -> str | None:
    """The address in normal form, or None when it is not one.

    Intranet domains (`.local`, `.internal`) are accepted: mail servers of
    self-hosted installations deliver them.
    """
    try:
        return validate_email(
            value, check_deliverability=False, globally_deliverable=False
        ).normalized
    except EmailNotValidError:
        return None


def role_name(recipient: str) -> str | None:
    return recipient[len(ROLE_PREFIX) :] if recipient.startswith(ROLE_PREFIX) else None


def expand(
    session: Session, recipients: Iterable[str], payload: Mapping[str, Any]
) -> list[str]:
    """The addresses to mail, each once (case-insensitively), in a stable order.

    Users who are disabled or have no email address are left out; so is
    `assignees` for an event that names no certificate.
    """
    addresses: list[str] = []
    users: list[str | None] = []
    for recipient in recipients:
        name = role_name(recipient)
        if recipient == ASSIGNEES:
            users += _assignee_emails(session, payload.get("certificate_id"))
        elif name is not None:
            users += session.scalars(
                select(User.email)
                .join(user_roles, user_roles.c.user_id == User.id)
                .join(Role, Role.id == user_roles.c.role_id)
                .where(Role.name == name, User.status != UserStatus.DISABLED)
                .order_by(User.username_key)
            ).all()
        else:
            addresses.append(recipient)
    seen: set[str] = set()
    result = []
    for address in [*addresses, *(email for email in users if email)]:
        if address.lower() not in seen:
            seen.add(address.lower())
            result.append(address)
    return result


def _assignee_emails(session: Session, certificate_id: Any) -> list[str | None]:
    try:
        certificate = uuid.UUID(str(certificate_id))
    except ValueError:
        return []
    assigned = select(CertificateAssignment).where(
        CertificateAssignment.certificate_id == certificate
    )
    user_ids = assigned.with_only_columns(CertificateAssignment.user_id).where(
        CertificateAssignment.user_id.is_not(None)
    )
    department_ids = assigned.with_only_columns(
        CertificateAssignment.department_id
    ).where(CertificateAssignment.department_id.is_not(None))
    return list(
        session.scalars(
            select(User.email)
            .where(
                or_(User.id.in_(user_ids), User.department_id.in_(department_ids)),
                User.status != UserStatus.DISABLED,
            )
            .order_by(User.username_key)
        )
    )
