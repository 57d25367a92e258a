"""Signing stored documents with vault keys: one new version and one signature record per signature."""

import functools
import hashlib
import json
import uuid
from collections.abc import Sequence
from contextlib import ExitStack
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import IO, Any

from asn1crypto import x509 as asn1_x509
from cryptography.hazmat.primitives.serialization import Encoding
from pyhanko.pdf_utils.reader import PdfFileReader
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from app.access.entitlements import Entitlement
from app.access.principal import Principal
from app.audit import service as audit_service
from app.certificates import service as vault_service
from app.certificates.models import SigningCertificate, certificates_in_pem
from app.certificates.vault import Vault
from app.core.config import Settings
from app.core.db import on_rollback
from app.core.errors import AppError, Forbidden
from app.core.schemas import decode_base64
from app.core.storage import BlobStore, StoredBlob, sha256_of
from app.core.types import utcnow
from app.documents import service as documents_service
from app.documents.models import Document, DocumentStatus, DocumentVersion
from app.license import service as license_service
from app.license.service import Feature
from app.notifications.outbox import Event, emit
from app.settings import service as settings_service
from app.settings.schemas import SigningSettings
from app.signing import engine, validation
from app.signing.errors import (
    AppearanceBoxOutsidePage,
    AppearanceImageInvalid,
    AppearanceImageTooLarge,
    IdempotencyKeyReused,
    NoCertificateChosen,
    RevocationUnavailable,
    SigningRefused,
    TimestampUnavailable,
)
from app.signing.models import IdempotencyRecord, Signature
from app.signing.schemas import AppearanceIn, SignDocumentRequest
from app.signing_profiles import service as profiles_service
from app.signing_profiles.models import SigningProfile


@dataclass(frozen=True, slots=True)
class SignRequest:
    certificate_id: uuid.UUID | None
    options: engine.SignOptions
    # From the signing settings, not the body (so not in the fingerprint):
    # None means SIGNVAULT_TSA_URL; the roots add to the configured ones.
    tsa_url: str | None = None
    extra_trust_roots: tuple[asn1_x509.Certificate, ...] = ()

    # SHA-256 of the body as the client sent it (see `fingerprint`).
    body_sha256: str = ""

    def fingerprint(self, target: str) -> str:
        """What tells a retry from a different request: the body as sent, and what it signs.

        Not the options resolved from the profile and the settings: a retry made
        after an administrator changed those is still the same request.
        """
        return hashlib.sha256(f"{target}\n{self.body_sha256}".encode()).hexdigest()


def resolve_sign_request(session: Session, body: SignDocumentRequest) -> SignRequest:
    """The sign request a body asks for, completed from its profile and the signing settings.

    Raises:
        UnknownSigningProfile: the body names no existing profile (422).
        AppearanceImageInvalid, AppearanceImageTooLarge: the appearance image (422).
    """
    profile = (
        profiles_service.profile_named(session, body.profile) if body.profile else None
    )
    return sign_request_of(body, settings_service.signing(session), profile)


def sign_request_of(
    body: SignDocumentRequest,
    defaults: SigningSettings,
    profile: SigningProfile | None = None,
) -> SignRequest:
    """The sign request an API body (`/documents/{id}/sign`, `/sign`, `/batches`) asks for.

    What the body leaves out comes from the profile it names, then from the
    signing settings: the level, the TSA, the certification, the stamp (the
    settings' visible default only when no field is named: an existing field
    has its own box) and its text; the hash algorithm always from the settings.
    """
    stamp = defaults.default_appearance
    chosen = body.appearance
    if chosen is None and profile is not None and profile.appearance is not None:
        chosen = AppearanceIn.model_validate(profile.appearance)
    appearance = None
    if chosen is not None:
        appearance = engine.Appearance(
            page=chosen.page,
            box=chosen.box,
            text=chosen.text or stamp.text,
            image=_appearance_image(chosen.image_base64),
        )
    elif stamp.visible and body.field_name is None:
        appearance = engine.Appearance(page=stamp.page, box=stamp.box, text=stamp.text)
    level = body.level or (profile and profile.level) or defaults.default_level
    certify = body.certify or (profile and profile.certify) or engine.Certification.NONE
    tsa_url = (profile and profile.tsa_url) or defaults.tsa_url
    return SignRequest(
        certificate_id=body.certificate_id,
        options=engine.SignOptions(
            level=engine.PadesLevel(level),
            field_name=body.field_name,
            reason=body.reason,
            location=body.location,
            contact_info=body.contact_info,
            certify=engine.Certification(certify),
            appearance=appearance,
            md_algorithm=defaults.hash_algorithm.value,
        ),
        tsa_url=str(tsa_url) if tsa_url else None,
        extra_trust_roots=validation.section_trust_roots(defaults),
        body_sha256=hashlib.sha256(
            json.dumps(body.model_dump(mode="json"), sort_keys=True).encode()
        ).hexdigest(),
    )


