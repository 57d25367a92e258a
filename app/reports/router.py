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
from app.reports.schemas import ActivityReport, Summary
from app.reports.service import GroupBy

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
