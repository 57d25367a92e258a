import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Request

from app.access.entitlements import Entitlement
from app.access.policy import require
from app.access.principal import Principal
from app.core.deps import SessionDep, SettingsDep
from app.core.errors import problem_responses
from app.core.routing import AppRoute
from app.documents import service as documents_service
from app.documents.deps import UPLOAD_BODY, BlobsDep, ReceivedUpload, receive_upload
from app.signing import validation
from app.signing.schemas import ValidationReport

router = APIRouter(prefix="/api/v1", tags=["signing"], route_class=AppRoute)

VerifyPrincipal = Annotated[Principal, Depends(require(Entitlement.DOCUMENTS_VERIFY))]


@router.post(
    "/verify",
    responses=problem_responses(400, 401, 403, 413, 415, 422),
    openapi_extra=UPLOAD_BODY,
)
def verify_upload(
    request: Request,
    principal: VerifyPrincipal,
    session: SessionDep,
    settings: SettingsDep,
    upload: Annotated[ReceivedUpload, Depends(receive_upload)],
) -> ValidationReport:
    """Validate every signature of an uploaded PDF: integrity, trust, revocation, timestamps, PAdES level, provenance."""
    return validation.validate_upload(
        session,
        principal,
        upload=upload.file,
        trust_roots=request.app.state.trust_roots,
        allow_fetching=settings.validation_online,
    )


@router.post(
    "/documents/{document_id}/verify",
    responses=problem_responses(401, 403, 404),
)
def verify_document(
    document_id: uuid.UUID,
    request: Request,
    principal: VerifyPrincipal,
    session: SessionDep,
    settings: SettingsDep,
    blobs: BlobsDep,
) -> ValidationReport:
    """Validate the signatures of a stored document's latest version."""
    document = documents_service.get_visible_document(session, principal, document_id)
    with blobs.open(str(document.id), document.latest_sha256) as content:
        return validation.validate_upload(
            session,
            principal,
            upload=content,
            trust_roots=request.app.state.trust_roots,
            allow_fetching=settings.validation_online,
            document_id=str(document.id),
        )