def _appearance_image(encoded: str | None) -> bytes | None:
    """The decoded image, once checked to be a PNG or JPEG the engine can draw."""
    if encoded is None:
        return None
    # Base64 grows 4/3: refuse an oversized image before decoding it.
    if len(encoded) > (engine.MAX_IMAGE_BYTES + 2) // 3 * 4 + 4:
        raise AppearanceImageTooLarge(
            f"The appearance image is over the limit of {engine.MAX_IMAGE_BYTES} bytes.",
            invalid_params=[_IMAGE_PARAM],
        )
    try:
        image = decode_base64(encoded)
    except ValueError:
        raise AppearanceImageInvalid(
            "appearance.image_base64 is not valid base64.",
            invalid_params=[_IMAGE_PARAM],
        ) from None
    try:
        engine.stamp_image(image)
    except engine.EngineError as exc:
        error = (
            AppearanceImageTooLarge
            if exc.code == "image_too_large"
            else AppearanceImageInvalid
        )
        raise error(str(exc), invalid_params=[_IMAGE_PARAM]) from None
    return image


_IMAGE_PARAM = {
    "name": "appearance.image_base64",
    "in": "body",
    "reason": "a PNG or JPEG, base64, at most 1 MB",
}


def previous_result(
    session: Session, principal: Principal, *, key: str | None, fingerprint: str
) -> Signature | None:
    """The signature an earlier request with this `Idempotency-Key` produced, if any.

    Two requests with the same key run one after the other, the second finding
    the first's result: on PostgreSQL they wait on a transaction lock of the key,
    on SQLite the look-up, a read FOR UPDATE, takes the write lock.

    Raises:
        IdempotencyKeyReused: the key was used by this principal for a different request.
    """
    if key is None:
        return None
    if session.get_bind().dialect.name == "postgresql":
        session.execute(select(func.pg_advisory_xact_lock(_lock_id(principal, key))))
    record = session.scalars(
        select(IdempotencyRecord)
        .where(
            IdempotencyRecord.principal_kind == principal.kind,
            IdempotencyRecord.principal_id == principal.id,
            IdempotencyRecord.key == key,
        )
        .with_for_update()
    ).one_or_none()
    if record is None:
        return None
    if record.request_sha256 != fingerprint:
        raise IdempotencyKeyReused(
            "This Idempotency-Key was already used for a different sign request "
            "(other options, another document or another file)."
        )
    return session.get_one(Signature, record.signature_id)


def _lock_id(principal: Principal, key: str) -> int:
    """A 64-bit lock number for the principal's idempotency key."""
    digest = hashlib.sha256(
        f"idempotency:{principal.kind}:{principal.id}:{key}".encode()
    )
    return int.from_bytes(digest.digest()[:8], "big", signed=True)


@dataclass(frozen=True, slots=True)
class _SigningKey:
    certificate: SigningCertificate
    signer: Any


@dataclass(frozen=True, slots=True)
class _SignedBlob:
    blob: StoredBlob
    field_name: str
    signing_time: datetime
    options: engine.SignOptions


