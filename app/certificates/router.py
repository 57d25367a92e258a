import dataclasses
import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, File, Form, Query, UploadFile, status
from fastapi.responses import Response

from app.certificates import service as vault_service
from app.certificates.deps import (
    AssignPrincipal,
    CertificateDep,
    CipherDep,
    ReadPrincipal,
    WritePrincipal,
)
from app.certificates.models import (
    CertificateAssignment,
    CertificateStatus,
    ClientDefaultCertificate,
    DefaultCertificate,
    SigningCertificate,
)
from app.certificates.parsing import chain_summary
from app.certificates.schemas import (
    AssignmentCreate,
    AssignmentRead,
    CertificateInspection,
    CertificateRead,
    CertificateRevoke,
    CertificateUpdate,
    ClientDefaultCertificateRead,
    DefaultCertificateRead,
    DefaultCertificateSet,
    InspectBase64,
    Pkcs11Register,
    Pkcs12Import,
)
from app.certificates.vault import pkcs11_location
from app.core.deps import SessionDep, SettingsDep
from app.core.errors import problem_responses
from app.core.pagination import Page, PageParams, page_of, page_params
from app.core.routing import AppRoute
from app.core.schemas import decode_base64

router = APIRouter(
    prefix="/api/v1/certificates", tags=["certificates"], route_class=AppRoute
)

PEM_CHAIN_MEDIA_TYPE = "application/pem-certificate-chain"


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=CertificateRead,
    responses=problem_responses(401, 403, 409, 413, 422, 503),
)
def import_certificate(
    principal: WritePrincipal,
    session: SessionDep,
    settings: SettingsDep,
    cipher: CipherDep,
    file: Annotated[UploadFile, File(description="The .p12/.pfx file.")],
    password: Annotated[str, Form(description="The file's password (not stored).")],
    name: Annotated[str | None, Form(max_length=200)] = None,
) -> SigningCertificate:
    """Import a PKCS#12 file (multipart); the key is re-encrypted under the vault's key."""
    data = file.file.read(settings.pkcs12_max_bytes + 1)
    return vault_service.import_pkcs12(
        session,
        principal,
        cipher=cipher,
        name=name or None,
        data=data,
        password=password,
        max_bytes=settings.pkcs12_max_bytes,
        max_iterations=settings.pkcs12_max_iterations,
    )


@router.post(
    "/base64",
    status_code=status.HTTP_201_CREATED,
    response_model=CertificateRead,
    responses=problem_responses(401, 403, 409, 415, 422, 503),
)
def import_certificate_base64(
    principal: WritePrincipal,
    body: Pkcs12Import,
    session: SessionDep,
    settings: SettingsDep,
    cipher: CipherDep,
) -> SigningCertificate:
    """Import a PKCS#12 file sent as base64 in JSON."""
    data = decode_base64(body.pkcs12_base64.get_secret_value())
    return vault_service.import_pkcs12(
        session,
        principal,
        cipher=cipher,
        name=body.name,
        data=data,
        password=body.password.get_secret_value(),
        max_bytes=settings.pkcs12_max_bytes,
        max_iterations=settings.pkcs12_max_iterations,
    )


@router.post(
    "/pkcs11",
    status_code=status.HTTP_201_CREATED,
    response_model=CertificateRead,
    responses=problem_responses(401, 403, 409, 415, 422, 503),
)
def register_pkcs11_key(
    principal: WritePrincipal,
    body: Pkcs11Register,
    session: SessionDep,
    settings: SettingsDep,
) -> SigningCertificate:
    """Register a key held in a PKCS#11 token (module and PIN from settings)."""
    location = pkcs11_location(
        settings,
        token_label=body.token_label,
        key_label=body.key_label,
        cert_label=body.cert_label,
    )
    return vault_service.register_pkcs11(
        session,
        principal,
        location=location,
        name=body.name,
        certificate_data=body.certificate_pem.encode()
        if body.certificate_pem
        else None,
    )


@router.post(
    "/inspect",
    responses=problem_responses(401, 403, 413, 422),
)
def inspect_certificate(
    _principal: ReadPrincipal,
    settings: SettingsDep,
    file: Annotated[UploadFile, File(description="A .p12/.pfx file or a certificate.")],
    password: Annotated[str | None, Form(description="The PKCS#12 password.")] = None,
) -> CertificateInspection:
    """Read a PKCS#12 file or certificate and say what it holds; nothing is stored."""
    data = file.file.read(settings.pkcs12_max_bytes + 1)
    return _inspection(
        vault_service.inspect(
            data,
            password,
            max_bytes=settings.pkcs12_max_bytes,
            max_iterations=settings.pkcs12_max_iterations,
        )
    )


