import uuid
from collections.abc import Iterator
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response, StreamingResponse
from pydantic import AwareDatetime
from sqlalchemy.orm import Session

from app.access.entitlements import Entitlement
from app.access.policy import require
from app.access.principal import Principal
from app.audit import anchors
from app.audit import seal as seal_service
from app.audit import service as audit_service
from app.audit import trail as trail_service
from app.audit.anchors import AnchorReason
from app.audit.export import chunked, csv_lines, jsonl_lines
from app.audit.models import AuditEvent, AuditSettings, SystemSeal
from app.audit.schemas import (
    AnchorCheckRead,
    AnchorRead,
    AuditEventRead,
    AuditSettingsRead,
    AuditSettingsUpdate,
    AuditTrail,
    ChainVerification,
    ExportFormat,
    SealRead,
    TrailFormat,
)
from app.audit.service import ActorKind, AuditFilters, Outcome
from app.core.deps import SessionDep
from app.core.errors import problem_responses
from app.core.pagination import Page, PageParams, page_of, page_params
from app.core.routing import AppRoute
from app.core.types import utcnow
from app.documents.responses import content_disposition

router = APIRouter(prefix="/api/v1/audit-logs", tags=["audit"], route_class=AppRoute)

ReadPrincipal = Annotated[Principal, Depends(require(Entitlement.AUDIT_READ))]
ExportPrincipal = Annotated[Principal, Depends(require(Entitlement.AUDIT_EXPORT))]
ConfigurePrincipal = Annotated[Principal, Depends(require(Entitlement.AUDIT_CONFIGURE))]


def audit_filters(
    actor_id: Annotated[
        str | None, Query(max_length=64, description="Exact actor id.")
    ] = None,
    actor_kind: Annotated[list[ActorKind], Query()] = [],  # noqa: B006 (FastAPI copies defaults)
    action: Annotated[
        str | None,
        Query(
            max_length=100,
            description="Exact action (`client.created`), or a prefix ending in `.` (`client.`).",
        ),
    ] = None,
    resource_type: Annotated[str | None, Query(max_length=64)] = None,
    resource_id: Annotated[str | None, Query(max_length=64)] = None,
    outcome: Annotated[list[Outcome], Query()] = [],  # noqa: B006
    ip: Annotated[str | None, Query(max_length=64)] = None,
    occurred_from: Annotated[
        AwareDatetime | None,
        Query(alias="from", description="Entries at or after this time (ISO 8601)."),
    ] = None,
    occurred_to: Annotated[
        AwareDatetime | None,
        Query(alias="to", description="Entries before this time (ISO 8601)."),
    ] = None,
) -> AuditFilters:
    return AuditFilters(
        actor_id=actor_id,
        actor_kind=tuple(actor_kind),
        action=action,
        resource_type=resource_type,
        resource_id=resource_id,
        outcome=tuple(outcome),
        ip=ip,
        occurred_from=occurred_from,
        occurred_to=occurred_to,
    )


FiltersDep = Annotated[AuditFilters, Depends(audit_filters)]


@router.get(
    "",
    response_model=Page[AuditEventRead],
    responses=problem_responses(401, 403, 422),
)
def list_audit_events(
    _principal: ReadPrincipal,
    session: SessionDep,
    filters: FiltersDep,
    params: Annotated[PageParams, Depends(page_params)],
) -> dict[str, object]:
    """Search the audit log (newest first; sortable by occurred_at, seq, action, actor_name)."""
    rows, total = audit_service.list_events(session, filters=filters, params=params)
    return page_of(rows, total, params, AuditEventRead)


_EXPORT_MEDIA = {
    ExportFormat.CSV: "text/csv; charset=utf-8",
    ExportFormat.JSONL: "application/x-ndjson",
}