def sign_document(
    session: Session,
    principal: Principal,
    *,
    vault: Vault,
    blobs: BlobStore,
    settings: Settings,
    trust_roots: Sequence[asn1_x509.Certificate],
    document: Document,
    request: SignRequest,
    idempotency_key: str | None = None,
) -> Signature:
    """Sign the document's latest version with a vault key the principal may use.

    The new version is stored before the transaction commits; on any failure the
    document and its versions stay exactly as they were, and the refusal is audited
    and announced (`signing.failed`). Success emits `document.signed`.

    Raises:
        NoCertificateChosen: no certificate given and no default set (422).
        The vault's refusals (403/404/409/422/503) for the certificate.
        SigningRefused (422), TimestampUnavailable / RevocationUnavailable (502).
        IdempotencyKeyReused (409).
    """
    fingerprint = request.fingerprint(f"document:{document.id}")
    earlier = previous_result(
        session, principal, key=idempotency_key, fingerprint=fingerprint
    )
    if earlier is not None:
        return earlier
    certificate_id = request.certificate_id
    try:
        documents_service.require_content(document)
        certificate_id = certificate_id or _default_certificate(session, principal)
        key = _signing_key(session, principal, vault, certificate_id, request)
        signed = _sign_blob(
            session,
            principal,
            blobs=blobs,
            settings=settings,
            trust_roots=trust_roots,
            key=key,
            namespace=str(document.id),
            before=document.latest_sha256,
            request=request,
        )
        return _record_signature(
            session,
            principal,
            document=document,
            key=key,
            signed=signed,
            idempotency_key=idempotency_key,
            fingerprint=fingerprint,
        )
    except AppError as exc:
        _record_failure(
            session,
            principal,
            document_id=document.id,
            document_name=document.title,
            certificate_id=certificate_id,
            request=request,
            error=exc,
        )
        raise


def sign_upload(
    session: Session,
    principal: Principal,
    *,
    vault: Vault,
    blobs: BlobStore,
    settings: Settings,
    trust_roots: Sequence[asn1_x509.Certificate],
    upload: IO[bytes],
    title: str | None,
    external_reference: str | None,
    filename: str | None,
    request: SignRequest,
    description: str = "",
    idempotency_key: str | None = None,
) -> Signature:
    """One shot: store the upload as a new document and sign it (two versions, one signature).

    The upload is checked and signed before the first database write, so on
    SQLite the write lock is held only for the short writing end, not while
    the PDF is parsed and signed. Failures are recorded as `sign_document`'s.

    Raises:
        Forbidden: the principal may sign but not store documents (403).
        DocumentTooLarge, NotAPdf, PdfUnreadable, PdfEncrypted: the upload (413, 415, 422).
        The refusals of `sign_document`.
    """
    # The file is part of the request: the same key with another file is refused.
    fingerprint = (
        request.fingerprint(f"upload:{sha256_of(upload)}")
        if idempotency_key is not None
        else ""
    )
    earlier = previous_result(
        session, principal, key=idempotency_key, fingerprint=fingerprint
    )
    if earlier is not None:
        return earlier
    if not principal.has(Entitlement.DOCUMENTS_WRITE):
        raise Forbidden(
            "The one-shot /sign stores the document too: it needs 'documents:write' as well."
        )
    accepted = documents_service.accept_upload(
        session,
        blobs=blobs,
        upload=upload,
        max_bytes=settings_service.documents(session).max_upload_bytes,
    )
    title = documents_service.title_of(title, filename)
    certificate_id = request.certificate_id
    try:
        certificate_id = certificate_id or _default_certificate(session, principal)
        key = _signing_key(session, principal, vault, certificate_id, request)
        signed = _sign_blob(
            session,
            principal,
            blobs=blobs,
            settings=settings,
            trust_roots=trust_roots,
            key=key,
            namespace=str(accepted.document_id),
            before=accepted.blob.sha256,
            request=request,
            opened=accepted.facts.reader,
        )
        document = documents_service.record_document(
            session,
            principal,
            accepted,
            title=title,
            description=description,
            external_reference=external_reference,
        )
        return _record_signature(
            session,
            principal,
            document=document,
            key=key,
            signed=signed,
            idempotency_key=idempotency_key,
            fingerprint=fingerprint,
        )
    except AppError as exc:
        _record_failure(
            session,
            principal,
            document_id=accepted.document_id,
            document_name=title,
            certificate_id=certificate_id,
            request=request,
            error=exc,
        )
        raise


