import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Header, Query, Request, Response, status
from sqlalchemy.orm import Session, sessionmaker

from app.access.entitlements import Entitlement
from app.access.policy import require
from app.access.principal import Principal
from app.batches import service as batches_service
from app.batches.deps import BATCH_BODY, ReceivedBatch, receive_batch
from app.batches.models import Batch, BatchStatus
from app.batches.schemas import BatchRead, BatchSummary
from app.core.deps import SessionDep, SettingsDep
from app.core.errors import is_storage_full, problem_responses
from app.core.pagination import Page, PageParams, page_of, page_params
from app.core.routing import AppRoute
from app.core.storage import BlobStoreUnavailable
from app.documents.deps import BlobsDep

router = APIRouter(prefix="/api/v1/batches", tags=["signing"], route_class=AppRoute)

SignPrincipal = Annotated[Principal, Depends(require(Entitlement.DOCUMENTS_SIGN))]


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=BatchRead,
    responses={
        202: {
            "model": BatchRead,
            "description": "Accepted: signed in the background; follow `Location` for progress",
        },
        **problem_responses(400, 401, 403, 409, 413, 415, 422),
    },
    openapi_extra=BATCH_BODY,
)
def create_batch(
    request: Request,
    response: Response,
    principal: SignPrincipal,
    session: SessionDep,
    settings: SettingsDep,
    blobs: BlobsDep,
    received: Annotated[ReceivedBatch, Depends(receive_batch)],
    idempotency_key: Annotated[
        str | None,
        Header(
            alias="Idempotency-Key",
            max_length=200,
            description="Retrying with the same key returns the first batch instead of signing again.",
        ),
    ] = None,
) -> Batch:
    """Sign many documents with one certificate and options; small batches at once (201), large ones in the background (202).

    Stored documents by `document_ids` (JSON), and/or PDFs uploaded as multipart
    `files` parts (options in an `options` JSON part): each file becomes a document;
    one that cannot (not a PDF, unreadable, over the size limit) is a failed item.
    """
    batch, created = batches_service.create_batch(
        session,
        principal,
        body=received.body,
        uploads=received.uploads,
        blobs=blobs,
        max_file_bytes=settings.max_upload_bytes,
        idempotency_key=idempotency_key,
        run_now=received.total <= settings.batch_sync_max,
    )
    if created and batch.status == BatchStatus.RUNNING:
        # The batch and its audit entry are stored first: each document is then
        # signed in a transaction of its own, so one failure undoes only its document.
        session.commit()
        factory: sessionmaker[Session] = request.app.state.sessionmaker
        try:
            batches_service.run_batch(
                factory,
                batch.id,
                tools=batches_service.SigningTools(
                    request.app.state.vault,
                    request.app.state.blobs,
                    settings,
                    request.app.state.trust_roots,
                ),
            )
        except Exception as exc:
            if not (is_storage_full(exc) or isinstance(exc, BlobStoreUnavailable)):
                raise
            # The batch is stored: the background finishes it once space is freed
            # or the object store answers again (202).
        with factory() as reader:
            batch = batches_service.get_visible_batch(reader, principal, batch.id)
    else:
        batch = batches_service.get_visible_batch(session, principal, batch.id)
    if batch.status != BatchStatus.COMPLETED:
        response.status_code = status.HTTP_202_ACCEPTED
    response.headers["Location"] = f"{router.prefix}/{batch.id}"
    return batch


@router.get(
    "", response_model=Page[BatchSummary], responses=problem_responses(401, 403, 422)
)
def list_batches(
    principal: SignPrincipal,
    session: SessionDep,
    params: Annotated[PageParams, Depends(page_params)],
    batch_status: Annotated[list[BatchStatus], Query(alias="status")] = [],  # noqa: B006
) -> dict[str, Any]:
    """The caller's batches, newest first, without their items."""
    rows, total = batches_service.list_batches(
        session, principal, params=params, status=batch_status
    )
    return page_of(rows, total, params, BatchSummary)


@router.get(
    "/{batch_id}", response_model=BatchRead, responses=problem_responses(401, 403, 404)
)
def get_batch(
    batch_id: uuid.UUID, principal: SignPrincipal, session: SessionDep
) -> Batch:
    """A batch's progress and per-document results (its owner or an administrator)."""
    return batches_service.get_visible_batch(session, principal, batch_id)
