import base64
import json
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response
from pydantic import ValidationError
from starlette.datastructures import UploadFile

from app.access.entitlements import Entitlement
from app.access.policy import require
from app.access.principal import Principal
from app.core.deps import SessionDep
from app.core.errors import InvalidInput, problem_responses
from app.core.routing import AppRoute, is_json_media_type
from app.core.schemas import decode_base64
from app.license import service as license_service
from app.license.schemas import (
    AllowanceRead,
    LicenseBase64,
    LicenseFileBase64,
    LicenseRead,
    LimitsRead,
    MonthUsageRead,
    UsageRead,
)
from app.license.service import Allowance, LicenseStatus

router = APIRouter(prefix="/api/v1/license", tags=["license"], route_class=AppRoute)

ReadPrincipal = Annotated[Principal, Depends(require(Entitlement.LICENSE_READ))]
WritePrincipal = Annotated[Principal, Depends(require(Entitlement.LICENSE_WRITE))]

_UPLOAD_BODY = {
    "requestBody": {
        "required": True,
        "description": "The licence file: raw, as multipart field `file`, or base64 in JSON.",
        "content": {
            "application/octet-stream": {
                "schema": {"type": "string", "format": "binary"}
            },
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "properties": {"file": {"type": "string", "format": "binary"}},
                    "required": ["file"],
                }
            },
            "application/json": {
                "schema": LicenseBase64.model_json_schema(),
                "examples": {
                    "base64": {"value": {"license_base64": "ewogICJmb3JtYXQiOiAi…"}}
                },
            },
        },
    }
}


async def read_license_upload(request: Request) -> bytes:
    """The uploaded licence file's bytes, whichever of the three forms carried it."""
    content_type = request.headers.get("content-type", "")
    if content_type.startswith("multipart/form-data"):
        async with request.form() as form:
            upload = form.get("file")
            if not isinstance(upload, UploadFile):
                raise InvalidInput(
                    "The multipart body needs the licence in a field named 'file'.",
                    invalid_params=[
                        {"name": "file", "in": "body", "reason": "missing"}
                    ],
                )
            return await upload.read()
    body = await request.body()
    if not is_json_media_type(content_type):
        return body
    try:
        document = json.loads(body)
    except ValueError:
        return body  # refused as malformed (and audited) by the service
    if not isinstance(document, dict) or "license_base64" not in document:
        return body  # the licence file itself, sent as JSON
    try:
        wrapped = LicenseBase64.model_validate(document)
    except ValidationError:
        raise InvalidInput(
            "'license_base64' must be the base64 of a licence file, alone in the object.",
            invalid_params=[
                {"name": "license_base64", "in": "body", "reason": "not base64"}
            ],
        ) from None
    return decode_base64(wrapped.license_base64)


def _license_read(status: LicenseStatus) -> LicenseRead:
    payload = status.license
    return LicenseRead(
        state=status.state,
        detail=status.detail,
        license_id=payload.license_id if payload else None,
        licensee=payload.licensee if payload else None,
        issuer=payload.issuer if payload else None,
        issued_at=payload.issued_at if payload else None,
        valid_from=status.valid_from,
        valid_until=status.valid_until,
        days_left=status.days_left,
        limits=LimitsRead.model_validate(status.limits) if status.limits else None,
        features=sorted(status.features),
        installed_at=status.installed_at,
        installed_by=status.installed_by,
    )


def _allowance(allowance: Allowance) -> AllowanceRead:
    return AllowanceRead(
        used=allowance.used, limit=allowance.limit, remaining=allowance.remaining
    )


@router.post(
    "",
    responses=problem_responses(401, 403, 413, 422),
    openapi_extra=_UPLOAD_BODY,
)
def install_license(
    principal: WritePrincipal,
    session: SessionDep,
    content: Annotated[bytes, Depends(read_license_upload)],
) -> LicenseRead:
    """Install a licence file (raw, multipart `file`, or `{"license_base64"}`); it replaces the one in force."""
    status = license_service.install_license(
        session, actor=principal.actor, content=content
    )
    return _license_read(status)


@router.get("", responses=problem_responses(401, 403))
def read_license(_principal: ReadPrincipal, session: SessionDep) -> LicenseRead:
    """The licence in force: state (valid, evaluation, expired, invalid, missing), dates, limits, features."""
    return _license_read(license_service.current_status(session))


@router.get("/usage", responses=problem_responses(401, 403))
def read_license_usage(_principal: ReadPrincipal, session: SessionDep) -> UsageRead:
    """Counts against each limit: users, certificates, signatures this month and in total."""
    usage = license_service.usage(session)
    return UsageRead(
        state=usage.state,
        period=usage.period,
        users=_allowance(usage.users),
        certificates=_allowance(usage.certificates),
        signatures_this_month=_allowance(usage.signatures_this_month),
        signatures_total=_allowance(usage.signatures_total),
        months=[MonthUsageRead(period=p, signatures=n) for p, n in usage.months],
    )


@router.get(
    "/file",
    responses={
        **problem_responses(401, 403, 404, 422),
        200: {
            "description": "The installed licence file (or its base64 with `format=base64`).",
            "content": {
                "application/json": {"schema": LicenseFileBase64.model_json_schema()}
            },
        },
    },
)
def download_license(
    _principal: ReadPrincipal,
    session: SessionDep,
    file_format: Annotated[Literal["raw", "base64"], Query(alias="format")] = "raw",
) -> Response:
    """Download the installed licence file as uploaded (`format=raw`) or in base64."""
    text = license_service.license_file(session)
    if file_format == "base64":
        body = LicenseFileBase64(
            license_base64=base64.b64encode(text.encode("utf-8")).decode()
        )
        return Response(body.model_dump_json(), media_type="application/json")
    return Response(
        text,
        media_type="application/json",
        headers={"Content-Disposition": 'attachment; filename="signvault.license"'},
    )