def _record_failure(
    session: Session,
    principal: Principal,
    *,
    document_id: uuid.UUID,
    document_name: str,
    certificate_id: uuid.UUID | None,
    request: SignRequest,
    error: AppError,
) -> None:
    """Audit `document.sign_failed` and emit `signing.failed`, together, after the rollback.

    Whatever refused the request (the vault, the licence, the engine, the TSA)
    may also have audited its own refusal; this entry and the event are the
    request's outcome, one per failed sign request.
    """

    def announce(own: Session) -> None:
        # A document uploaded by the failed request itself (one-shot /sign) is gone.
        exists = own.get(Document, document_id) is not None
        emit(
            own,
            Event.SIGNING_FAILED,
            {
                "document_id": document_id if exists else None,
                "document_name": document_name,
                "certificate_id": certificate_id,
                "level": request.options.level.value,
                "code": error.code,
                "detail": error.detail,
                "signer": principal.name,
            },
        )

    audit_service.record_isolated(
        session,
        actor=principal.actor,
        action="document.sign_failed",
        resource_type="document",
        resource_id=document_id,
        details={
            "code": error.code,
            "reason": error.detail,
            "certificate_id": str(certificate_id) if certificate_id else None,
            "level": request.options.level.value,
        },
        along=announce,
    )


def _default_certificate(session: Session, principal: Principal) -> uuid.UUID:
    default = vault_service.default_certificate_id(session, principal)
    if default is None:
        raise NoCertificateChosen(
            "Name a certificate_id: no default certificate is set for you."
        )
    return default


def _signing_key(
    session: Session,
    principal: Principal,
    vault: Vault,
    certificate_id: uuid.UUID,
    request: SignRequest,
) -> _SigningKey:
    """The certificate and its signer, if the principal may sign with them now (reads only)."""
    certificate, signer = vault.key_for(session, principal, certificate_id)
    if request.options.level in (engine.PadesLevel.B_LT, engine.PadesLevel.B_LTA):
        license_service.require_feature(session, Feature.LTV, actor=principal.actor)
    return _SigningKey(certificate, signer)


def _sign_blob(
    session: Session,
    principal: Principal,
    *,
    blobs: BlobStore,
    settings: Settings,
    trust_roots: Sequence[asn1_x509.Certificate],
    key: _SigningKey,
    namespace: str,
    before: str,
    request: SignRequest,
    opened: PdfFileReader | None = None,
) -> _SignedBlob:
    """Sign the blob `before` into a new blob of the same namespace (no database write).

    `opened`: the blob's content already parsed (a one-shot upload), not read again.
    """
    options = request.options
    if options.signer_name is None:
        options = replace(options, signer_name=principal.name)
    tsa_url = request.tsa_url or settings.tsa_url
    timestamper = (
        engine.timestamper_for(tsa_url, timeout=settings.tsa_timeout_seconds)
        if tsa_url and options.level != engine.PadesLevel.B_B
        else None
    )
    revocation = None
    if options.level in (engine.PadesLevel.B_LT, engine.PadesLevel.B_LTA):
        chain, roots = _chain_and_roots(key.certificate.chain_pem)
        revocation = engine.revocation_fetching(
            [*trust_roots, *request.extra_trust_roots, *roots],
            chain,
            max_age=timedelta(seconds=settings.revocation_cache_seconds),
        )
    signing_time = utcnow()
    with ExitStack() as files:
        source = (
            opened
            if opened is not None
            else files.enter_context(
                documents_service.seekable_content(
                    session,
                    principal,
                    blobs=blobs,
                    document_id=uuid.UUID(namespace),
                    sha256=before,
                )
            )
        )
        target = files.enter_context(blobs.spool())
        try:
            output = engine.sign_pdf(
                source,
                target,
                key.signer,
                options,
                signing_time=signing_time,
                timestamper=timestamper,
                revocation=revocation,
            )
        except engine.EngineError as exc:
            raise _refusal(exc) from None
        stored = blobs.put_file(namespace, target)
    # A signed output is unique (it holds the signing time): nothing else uses this file.
    on_rollback(session, lambda: blobs.delete(namespace, stored.sha256))
    return _SignedBlob(stored, output.field_name, signing_time, options)