@router.post(
    "/inspect/base64",
    responses=problem_responses(401, 403, 415, 422),
)
def inspect_certificate_base64(
    _principal: ReadPrincipal, body: InspectBase64, settings: SettingsDep
) -> CertificateInspection:
    """The same inspection, for a file sent as base64 in JSON."""
    data = decode_base64(body.data_base64.get_secret_value())
    password = body.password.get_secret_value() if body.password else None
    return _inspection(
        vault_service.inspect(
            data,
            password,
            max_bytes=settings.pkcs12_max_bytes,
            max_iterations=settings.pkcs12_max_iterations,
        )
    )


def _inspection(inspection: vault_service.Inspection) -> CertificateInspection:
    facts = dataclasses.asdict(inspection.details)
    del facts["certificate_der"], facts["chain_pem"]
    refusal = inspection.refusal
    return CertificateInspection.model_validate(
        {
            **facts,
            "chain": chain_summary(inspection.chain),
            "has_private_key": inspection.has_private_key,
            "importable": inspection.has_private_key and refusal is None,
            "refusal_code": refusal.code if refusal else None,
            "refusal_detail": refusal.detail if refusal else None,
        }
    )


@router.get(
    "",
    response_model=Page[CertificateRead],
    responses=problem_responses(401, 403, 422),
)
def list_certificates(
    principal: ReadPrincipal,
    session: SessionDep,
    params: Annotated[PageParams, Depends(page_params)],
    status_filter: Annotated[list[CertificateStatus], Query(alias="status")] = [],  # noqa: B006 (FastAPI copies defaults)
    expiring_within_days: Annotated[int | None, Query(ge=0, le=36_500)] = None,
    assigned_to_user: Annotated[uuid.UUID | None, Query()] = None,
    assigned_to_client: Annotated[
        uuid.UUID | None, Query(description="An API client's `id`.")
    ] = None,
    department_id: Annotated[uuid.UUID | None, Query()] = None,
    q: Annotated[
        str | None,
        Query(
            max_length=200,
            description="Part of the name, subject, issuer, serial or fingerprint.",
        ),
    ] = None,
) -> dict[str, object]:
    """List certificates you may see (sortable by created_at, name, not_after, not_before, subject, last_used_at)."""
    rows, total = vault_service.list_certificates(
        session,
        principal,
        params=params,
        status=status_filter,
        expiring_within_days=expiring_within_days,
        assigned_to_user=assigned_to_user,
        assigned_to_client=assigned_to_client,
        department_id=department_id,
        q=q,
    )
    return page_of(rows, total, params, CertificateRead)


@router.get(
    "/expiring",
    response_model=list[CertificateRead],
    responses=problem_responses(401, 403, 422),
)
def list_expiring_certificates(
    principal: ReadPrincipal,
    session: SessionDep,
    days: Annotated[int, Query(ge=0, le=36_500)] = 30,
) -> list[SigningCertificate]:
    """Active or disabled certificates that expire within `days`, soonest first."""
    return list(vault_service.expiring_certificates(session, principal, days=days))


@router.get(
    "/{certificate_id}",
    response_model=CertificateRead,
    responses=problem_responses(401, 403, 404),
)
def read_certificate(
    _principal: ReadPrincipal, certificate: CertificateDep
) -> SigningCertificate:
    """One certificate's metadata (never key material)."""
    return certificate


@router.get(
    "/{certificate_id}/chain",
    response_class=Response,
    responses={
        200: {"content": {PEM_CHAIN_MEDIA_TYPE: {}}, "description": "PEM chain"},
        **problem_responses(401, 403, 404),
    },
)
def read_certificate_chain(
    _principal: ReadPrincipal, certificate: CertificateDep
) -> Response:
    """The certificate and its chain as PEM, leaf first; never the key."""
    return Response(
        vault_service.chain_pem(certificate), media_type=PEM_CHAIN_MEDIA_TYPE
    )


@router.patch(
    "/{certificate_id}",
    response_model=CertificateRead,
    responses=problem_responses(401, 403, 404, 415, 422),
)
def update_certificate(
    principal: WritePrincipal,
    body: CertificateUpdate,
    session: SessionDep,
    certificate: CertificateDep,
) -> SigningCertificate:
    """Rename a certificate."""
    return vault_service.rename_certificate(
        session, principal, certificate=certificate, name=body.name
    )


@router.delete(
    "/{certificate_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=problem_responses(401, 403, 404, 409),
)
def delete_certificate(
    principal: WritePrincipal, session: SessionDep, certificate: CertificateDep
) -> None:
    """Destroy the key and the assignments; the metadata stays (status `deleted`) for the signatures made with it."""
    vault_service.delete_certificate(session, principal, certificate=certificate)


@router.post(
    "/{certificate_id}/disable",
    response_model=CertificateRead,
    responses=problem_responses(401, 403, 404, 409),
)
def disable_certificate(
    principal: WritePrincipal, session: SessionDep, certificate: CertificateDep
) -> SigningCertificate:
    """Stop signing with a certificate until it is enabled again."""
    return vault_service.disable_certificate(
        session, principal, certificate=certificate
    )


