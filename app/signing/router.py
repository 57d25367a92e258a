import json
import uuid
from collections.abc import Mapping
from typing import Annotated, Any

from asn1crypto import x509 as asn1_x509
from fastapi import APIRouter, Depends, Header, Request, status
from fastapi.responses import Response
from pydantic import ValidationError
from sqlalchemy.orm import Session

from app.access.entitlements import Entitlement
from app.access.policy import require
from app.access.principal import Principal
from app.core.db import commit_now
from app.core.deps import SessionDep, SettingsDep
from app.core.errors import InvalidInput, problem_responses
from app.core.routing import AppRoute
from app.documents import service as documents_service
from app.documents.deps import (
    DOCUMENT_FIELDS,
    BlobsDep,
    ReceivedUpload,
    UploadReceiver,
    upload_body,
)
from app.documents.responses import content_disposition, pdf_response
from app.settings import service as settings_service
from app.signing import service as signing_service
from app.signing import validation
from app.signing.models import Signature
from app.signing.schemas import SignatureRead, SignDocumentRequest, ValidationReport

router = APIRouter(prefix="/api/v1", tags=["signing"], route_class=AppRoute)

VerifyPrincipal = Annotated[Principal, Depends(require(Entitlement.DOCUMENTS_VERIFY))]


@router.post(
    "/verify",
    responses=problem_responses(400, 401, 403, 413, 415, 422),
    openapi_extra=upload_body({}),
)
def verify_upload(
    request: Request,
    principal: VerifyPrincipal,
    session: SessionDep,
    settings: SettingsDep,
    upload: Annotated[ReceivedUpload, Depends(UploadReceiver(()))],
) -> ValidationReport:
    """Validate every signature of an uploaded PDF: integrity, trust, revocation, timestamps, PAdES level, provenance."""
    return validation.validate_upload(
        session,
        principal,
        upload=upload.file,
        trust_roots=_validation_roots(request, session),
        allow_fetching=settings.validation_online,
    )


@router.post(
    "/documents/{document_id}/verify",
    responses=problem_responses(401, 403, 404, 410, 503),
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
    documents_service.require_content(document)
    with documents_service.seekable_content(
        session,
        principal,
        blobs=blobs,
        document_id=document.id,
        sha256=document.latest_sha256,
    ) as content:
        return validation.validate_upload(
            session,
            principal,
            upload=content,
            trust_roots=_validation_roots(request, session),
            allow_fetching=settings.validation_online,
            document_id=str(document.id),
        )


def _validation_roots(
    request: Request, session: Session
) -> list[asn1_x509.Certificate]:
    return validation.validation_trust_roots(
        session, request.app.state.trust_roots, settings_service.signing(session)
    )


# A signed PDF up to this size is answered from memory; a larger one is streamed.
IN_MEMORY_ANSWER_BYTES = 1024 * 1024

SignPrincipal = Annotated[Principal, Depends(require(Entitlement.DOCUMENTS_SIGN))]
ReadPrincipal = Annotated[Principal, Depends(require(Entitlement.DOCUMENTS_READ))]
IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        max_length=200,
        description="Retrying with the same key returns the first result instead of signing again.",
    ),
]


@router.post(
    "/documents/{document_id}/sign",
    status_code=status.HTTP_201_CREATED,
    response_model=SignatureRead,
    responses=problem_responses(401, 403, 404, 409, 410, 415, 422, 502, 503),
)
def sign_document(
    document_id: uuid.UUID,
    body: SignDocumentRequest,
    request: Request,
    principal: SignPrincipal,
    session: SessionDep,
    settings: SettingsDep,
    blobs: BlobsDep,
    idempotency_key: IdempotencyKey = None,
) -> Signature:
    """Sign the latest version with a vault certificate (PAdES B-B to B-LTA); the document gets a new version."""
    document = documents_service.get_visible_document(
        session, principal, document_id, lock=True
    )
    signature = signing_service.sign_document(
        session,
        principal,
        vault=request.app.state.vault,
        blobs=blobs,
        settings=settings,
        trust_roots=request.app.state.trust_roots,
        document=document,
        request=signing_service.resolve_sign_request(session, body),
        idempotency_key=idempotency_key,
    )
    commit_now(session)  # the licence counters are not held while the answer is sent
    return signature


@router.get(
    "/documents/{document_id}/signatures",
    response_model=list[SignatureRead],
    responses=problem_responses(401, 403, 404),
)
def list_document_signatures(
    document_id: uuid.UUID, principal: ReadPrincipal, session: SessionDep
) -> Any:
    """Signatures this server applied to the document, oldest first."""
    document = documents_service.get_visible_document(session, principal, document_id)
    return signing_service.list_signatures(session, document)


