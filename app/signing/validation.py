"""Validation reports of signed PDFs, against the configured trust roots."""

import functools
import hashlib
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import IO

from asn1crypto import pem
from asn1crypto import x509 as asn1_x509
from sqlalchemy import select
from sqlalchemy.orm import Session

from app.access.principal import Principal
from app.audit import service as audit_service
from app.certificates.models import SigningCertificate
from app.documents.errors import PdfEncrypted, PdfUnreadable
from app.documents.models import DocumentVersion
from app.settings.schemas import SigningSettings
from app.signing.engine import EngineError, validate_pdf
from app.signing.schemas import Provenance, SignatureValidation, ValidationReport


def load_trust_roots(bundle: Path | None) -> list[asn1_x509.Certificate]:
    """Certificates of a PEM (or DER) bundle file; none when unset."""
    if bundle is None:
        return []
    data = bundle.read_bytes()
    if pem.detect(data):
        return [
            asn1_x509.Certificate.load(der)
            for _type, _headers, der in pem.unarmor(data, multiple=True)
        ]
    return [asn1_x509.Certificate.load(data)]


def section_trust_roots(
    section: SigningSettings,
) -> tuple[asn1_x509.Certificate, ...]:
    """The signing settings' own trust roots (checked PEM, stored at PUT)."""
    return _parsed_pems(tuple(section.trust_roots))


@functools.lru_cache(maxsize=256)
def _parsed_pems(texts: tuple[str, ...]) -> tuple[asn1_x509.Certificate, ...]:
    # Parsed once per process and set of certificates, not once per request.
    return tuple(
        asn1_x509.Certificate.load(der)
        for text in texts
        for _type, _headers, der in pem.unarmor(text.encode(), multiple=True)
    )


@functools.lru_cache(maxsize=256)
def _parsed_der(der: bytes) -> asn1_x509.Certificate:
    return asn1_x509.Certificate.load(der)


def validation_trust_roots(
    session: Session,
    configured: Sequence[asn1_x509.Certificate],
    section: SigningSettings,
) -> list[asn1_x509.Certificate]:
    """What `/verify` trusts: SIGNVAULT_TRUST_ROOTS_FILE, the signing settings' roots,
    and (if `include_vault_chains`) the self-signed roots of the vault's chains,
    and its self-signed certificates (each its own root) not revoked or deleted."""
    roots = [*configured, *section_trust_roots(section)]
    if section.include_vault_chains:
        own_roots = session.scalars(
            select(SigningCertificate.certificate_der).where(
                SigningCertificate.subject == SigningCertificate.issuer,
                SigningCertificate.revoked_at.is_(None),
                SigningCertificate.deleted_at.is_(None),
            )
        ).all()
        roots.extend(
            certificate
            for certificate in map(_parsed_der, own_roots)
            if certificate.self_signed != "no"
        )
        chains = session.scalars(
            select(SigningCertificate.chain_pem)
            .where(SigningCertificate.chain_pem != "")
            .distinct()
        ).all()
        roots.extend(
            certificate
            for chain in chains
            for certificate in _parsed_pems((chain,))
            # asn1crypto answers "no", "maybe" or "yes" (all truthy strings).
            if certificate.self_signed != "no"
        )
    return roots


def validate_upload(
    session: Session,
    principal: Principal,
    *,
    upload: IO[bytes],
    trust_roots: Sequence[asn1_x509.Certificate],
    allow_fetching: bool,
    document_id: str | None = None,
) -> ValidationReport:
    """Validate every signature; a file with none, or a tampered one, gets a report, not an error.

    Raises:
        PdfUnreadable, PdfEncrypted: the file cannot be opened as a PDF.
    """
    upload.seek(0)
    digest = hashlib.sha256()
    while chunk := upload.read(1024 * 1024):
        digest.update(chunk)
    sha256 = digest.hexdigest()
    upload.seek(0)
    try:
        reports = validate_pdf(
            upload, trust_roots=trust_roots, allow_fetching=allow_fetching
        )
    except EngineError as exc:
        raise (PdfEncrypted if exc.code == "pdf_encrypted" else PdfUnreadable)(
            str(exc)
        ) from None
    signatures = [SignatureValidation(**asdict(report)) for report in reports]
    report = ValidationReport(
        sha256=sha256,
        signature_count=len(signatures),
        all_valid=bool(signatures) and all(s.bottom_line for s in signatures),
        provenance=_provenance(session, sha256),
        signatures=signatures,
    )
    audit_service.record(
        session,
        actor=principal.actor,
        action="document.verified",
        resource_type="document" if document_id else None,
        resource_id=document_id,
        details={
            "sha256": sha256,
            "signatures": len(signatures),
            "all_valid": report.all_valid,
        },
    )
    return report


def _provenance(session: Session, sha256: str) -> Provenance:
    """Did this server store exactly these bytes as a version (a signed output, or an upload)?"""
    version = session.scalars(
        select(DocumentVersion)
        .where(DocumentVersion.sha256 == sha256)
        .order_by(DocumentVersion.number.desc())
        .limit(1)
    ).first()
    if version is None:
        return Provenance(produced_here=False)
    return Provenance(
        produced_here=version.number > 1,
        document_id=version.document_id,
        version=version.number,
    )
