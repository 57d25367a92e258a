from typing import Annotated

from fastapi import APIRouter, Depends, Request, Response
from pydantic import BaseModel

from app.access.entitlements import Entitlement
from app.access.policy import Require, oauth2_scheme
from app.access.principal import Principal
from app.core.deps import SessionDep
from app.core.errors import problem_responses
from app.core.routing import AppRoute
from app.system import service as system_service

router = APIRouter(tags=["service"], route_class=AppRoute)


class HealthStatus(BaseModel):
    status: str


class ReadinessStatus(BaseModel):
    status: str
    checks: dict[str, str]


@router.get("/health")
def read_health() -> HealthStatus:
    """Liveness: the process answers."""
    return HealthStatus(status="ok")


@router.get("/ready", responses=problem_responses(503))
def read_readiness(request: Request, session: SessionDep) -> ReadinessStatus:
    """Readiness: free space above the minimum, blob store and database reachable, migrations current, keys loaded; 503 problem otherwise."""
    checks = system_service.readiness(
        session,
        token_keys=request.app.state.token_keys,
        cipher=request.app.state.cipher,
        filesystems=request.app.state.filesystems,
        blobs=request.app.state.blobs,
        min_free_bytes=request.app.state.settings.min_free_bytes,
    )
    return ReadinessStatus(status="ready", checks=checks)


class MetricsAccess(Require):
    """`/metrics` is public by default; with SIGNVAULT_METRICS_PUBLIC=false it needs `metrics:read`."""

    def __call__(  # type: ignore[override]  # None when public
        self,
        request: Request,
        session: SessionDep,
        token: Annotated[str | None, Depends(oauth2_scheme)],
    ) -> Principal | None:
        if request.app.state.settings.metrics_public:
            return None
        return super().__call__(request, session, token)


@router.get(
    "/metrics",
    response_class=Response,
    responses={
        200: {"content": {"text/plain": {}}, "description": "Prometheus text format"},
        **problem_responses(401, 403),
    },
)
def read_metrics(
    request: Request,
    _principal: Annotated[
        Principal | None, Depends(MetricsAccess(Entitlement.METRICS_READ))
    ],
) -> Response:
    """Prometheus metrics: requests, latencies, authentication failures."""
    return Response(
        request.app.state.metrics.exposition(),
        media_type="text/plain; version=0.0.4; charset=utf-8",
    )