def _form_field(prop: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    """A sign option's JSON schema as a multipart field: a string, an object as JSON text."""
    [schema] = [s for s in prop.get("anyOf", [prop]) if s.get("type") != "null"]
    if "$ref" in schema:
        schema = defs[schema["$ref"].rsplit("/", 1)[-1]]
    if schema.get("type") == "object":
        field: dict[str, Any] = {
            "type": "string",
            "contentMediaType": "application/json",
        }
    else:
        field = {
            key: schema[key]
            for key in ("type", "format", "enum", "minLength", "maxLength", "pattern")
            if key in schema
        }
    if "description" in prop:
        field["description"] = prop["description"]
    return field


def _sign_form_fields() -> dict[str, dict[str, Any]]:
    schema = SignDocumentRequest.model_json_schema()
    fields = {name: {"type": "string"} for name in DOCUMENT_FIELDS}
    fields["options"] = {
        "type": "string",
        "contentMediaType": "application/json",
        "description": "All the sign options as JSON (the /documents/{id}/sign body), instead of their own fields.",
    }
    for name, prop in schema["properties"].items():
        fields[name] = _form_field(prop, schema.get("$defs", {}))
    fields["appearance"]["description"] = (
        'JSON, e.g. {"page": 1, "box": [50, 50, 250, 110]}. '
        + fields["appearance"].get("description", "")
    )
    return fields


SIGN_OPTIONS = tuple(SignDocumentRequest.model_fields)
SIGN_FORM_FIELDS = _sign_form_fields()


@router.post(
    "/sign",
    response_class=Response,
    responses={
        200: {
            "content": {"application/pdf": {}},
            "description": "The signed PDF; headers name the stored document and signature",
        },
        **problem_responses(400, 401, 403, 404, 409, 413, 415, 422, 502, 503),
    },
    openapi_extra=upload_body(SIGN_FORM_FIELDS),
)
def sign_upload(
    request: Request,
    principal: SignPrincipal,
    session: SessionDep,
    settings: SettingsDep,
    blobs: BlobsDep,
    upload: Annotated[ReceivedUpload, Depends(UploadReceiver(tuple(SIGN_FORM_FIELDS)))],
    idempotency_key: IdempotencyKey = None,
) -> Response:
    """One-shot: upload and sign in one call; answers the signed PDF and keeps document and signature records.

    The sign options come as form fields of their own (`certificate_id`, `level`,
    `appearance` as JSON, ...) or all together as the JSON `options` part, not both.
    """
    body = _sign_request_from_form(upload.fields)
    signature = signing_service.sign_upload(
        session,
        principal,
        vault=request.app.state.vault,
        blobs=blobs,
        settings=settings,
        trust_roots=request.app.state.trust_roots,
        upload=upload.file,
        title=upload.fields.get("title"),
        description=upload.fields.get("description", ""),
        external_reference=upload.fields.get("external_reference"),
        filename=upload.filename,
        request=signing_service.resolve_sign_request(session, body),
        idempotency_key=idempotency_key,
    )
    commit_now(session)  # not held while the answer is read and sent
    headers = {
        "X-Document-ID": str(signature.document_id),
        "X-Signature-ID": str(signature.id),
        "X-Content-SHA256": signature.sha256_after,
    }
    content = documents_service.open_content(
        session,
        principal,
        blobs=blobs,
        document_id=signature.document_id,
        sha256=signature.sha256_after,
    )
    if content.length > IN_MEMORY_ANSWER_BYTES:
        return pdf_response(content, filename="signed.pdf", headers=headers)
    # Read here, in the worker thread: a streamed answer's thread-pool hops
    # cost more than reading a small file.
    with content:
        signed = content.read()
    return Response(
        signed,
        media_type="application/pdf",
        headers={**headers, "Content-Disposition": content_disposition("signed.pdf")},
    )


def _sign_request_from_form(fields: Mapping[str, str]) -> SignDocumentRequest:
    """The sign options of a one-shot form: its own fields, or the `options` JSON part."""
    given = {name: fields[name] for name in SIGN_OPTIONS if name in fields}
    options = fields.get("options")
    if options is not None and given:
        raise InvalidInput(
            "Give the sign options either as form fields or as the 'options' JSON part, not both.",
            invalid_params=[
                {"name": name, "in": "body", "reason": "given besides 'options'"}
                for name in given
            ],
        )
    if options is not None:
        return _validated_sign_request(options, prefix="options.")
    if "appearance" in given:
        try:
            given["appearance"] = json.loads(given["appearance"])
        except ValueError:
            raise InvalidInput(
                "The 'appearance' field is not JSON.",
                invalid_params=[
                    {
                        "name": "appearance",
                        "in": "body",
                        "reason": "must be a JSON object",
                    }
                ],
            ) from None
    return _validated_sign_request(given, prefix="")


def _validated_sign_request(
    raw: str | dict[str, Any], *, prefix: str
) -> SignDocumentRequest:
    try:
        if isinstance(raw, str):
            return SignDocumentRequest.model_validate_json(raw)
        return SignDocumentRequest.model_validate(raw)
    except ValidationError as exc:
        source = f"'{prefix.rstrip('.')}' part" if prefix else "form"
        raise InvalidInput(
            f"The {source} is not a valid sign request.",
            invalid_params=[
                {
                    "name": prefix + ".".join(str(p) for p in e["loc"]),
                    "in": "body",
                    "reason": e["msg"],
                }
                for e in exc.errors()
            ],
        ) from None
