import uuid
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Query, Request, status
from fastapi.responses import StreamingResponse

from app.access.entitlements import Entitlement
from app.access.policy import require
from app.access.principal import Principal
from app.audit.router import trail_response
from app.audit.schemas import AuditTrail, TrailFormat
from app.core.deps import SessionDep
from app.core.errors import problem_responses
from app.core.pagination import Page, PageParams, page_of, page_params
from app.core.routing import AppRoute
from app.documents import service as documents_service
from app.documents.deps import UPLOAD_BODY, BlobsDep, ReceivedUpload, receive_upload
from app.documents.models import Document, DocumentStatus
from app.documents.responses import pdf_response, requested_range
from app.documents.schemas import DocumentRead, DocumentUpdate, DocumentVersionRead
from app.settings import service as settings_service

router = APIRouter(prefix="/api/v1/documents", tags=["documents"], route_class=AppRoute)

ReadPrincipal = Annotated[Principal, Depends(require(Entitlement.DOCUMENTS_READ))]
WritePrincipal = Annotated[Principal, Depends(require(Entitlement.DOCUMENTS_WRITE))]
DeletePrincipal = Annotated[Principal, Depends(require(Entitlement.DOCUMENTS_DELETE))]


def load_document(
    document_id: uuid.UUID, principal: ReadPrincipal, session: SessionDep
) -> Document:
    return documents_service.get_visible_document(session, principal, document_id)


VisibleDocument = Annotated[Document, Depends(load_document)]


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=DocumentRead,
    responses=problem_responses(400, 401, 403, 413, 415, 422, 503),
    openapi_extra=UPLOAD_BODY,
)
def upload_document(
    principal: WritePrincipal,
    session: SessionDep,
    blobs: BlobsDep,
    upload: Annotated[ReceivedUpload, Depends(receive_upload)],
) -> Document:
    """Store a PDF (multipart `file`, or a raw application/pdf body); returns id, sha256, size, page_count."""
    return documents_service.store_document(
        session,
        principal,
        blobs=blobs,
        upload=upload.file,
        title=upload.fields.get("title"),
        description=upload.fields.get("description", ""),
        external_reference=upload.fields.get("external_reference"),
        filename=upload.filename,
        max_bytes=settings_service.documents(session).max_upload_bytes,
    )


@router.get(
    "", response_model=Page[DocumentRead], responses=problem_responses(401, 403, 422)
)
def list_documents(
    principal: ReadPrincipal,
    session: SessionDep,
    params: Annotated[PageParams, Depends(page_params)],
    status_filter: Annotated[list[DocumentStatus], Query(alias="status")] = [],  # noqa: B006 (FastAPI copies defaults)
    created_from: datetime | None = None,
    created_to: datetime | None = None,
    title_like: Annotated[str | None, Query(max_length=300)] = None,
    owner_id: uuid.UUID | None = None,
    external_reference: Annotated[str | None, Query(max_length=200)] = None,
) -> dict[str, object]:
    """Documents visible to the caller (its own, its department's; all for administrators)."""
    rows, total = documents_service.list_documents(
        session,
        principal,
        params=params,
        status=status_filter,
        created_from=created_from,
        created_to=created_to,
        title_like=title_like,
        owner_id=owner_id,
        external_reference=external_reference,
    )
    return page_of(rows, total, params, DocumentRead)


@router.get(
    "/{document_id}",
    response_model=DocumentRead,
    responses=problem_responses(401, 403, 404),
)
def read_document(document: VisibleDocument) -> Document:
    """A document's metadata."""
    return document


@router.patch(
    "/{document_id}",
    response_model=DocumentRead,
    responses=problem_responses(401, 403, 404, 415, 422),
)
def update_document(
    document_id: uuid.UUID,
    body: DocumentUpdate,
    principal: WritePrincipal,
    session: SessionDep,
) -> Document:
    """Change title, description or external reference."""
    document = documents_service.get_visible_document(session, principal, document_id)
    return documents_service.update_document(
        session,
        principal,
        document=document,
        changes=body.model_dump(exclude_unset=True),
    )


