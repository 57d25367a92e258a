from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from pydantic import AwareDatetime

from app.access.entitlements import Entitlement
from app.access.policy import require
from app.access.principal import Principal
from app.audit.service import Outcome
from app.core.deps import SessionDep
from app.core.errors import problem_responses
from app.core.routing import AppRoute
from app.reports import service as reports_service
from app.reports.schemas import (
    ActivityReport,
    DocumentCounts,
    SignatureBucketRead,
    SignatureReport,
    Summary,
)
from app.reports.service import GroupBy, SignatureGroupBy

router = APIRouter(prefix="/api/v1/reports", tags=["reports"], route_class=AppRoute)

ReadPrincipal = Annotated[Principal, Depends(require(Entitlement.REPORTS_READ))]


@router.get("/summary", response_model=Summary, responses=problem_responses(401, 403))
def read_summary(_principal: ReadPrincipal, session: SessionDep) -> Any:
    """Dashboard figures: users and API clients by status, departments, audit activity."""
    return reports_service.summary(session)


@router.get(
    "/activity",
    response_model=ActivityReport,
    response_model_by_alias=True,
    responses=problem_responses(401, 403, 422),
)
def read_activity(
    _principal: ReadPrincipal,
    session: SessionDep,
    group_by: GroupBy = GroupBy.DAY,
    occurred_from: Annotated[
        AwareDatetime | None,
        Query(
            alias="from",
            description="Start (inclusive); default 30 days (day) or 12 months (month) before `to`.",
        ),
    ] = None,
    occurred_to: Annotated[
        AwareDatetime | None,
        Query(alias="to", description="End (exclusive); default now."),
    ] = None,
    action: Annotated[
        str | None,
        Query(max_length=100, description="Exact action, or a prefix ending in `.`."),
    ] = None,
    outcome: Annotated[list[Outcome], Query()] = [],  # noqa: B006 (FastAPI copies defaults)
    top: Annotated[
        int, Query(ge=1, le=1000, description="Buckets for action, actor, outcome.")
    ] = 10,
) -> Any:
    """Audit activity counted per day or month (UTC, zero-filled), action, actor or outcome."""
    return reports_service.activity(
        session,
        occurred_from=occurred_from,
        occurred_to=occurred_to,
        group_by=group_by,
        action=action,
        outcome=outcome,
        top=top,
    )


@router.get(
    "/signatures",
    response_model=SignatureReport,
    response_model_by_alias=True,
    responses=problem_responses(401, 403, 422),
)
def read_signature_report(
    _principal: ReadPrincipal,
    session: SessionDep,
    group_by: SignatureGroupBy = SignatureGroupBy.DAY,
    signed_from: Annotated[
        AwareDatetime | None,
        Query(
            alias="from",
            description="Start (inclusive); default 30 days or 12 months before `to`.",
        ),
    ] = None,
    signed_to: Annotated[
        AwareDatetime | None,
        Query(alias="to", description="End (exclusive); default now."),
    ] = None,
    top: Annotated[
        int,
        Query(ge=1, le=1000, description="Buckets for user, department, certificate."),
    ] = 100,
) -> Any:
    """Signatures per UTC day or month (zero-filled), signer, department or certificate."""
    start, end, total, buckets = reports_service.signatures(
        session,
        signed_from=signed_from,
        signed_to=signed_to,
        group_by=group_by,
        top=top,
    )
    return SignatureReport(
        signed_from=start,
        signed_to=end,
        group_by=group_by.value,
        total=total,
        buckets=[
            SignatureBucketRead(key=b.key, count=b.count, label=b.label)
            for b in buckets
        ],
    )


@router.get(
    "/documents", response_model=DocumentCounts, responses=problem_responses(401, 403)
)
def read_document_report(_principal: ReadPrincipal, session: SessionDep) -> Any:
    """Documents by status, and the bytes they hold."""
    return reports_service.documents(session)