@router.get(
    "/export",
    response_class=StreamingResponse,
    responses={
        200: {
            "description": "The matching entries in chain order, streamed.",
            "content": {media: {} for media in _EXPORT_MEDIA.values()},
        },
        **problem_responses(401, 403, 422, 503),
    },
)
def export_audit_events(
    request: Request,
    principal: ExportPrincipal,
    session: SessionDep,
    filters: FiltersDep,
    export_format: Annotated[ExportFormat, Query(alias="format")] = ExportFormat.JSONL,
) -> StreamingResponse:
    """Export matching entries with their chain hashes, ending with an anchor of the head (`signvault audit verify --file` re-checks a JSONL export)."""
    anchor = anchors.make_anchor(
        session,
        request.app.state.cipher,
        actor=principal.actor,
        reason=AnchorReason.EXPORT,
    )
    through_seq = anchor.seq
    audit_service.record(
        session,
        actor=principal.actor,
        action="audit.exported",
        resource_type="audit_log",
        details={
            "format": export_format.value,
            "filters": filters.describe(),
            "through_seq": through_seq,
        },
    )
    rows = audit_service.iter_export(
        request.app.state.sessionmaker, filters=filters, through_seq=through_seq
    )
    body: Iterator[bytes] = (
        csv_lines(rows, anchor=anchor.as_json())
        if export_format is ExportFormat.CSV
        else jsonl_lines(rows, anchor=anchor.as_json())
    )
    stamp = utcnow().strftime("%Y%m%dT%H%M%SZ")
    return StreamingResponse(
        chunked(body),
        media_type=_EXPORT_MEDIA[export_format],
        headers={
            "Content-Disposition": f'attachment; filename="audit-log-{stamp}.{export_format.value}"'
        },
    )


@router.get(
    "/verify",
    responses=problem_responses(401, 403, 422),
)
def verify_audit_chain(
    principal: ReadPrincipal,
    session: SessionDep,
    anchor: Annotated[
        str | None,
        Query(
            min_length=1,
            max_length=16_384,
            description="An anchor kept earlier (its JSON, or base64url of it): the chain must still hold the entry it signed.",
        ),
    ] = None,
) -> ChainVerification:
    """Recompute the hash chain: intact, or the first entry whose content or link does not match; with `anchor`, also a cut below it."""
    report, check = anchors.verify_presented(
        session, actor=principal.actor, text=anchor
    )
    verification = ChainVerification.model_validate(report)
    if check is None:
        return verification
    return verification.model_copy(
        update={
            "anchor": AnchorCheckRead(
                seq=check.anchor.seq,
                hash=check.anchor.hash,
                anchored_at=check.anchor.anchored_at,
                seal_fingerprint_sha256=check.anchor.seal_fingerprint_sha256,
                seal_active=check.seal_active,
                status=check.status.value,
                intact=check.intact,
                missing_from_seq=check.missing_from_seq,
                missing_to_seq=check.missing_to_seq,
                reason=check.reason,
            )
        }
    )


@router.post(
    "/anchors",
    status_code=201,
    responses=problem_responses(401, 403, 503),
)
def create_audit_anchor(
    request: Request, principal: ExportPrincipal, session: SessionDep
) -> AnchorRead:
    """Sign the chain head now with the system seal (also logged and sent as the `audit.anchor` event); keep it outside the server."""
    anchor = anchors.make_anchor(
        session,
        request.app.state.cipher,
        actor=principal.actor,
        reason=AnchorReason.REQUESTED,
    )
    return AnchorRead(**anchor.as_json())


@router.get(
    "/settings",
    response_model=AuditSettingsRead,
    responses=problem_responses(401, 403),
)
def read_audit_settings(
    _principal: ReadPrincipal, session: SessionDep
) -> AuditSettings:
    """Retention and audit-trail generation settings."""
    return audit_service.get_settings(session)


@router.put(
    "/settings",
    response_model=AuditSettingsRead,
    responses=problem_responses(401, 403, 415, 422),
)
def update_audit_settings(
    body: AuditSettingsUpdate, principal: ConfigurePrincipal, session: SessionDep
) -> AuditSettings:
    """Change retention (`retention_days: null` keeps entries for ever) or audit-trail generation."""
    return audit_service.update_settings(
        session, actor=principal.actor, changes=body.model_dump(exclude_unset=True)
    )