@router.delete(
    "/{document_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=problem_responses(401, 403, 404),
)
def delete_document(
    document_id: uuid.UUID,
    principal: DeletePrincipal,
    session: SessionDep,
    blobs: BlobsDep,
) -> None:
    """Delete the document and every version's content permanently; its audit entries stay."""
    document = documents_service.get_visible_document(session, principal, document_id)
    documents_service.delete_document(
        session, principal, blobs=blobs, document=document
    )


@router.get(
    "/{document_id}/versions",
    response_model=list[DocumentVersionRead],
    responses=problem_responses(401, 403, 404),
)
def list_document_versions(session: SessionDep, document: VisibleDocument) -> Any:
    """The original and every signed version, oldest first."""
    return documents_service.list_versions(session, document)


@router.get(
    "/{document_id}/content",
    response_class=StreamingResponse,
    responses={
        200: {"content": {"application/pdf": {}}, "description": "The PDF bytes"},
        206: {
            "content": {"application/pdf": {}},
            "description": "The byte range asked for with `Range`",
        },
        **problem_responses(401, 403, 404, 410, 416, 503),
    },
)
def download_document(
    principal: ReadPrincipal,
    session: SessionDep,
    blobs: BlobsDep,
    document: VisibleDocument,
    version: Annotated[
        str,
        Query(description="`original`, `latest` or a version number.", max_length=20),
    ] = "latest",
    byte_range: Annotated[
        str | None,
        Header(
            alias="Range",
            max_length=200,
            description="One byte range: `bytes=a-b`, `bytes=a-` or `bytes=-n` (206).",
        ),
    ] = None,
    if_range: Annotated[
        str | None,
        Header(
            alias="If-Range",
            max_length=200,
            description="The ETag the range applies to; another version is sent whole.",
        ),
    ] = None,
) -> StreamingResponse:
    """The PDF bytes of the latest (default), the original, or a numbered version; one byte range with `Range`."""
    documents_service.require_content(document)
    chosen = documents_service.find_version(session, document, version)
    etag = f'"{chosen.sha256}"'
    span = requested_range(byte_range, size=chosen.size, if_range=if_range, etag=etag)
    documents_service.record_download(
        session, principal, document=document, version=chosen
    )
    filename = f"{document.title[:100] or 'document'}-v{chosen.number}.pdf".replace(
        '"', ""
    )
    content = documents_service.open_content(
        session,
        principal,
        blobs=blobs,
        document_id=document.id,
        sha256=chosen.sha256,
        version=chosen.number,
        start=span[0] if span else 0,
        end=span[1] if span else None,
    )
    return pdf_response(
        content,
        filename=filename,
        headers={"ETag": etag, "X-Content-SHA256": chosen.sha256},
        partial=span is not None,
    )


@router.get(
    "/{document_id}/audit-trail",
    response_model=AuditTrail,
    responses={
        200: {
            "description": "The trail as JSON, or as a sealed PDF report.",
            "content": {"application/pdf": {}},
        },
        **problem_responses(401, 403, 404, 409, 503),
    },
)
def read_document_audit_trail(
    document_id: uuid.UUID,
    request: Request,
    principal: ReadPrincipal,
    session: SessionDep,
    trail_format: Annotated[TrailFormat, Query(alias="format")] = TrailFormat.JSON,
) -> Any:
    """Every event of the document (upload, signatures with certificate fingerprints, downloads, verifications), as JSON or a sealed PDF."""
    document = documents_service.get_visible_document(session, principal, document_id)
    return trail_response(
        session,
        request.app.state.cipher,
        principal,
        resource_type="document",
        resource_id=str(document.id),
        trail_format=trail_format,
    )