@functools.lru_cache(maxsize=256)
def _chain_and_roots(
    chain_pem: str,
) -> tuple[tuple[asn1_x509.Certificate, ...], tuple[asn1_x509.Certificate, ...]]:
    """A vault certificate's issuers and, among them, its roots, parsed once per process.

    The chain's own root counts as trusted for collecting revocation data: the
    vault admitted this certificate, and the DSS records what was found. Telling
    a root by its names costs ~0.7 ms a signature.
    """
    chain = tuple(
        asn1_x509.Certificate.load(c.public_bytes(Encoding.DER))
        for c in certificates_in_pem(chain_pem)
    )
    # asn1crypto answers "no" or "maybe" (a non-empty string either way).
    return chain, tuple(c for c in chain if c.self_signed == "maybe")


def _record_signature(
    session: Session,
    principal: Principal,
    *,
    document: Document,
    key: _SigningKey,
    signed: _SignedBlob,
    idempotency_key: str | None,
    fingerprint: str,
) -> Signature:
    """The database side of a signature: new version, signature record, audit, event, licence count."""
    options, stored, certificate = signed.options, signed.blob, key.certificate
    before = document.latest_sha256
    number = document.version_count + 1
    session.add(
        DocumentVersion(
            document_id=document.id,
            number=number,
            sha256=stored.sha256,
            size=stored.size,
        )
    )
    document.version_count = number
    document.latest_sha256 = stored.sha256
    document.size = stored.size
    document.status = DocumentStatus.SIGNED
    signature = Signature(
        id=uuid.uuid4(),
        document_id=document.id,
        version_number=number,
        certificate_id=certificate.id,
        certificate_fingerprint=certificate.fingerprint_sha256,
        certificate_subject=certificate.subject,
        signer_kind=principal.kind,
        signer_id=principal.id,
        signer_name=principal.name,
        level=options.level.value,
        field_name=signed.field_name,
        reason=options.reason,
        location=options.location,
        certified=options.certify.value,
        signing_time=signed.signing_time,
        timestamp_time=signed.signing_time
        if options.level != engine.PadesLevel.B_B
        else None,
        sha256_before=before,
        sha256_after=stored.sha256,
    )
    session.add(signature)
    details = {
        "signature_id": str(signature.id),
        "version": number,
        "level": options.level.value,
        "certificate_fingerprint": certificate.fingerprint_sha256,
        "sha256_before": before,
        "sha256_after": stored.sha256,
        "field_name": signed.field_name,
    }
    audit_service.record(
        session,
        actor=principal.actor,
        action="document.signed",
        resource_type="document",
        resource_id=document.id,
        details=details,
    )
    emit(
        session,
        Event.DOCUMENT_SIGNED,
        {
            "document_id": document.id,
            "document_name": document.title,
            "signature_id": signature.id,
            "level": options.level.value,
            "certificate_id": certificate.id,
            "certificate_name": certificate.name,
            "signer": principal.name,
            "signed_at": signed.signing_time,
        },
    )
    vault_service.record_key_use(
        session,
        principal.actor,
        certificate=certificate,
        details={"document_id": str(document.id), "signature_id": str(signature.id)},
    )
    if idempotency_key is not None:
        session.flush()  # the record refers to the signature's row
        session.add(
            IdempotencyRecord(
                principal_kind=principal.kind,
                principal_id=principal.id,
                key=idempotency_key,
                request_sha256=fingerprint,
                signature_id=signature.id,
            )
        )
    # The rows first (callers may refer to them), then the licence counters: on
    # PostgreSQL they stay locked from here only until the commit that follows.
    session.flush()
    license_service.reserve_signature(session, actor=principal.actor)
    return signature


def _refusal(exc: engine.EngineError) -> Exception:
    if exc.code == "tsa_unavailable":
        return TimestampUnavailable(str(exc))
    if exc.code == "revocation_unavailable":
        return RevocationUnavailable(str(exc))
    refused = (
        AppearanceBoxOutsidePage(str(exc))
        if exc.code == "appearance_box_outside_page"
        else SigningRefused(str(exc))
    )
    refused.extra["reason_code"] = exc.code
    return refused


def list_signatures(session: Session, document: Document) -> Sequence[Signature]:
    return session.scalars(
        select(Signature)
        .where(Signature.document_id == document.id)
        .order_by(Signature.version_number)
    ).all()