@router.get(
    "/trail",
    response_model=AuditTrail,
    responses={
        200: {
            "description": "The trail as JSON, or as a sealed PDF report.",
            "content": {"application/pdf": {}},
        },
        **problem_responses(401, 403, 409, 422, 503),
    },
)
def read_audit_trail(
    request: Request,
    principal: ReadPrincipal,
    session: SessionDep,
    resource_type: Annotated[str, Query(min_length=1, max_length=64)],
    resource_id: Annotated[str, Query(min_length=1, max_length=64)],
    trail_format: Annotated[TrailFormat, Query(alias="format")] = TrailFormat.JSON,
) -> Any:
    """Every audit entry of one resource, as JSON or as a PDF report sealed by the server (PAdES)."""
    return trail_response(
        session,
        request.app.state.cipher,
        principal,
        resource_type=resource_type,
        resource_id=resource_id,
        trail_format=trail_format,
    )


def trail_response(
    session: Session,
    cipher: Any,
    principal: Principal,
    *,
    resource_type: str,
    resource_id: str,
    trail_format: TrailFormat,
) -> Any:
    """The trail as JSON, or the sealed PDF report (shared with /documents/{id}/audit-trail)."""
    if trail_format is TrailFormat.PDF:
        pdf = trail_service.sealed_pdf(
            session,
            cipher,
            actor=principal.actor,
            resource_type=resource_type,
            resource_id=resource_id,
        )
        # The name carries the caller's text: content_disposition keeps a header
        # that is ASCII whatever it holds (RFC 6266's UTF-8 form beyond).
        name = f"audit-trail-{resource_type}-{resource_id}.pdf"
        return Response(
            pdf,
            media_type="application/pdf",
            headers={"Content-Disposition": content_disposition(name)},
        )
    found = trail_service.trail(
        session,
        actor=principal.actor,
        resource_type=resource_type,
        resource_id=resource_id,
        report_format="json",
    )
    return AuditTrail(
        resource_type=found.resource_type,
        resource_id=found.resource_id,
        generated_at=found.generated_at,
        count=len(found.events),
        events=[AuditEventRead.model_validate(e) for e in found.events],
    )


def _seal_read(seal: SystemSeal) -> SealRead:
    return SealRead(
        id=seal.id,
        subject=seal.subject,
        fingerprint_sha256=seal.fingerprint_sha256,
        not_after=seal.not_after,
        created_at=seal.created_at,
        certificate_pem=seal_service.certificate_pem(seal.certificate_der),
        root_certificate_pem=seal_service.certificate_pem(seal.root_certificate_der),
    )


@router.get("/seal", responses=problem_responses(401, 403, 503))
def read_system_seal(
    request: Request, _principal: ReadPrincipal, session: SessionDep
) -> SealRead:
    """The system seal certificate that signs audit-trail reports (made at first use), and the root to trust."""
    return _seal_read(seal_service.active_seal(session, request.app.state.cipher).seal)


@router.post("/seal/rotate", responses=problem_responses(401, 403, 503))
def rotate_system_seal(
    request: Request, principal: ConfigurePrincipal, session: SessionDep
) -> SealRead:
    """Replace the system seal with a new one; the old key is destroyed, reports it sealed stay valid."""
    return _seal_read(
        seal_service.rotate(session, request.app.state.cipher, actor=principal.actor)
    )


@router.get(
    "/{event_id}",
    response_model=AuditEventRead,
    responses=problem_responses(401, 403, 404, 422),
)
def read_audit_event(
    event_id: uuid.UUID, _principal: ReadPrincipal, session: SessionDep
) -> AuditEvent:
    """One audit entry."""
    return audit_service.get_event(session, event_id)
