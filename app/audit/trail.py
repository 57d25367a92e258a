"""Audit-trail reports of one resource: JSON, or a PDF sealed by the system seal."""

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy.orm import Session

from app.audit import seal as seal_service
from app.audit import service as audit_service
from app.audit.errors import AuditTrailDisabled
from app.audit.models import AuditEvent
from app.audit.report import render_trail
from app.core.crypto import EnvelopeCipher
from app.core.types import utcnow
from app.signing import engine


@dataclass(frozen=True, slots=True)
class Trail:
    resource_type: str
    resource_id: str
    generated_at: datetime
    events: list[AuditEvent]


def trail(
    session: Session,
    *,
    actor: audit_service.Actor,
    resource_type: str,
    resource_id: str,
    report_format: str,
) -> Trail:
    """Every entry of one resource, in chain order; the download itself is audited.

    Raises:
        AuditTrailTooLarge: too many entries for one report.
    """
    events = audit_service.trail(
        session, resource_type=resource_type, resource_id=resource_id
    )
    audit_service.record(
        session,
        actor=actor,
        action="audit.trail_downloaded",
        resource_type=resource_type,
        resource_id=resource_id,
        details={"format": report_format, "entries": len(events)},
    )
    return Trail(resource_type, resource_id, utcnow(), events)


def sealed_pdf(
    session: Session,
    cipher: EnvelopeCipher | None,
    *,
    actor: audit_service.Actor,
    resource_type: str,
    resource_id: str,
) -> bytes:
    """The trail as a PDF report with a PAdES signature by the system seal.

    Raises:
        AuditTrailDisabled: audit-trail reports are switched off in the settings.
        SealUnavailable: no master key is loaded, or it cannot open the seal's key.
        AuditTrailTooLarge: too many entries for one report.
    """
    if not audit_service.trail_enabled(session):
        raise AuditTrailDisabled(
            "Audit-trail reports are disabled (PUT /api/v1/audit-logs/settings)."
        )
    material = seal_service.active_seal(session, cipher)
    found = trail(
        session,
        actor=actor,
        resource_type=resource_type,
        resource_id=resource_id,
        report_format="pdf",
    )
    pdf = render_trail(
        found.events,
        resource_type=resource_type,
        resource_id=resource_id,
        generated_at=found.generated_at,
        generated_by=actor.name or actor.kind.value,
        seal_subject=material.seal.subject,
        seal_fingerprint=material.seal.fingerprint_sha256,
    )
    signer = engine.simple_signer(
        certificate_der=material.seal.certificate_der,
        private_key_der=material.private_key_der,
        chain_der=material.chain_der,
    )
    return engine.seal_pdf(
        pdf, signer, reason=f"SignVault audit trail of {resource_type} {resource_id}"
    )