@router.post(
    "/{certificate_id}/enable",
    response_model=CertificateRead,
    responses=problem_responses(401, 403, 404, 409),
)
def enable_certificate(
    principal: WritePrincipal, session: SessionDep, certificate: CertificateDep
) -> SigningCertificate:
    """Enable a disabled certificate."""
    return vault_service.enable_certificate(session, principal, certificate=certificate)


@router.post(
    "/{certificate_id}/revoke",
    response_model=CertificateRead,
    responses=problem_responses(401, 403, 404, 409, 415, 422),
)
def revoke_certificate(
    principal: WritePrincipal,
    session: SessionDep,
    certificate: CertificateDep,
    body: CertificateRevoke | None = None,
) -> SigningCertificate:
    """Revoke a certificate in the vault; final."""
    return vault_service.revoke_certificate(
        session,
        principal,
        certificate=certificate,
        reason=body.reason if body else None,
    )


@router.post(
    "/{certificate_id}/assignments",
    status_code=status.HTTP_201_CREATED,
    response_model=AssignmentRead,
    responses=problem_responses(401, 403, 404, 409, 415, 422),
)
def assign_certificate(
    principal: AssignPrincipal,
    body: AssignmentCreate,
    session: SessionDep,
    certificate: CertificateDep,
) -> CertificateAssignment:
    """Let a user, an API client, or every member of a department sign with the certificate."""
    return vault_service.add_assignment(
        session,
        principal,
        certificate=certificate,
        user_id=body.user_id,
        client_id=body.client_id,
        department_id=body.department_id,
    )


@router.delete(
    "/{certificate_id}/assignments/{assignment_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=problem_responses(401, 403, 404),
)
def unassign_certificate(
    principal: AssignPrincipal,
    session: SessionDep,
    certificate: CertificateDep,
    assignment_id: uuid.UUID,
) -> None:
    """Remove an assignment."""
    vault_service.remove_assignment(
        session, principal, certificate=certificate, assignment_id=assignment_id
    )


users_router = APIRouter(
    prefix="/api/v1/users", tags=["certificates"], route_class=AppRoute
)


@users_router.put(
    "/{user_id}/default-certificate",
    response_model=DefaultCertificateRead,
    responses=problem_responses(401, 403, 404, 409, 415, 422),
)
def set_default_certificate(
    principal: AssignPrincipal,
    user_id: uuid.UUID,
    body: DefaultCertificateSet,
    session: SessionDep,
) -> DefaultCertificate:
    """Set the certificate a user signs with when a sign request names none."""
    return vault_service.set_default_certificate(
        session, principal, user_id=user_id, certificate_id=body.certificate_id
    )


@users_router.get(
    "/{user_id}/default-certificate",
    response_model=DefaultCertificateRead,
    responses=problem_responses(401, 403, 404),
)
def read_default_certificate(
    principal: ReadPrincipal, user_id: uuid.UUID, session: SessionDep
) -> DefaultCertificate:
    """The user's default certificate."""
    return vault_service.get_default_certificate(session, principal, user_id=user_id)


@users_router.delete(
    "/{user_id}/default-certificate",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=problem_responses(401, 403, 404),
)
def clear_default_certificate(
    principal: AssignPrincipal, user_id: uuid.UUID, session: SessionDep
) -> None:
    """Remove the user's default certificate."""
    vault_service.clear_default_certificate(session, principal, user_id=user_id)


clients_router = APIRouter(
    prefix="/api/v1/clients", tags=["certificates"], route_class=AppRoute
)


@clients_router.put(
    "/{client_id}/default-certificate",
    response_model=ClientDefaultCertificateRead,
    responses=problem_responses(401, 403, 404, 409, 415, 422),
)
def set_client_default_certificate(
    principal: AssignPrincipal,
    client_id: uuid.UUID,
    body: DefaultCertificateSet,
    session: SessionDep,
) -> ClientDefaultCertificate:
    """Set the certificate an API client signs with when a sign request names none (`client_id` is the client's `id`)."""
    return vault_service.set_client_default_certificate(
        session, principal, client_id=client_id, certificate_id=body.certificate_id
    )


@clients_router.get(
    "/{client_id}/default-certificate",
    response_model=ClientDefaultCertificateRead,
    responses=problem_responses(401, 403, 404),
)
def read_client_default_certificate(
    principal: ReadPrincipal, client_id: uuid.UUID, session: SessionDep
) -> ClientDefaultCertificate:
    """The API client's default certificate."""
    return vault_service.get_client_default_certificate(
        session, principal, client_id=client_id
    )


@clients_router.delete(
    "/{client_id}/default-certificate",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=problem_responses(401, 403, 404),
)
def clear_client_default_certificate(
    principal: AssignPrincipal, client_id: uuid.UUID, session: SessionDep
) -> None:
    """Remove the API client's default certificate."""
    vault_service.clear_client_default_certificate(
        session, principal, client_id=client_id
    )
