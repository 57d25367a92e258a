"""The signing engine: the only module that drives pyHanko.

Pure functions over PDF streams and a pyHanko `Signer`. Speed choices, measured
in ../shared/research/: the private key is parsed once (pyHanko's SimpleSigner
re-parses it for every signature), the signingCertificateV2 attribute is built
once per signer (asn1crypto re-serialises freshly built nested values on every
dump: ~14 ms a signature), the CMS size is fixed (`bytes_reserved`, else pyHanko
builds the CMS twice), and each worker thread keeps one event loop.
"""

import asyncio
import io
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import IO, Any

from asn1crypto import keys as asn1_keys
from asn1crypto import tsp
from asn1crypto import x509 as asn1_x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
from pyhanko.pdf_utils.misc import PdfError
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.sign import fields, signers, timestamps
from pyhanko.sign.attributes import CMSAttributeProvider, SignedAttributeProviderSpec
from pyhanko.sign.general import SigningError, as_signing_certificate_v2
from pyhanko.sign.timestamps.common_utils import TimestampRequestError
from pyhanko.sign.validation.dss import DocumentSecurityStore
from pyhanko.sign.validation.errors import NoDSSFoundError
from pyhanko.sign.validation.pdf_embedded import (
    async_validate_pdf_signature,
    async_validate_pdf_timestamp,
)
from pyhanko_certvalidator import ValidationContext
from pyhanko_certvalidator.errors import (
    PathBuildingError,
    PathValidationError,
    RevokedError,
)
from pyhanko_certvalidator.fetchers.aiohttp_fetchers import AIOHttpFetcherBackend
from pyhanko_certvalidator.registry import SimpleCertificateStore

from app.core.types import utcnow

# Room for the CMS: certificates and signature (B-B/B-T), plus the timestamp token.
_BYTES_RESERVED = {"B-B": 16_384, "B-T": 24_576, "B-LT": 24_576, "B-LTA": 24_576}


class PadesLevel(StrEnum):
    B_B = "B-B"
    B_T = "B-T"
    B_LT = "B-LT"
    B_LTA = "B-LTA"


class Certification(StrEnum):
    NONE = "none"
    NO_CHANGES = "no_changes"
    FORM_FILLING = "form_filling"
    ANNOTATIONS = "annotations"


_DOCMDP = {
    Certification.NO_CHANGES: fields.MDPPerm.NO_CHANGES,
    Certification.FORM_FILLING: fields.MDPPerm.FILL_FORMS,
    Certification.ANNOTATIONS: fields.MDPPerm.ANNOTATE,
}


class EngineError(Exception):
    """The PDF cannot be signed as asked; `code` is stable, the message is for people."""

    def __init__(self, code: str, message: str) -> None:
        self.code = code
        super().__init__(message)


@dataclass(frozen=True, slots=True)
class Appearance:
    page: int  # 1-based
    box: tuple[float, float, float, float]
    text: str | None = None


@dataclass(frozen=True, slots=True)
class SignOptions:
    level: PadesLevel = PadesLevel.B_B
    field_name: str | None = None
    reason: str | None = None
    location: str | None = None
    contact_info: str | None = None
    certify: Certification = Certification.NONE
    appearance: Appearance | None = None
    signer_name: str | None = None
    md_algorithm: str = "sha256"  # sha256, sha384 or sha512


class _FrozenAttribute(CMSAttributeProvider):
    """Serves an attribute value parsed from DER: asn1crypto caches parsed encodings."""

    def __init__(self, attribute_type: str, spec: type[Any], der: bytes) -> None:
        self.attribute_type = attribute_type
        self._spec = spec
        self._der = der

    async def build_attr_value(self, dry_run: bool = False) -> Any:
        return self._spec.load(self._der)


class _PadesSignedAttributes(SignedAttributeProviderSpec):
    """What pyHanko's CAdES spec yields for PAdES without extras: signingCertificateV2, built once.

    Setting a spec replaces pyHanko's own, so any CAdES signed attribute the
    product adds later (commitment type, signer attributes) must be yielded here.
    """

    def __init__(self, signing_cert: asn1_x509.Certificate) -> None:
        self._sc2 = as_signing_certificate_v2(signing_cert).dump()

    def signed_attr_providers(
        self, data_digest: bytes, digest_algorithm: str
    ) -> Iterable[CMSAttributeProvider]:
        yield _FrozenAttribute(
            "signing_certificate_v2", tsp.SigningCertificateV2, self._sc2
        )


PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey


class CachedKeySigner(signers.SimpleSigner):
    """A SimpleSigner that keeps the parsed private key and its signed attributes."""

    def __init__(
        self,
        *,
        certificate: asn1_x509.Certificate,
        private_key: PrivateKey,
        chain: Sequence[asn1_x509.Certificate],
    ) -> None:
        pkcs8 = private_key.private_bytes(
            serialization.Encoding.DER,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        super().__init__(
            signing_cert=certificate,
            signing_key=asn1_keys.PrivateKeyInfo.load(pkcs8),
            cert_registry=SimpleCertificateStore.from_certs([certificate, *chain]),  # type: ignore[no-untyped-call]
        )
        self._private_key = private_key
        self.signed_attr_prov_spec = _PadesSignedAttributes(certificate)

    def sign_raw(self, data: bytes, digest_algorithm: str) -> bytes:
        mechanism = self.get_signature_mechanism_for_digest(digest_algorithm)
        algorithm = mechanism.signature_algo
        key = self._private_key
        digest = _hash(digest_algorithm)
        if algorithm == "rsassa_pkcs1v15" and isinstance(key, rsa.RSAPrivateKey):
            return key.sign(data, padding.PKCS1v15(), digest)
        if algorithm == "rsassa_pss" and isinstance(key, rsa.RSAPrivateKey):
            return key.sign(
                data,
                padding.PSS(mgf=padding.MGF1(digest), salt_length=digest.digest_size),
                digest,
            )
        if algorithm == "ecdsa" and isinstance(key, ec.EllipticCurvePrivateKey):
            return key.sign(data, ec.ECDSA(digest))
        if algorithm == "ed25519" and isinstance(key, ed25519.Ed25519PrivateKey):
            return key.sign(data)
        raise SigningError(f"signature mechanism {algorithm} does not fit the key")


def freeze_signed_attributes(signer: signers.Signer) -> signers.Signer:
    """Serve the signer's signingCertificateV2 pre-built (for HSM signers; CachedKeySigner does it itself)."""
    if signer.signing_cert is not None:
        signer.signed_attr_prov_spec = _PadesSignedAttributes(signer.signing_cert)
    return signer


def _hash(name: str) -> hashes.HashAlgorithm:
    algorithms: dict[str, hashes.HashAlgorithm] = {
        "sha256": hashes.SHA256(),
        "sha384": hashes.SHA384(),
        "sha512": hashes.SHA512(),
    }
    try:
        return algorithms[name]
    except KeyError:
        raise SigningError(f"unsupported digest {name}") from None


@dataclass(frozen=True, slots=True)
class RevocationFetching:
    """What B-LT/B-LTA signing needs: a context that fetches OCSP/CRL data, and its HTTP backend.

    The backend is ours to close (`_run` does): pyHanko derives further contexts
    from this one while signing, and those would otherwise leave sessions open.
    """

    context: ValidationContext
    backend: AIOHttpFetcherBackend

    async def aclose(self) -> None:
        await self.context.aclose()  # type: ignore[no-untyped-call]
        await self.backend.close()  # type: ignore[no-untyped-call]


def revocation_fetching(
    trust_roots: Sequence[asn1_x509.Certificate], chain: Sequence[asn1_x509.Certificate]
) -> RevocationFetching:
    backend = AIOHttpFetcherBackend()
    context = ValidationContext(
        trust_roots=list(trust_roots),
        other_certs=list(chain),
        allow_fetching=True,
        revocation_mode="hard-fail",
        fetcher_backend=backend,
    )
    return RevocationFetching(context, backend)


class _ThreadLoop:
    """One event loop per thread, closed when the thread (and so this holder) goes away."""

    def __init__(self) -> None:
        self.runner = asyncio.Runner()

    def __del__(self) -> None:
        # Not runner.close(): that runs the loop, and the collector may call us
        # from a thread whose own loop is running. Nothing is pending here.
        loop = self.runner.get_loop()
        if not loop.is_closed():
            loop.close()


_loops = threading.local()


def _run(
    coroutine: Any, *contexts: ValidationContext | RevocationFetching | None
) -> Any:
    """Run a coroutine on this thread's persistent event loop (asyncio.run costs ~0.5 ms a call).

    Validation contexts that fetched OCSP/CRL data are closed on the same loop afterwards.
    """
    holder = getattr(_loops, "holder", None)
    if holder is None:
        holder = _loops.holder = _ThreadLoop()
    runner = holder.runner

    async def run_and_release() -> Any:
        try:
            return await coroutine
        finally:
            for context in contexts:
                if context is not None:
                    await context.aclose()

    return runner.run(run_and_release())


@dataclass(frozen=True, slots=True)
class PdfFacts:
    page_count: int
    signature_fields: list[str]
    signed: bool
    # The parsed file: `sign_pdf` can take it instead of parsing the same bytes again.
    reader: PdfFileReader


def inspect_pdf(stream: IO[bytes]) -> PdfFacts:
    """Open a PDF the way signing will, to refuse early what cannot be signed.

    Raises:
        EngineError: `pdf_unreadable` or `pdf_encrypted`.
    """
    try:
        reader = PdfFileReader(stream, strict=False)
        if reader.encrypted:
            raise EngineError(
                "pdf_encrypted",
                "The PDF is encrypted; remove the password protection and upload it again.",
            )
        page_count = int(reader.root["/Pages"]["/Count"])
        names = [
            name
            for name, _value, _ref in fields.enumerate_sig_fields(
                reader, filled_status=None
            )
        ]
        signed = any(
            True for _ in fields.enumerate_sig_fields(reader, filled_status=True)
        )
    except EngineError:
        raise
    except (PdfError, KeyError, ValueError, TypeError, IndexError) as exc:
        raise EngineError(
            "pdf_unreadable", f"The file cannot be read as a PDF: {exc}"
        ) from None
    return PdfFacts(
        page_count=page_count, signature_fields=names, signed=signed, reader=reader
    )


@dataclass(frozen=True, slots=True)
class SignedOutput:
    field_name: str
    signing_time: datetime


def sign_pdf(
    source: IO[bytes] | PdfFileReader,
    target: IO[bytes],
    signer: signers.Signer,
    options: SignOptions,
    *,
    signing_time: datetime,
    timestamper: timestamps.TimeStamper | None = None,
    revocation: RevocationFetching | None = None,
) -> SignedOutput:
    """Sign `source` into `target` (readable and seekable, so memory stays flat) as an incremental update.

    `source` may be the reader `inspect_pdf` opened on the same bytes.

    Raises:
        EngineError: the PDF, the field, the page or the level cannot be honoured.
    """
    if options.level in (PadesLevel.B_LT, PadesLevel.B_LTA) and revocation is None:
        raise EngineError(
            "revocation_not_configured",
            f"PAdES {options.level} needs trust roots to collect revocation data.",
        )
    if options.level != PadesLevel.B_B and timestamper is None:
        raise EngineError(
            "tsa_not_configured",
            f"PAdES {options.level} needs a timestamp authority: set the TSA URL in the signing settings.",
        )
    try:
        writer = (
            IncrementalPdfFileWriter.from_reader(source)
            if isinstance(source, PdfFileReader)
            else IncrementalPdfFileWriter(source, strict=False)
        )
    except (PdfError, ValueError) as exc:
        raise EngineError(
            "pdf_unreadable", f"The file cannot be read as a PDF: {exc}"
        ) from None
    if writer.prev.encrypted:
        raise EngineError(
            "pdf_encrypted",
            "The PDF is encrypted; remove the password protection and upload it again.",
        )
    # One walk of the form: it grows with every signature the file already holds.
    existing = {
        name: filled
        for name, filled, _ref in fields.enumerate_sig_fields(
            writer.prev, filled_status=None
        )
    }
    field_name = options.field_name or _free_field_name(existing)
    new_field = _field_spec(writer.prev, existing, field_name, options.appearance)
    metadata = signers.PdfSignatureMetadata(
        field_name=field_name,
        md_algorithm=options.md_algorithm,
        reason=options.reason,
        location=options.location,
        contact_info=options.contact_info,
        name=options.signer_name,
        subfilter=fields.SigSeedSubFilter.PADES,
        use_pades_lta=options.level == PadesLevel.B_LTA,
        embed_validation_info=options.level in (PadesLevel.B_LT, PadesLevel.B_LTA),
        validation_context=revocation.context if revocation else None,
        certify=options.certify != Certification.NONE,
        docmdp_permissions=_DOCMDP.get(options.certify, fields.MDPPerm.FILL_FORMS),
    )
    stamp = None
    if options.appearance is not None:
        from pyhanko.stamp import TextStampStyle

        stamp = TextStampStyle(
            stamp_text=options.appearance.text or "Signed by %(signer)s\n%(ts)s"
        )
    pdf_signer = signers.PdfSigner(
        metadata,
        signer=signer,
        timestamper=timestamper,
        stamp_style=stamp,
        new_field_spec=new_field,
    )
    try:
        _run(
            pdf_signer.async_sign_pdf(
                writer,
                output=target,
                bytes_reserved=_BYTES_RESERVED[options.level],
                appearance_text_params={"reason": options.reason or ""}
                if stamp
                else None,
            ),
            revocation,
        )
    except TimestampRequestError as exc:
        raise EngineError(
            "tsa_unavailable", f"The timestamp authority did not answer: {exc}"
        ) from None
    except (PathValidationError, PathBuildingError, RevokedError) as exc:
        raise EngineError(
            "revocation_unavailable",
            f"The signer's chain could not be validated for long-term data: {exc}",
        ) from None
    except SigningError as exc:
        raise EngineError(
            "signing_failed", f"The document could not be signed: {exc}"
        ) from None
    except PdfError as exc:
        raise EngineError(
            "pdf_unreadable", f"The PDF cannot be signed: {exc}"
        ) from None
    return SignedOutput(field_name=field_name, signing_time=signing_time)


def _free_field_name(existing: dict[str, Any]) -> str:
    n = 1
    while f"Signature{n}" in existing:
        n += 1
    return f"Signature{n}"


def _field_spec(
    reader: PdfFileReader,
    existing: dict[str, Any],
    field_name: str,
    appearance: Appearance | None,
) -> fields.SigFieldSpec | None:
    if field_name in existing:
        if existing[field_name] is not None:
            raise EngineError(
                "field_already_signed",
                f"The signature field '{field_name}' is already signed.",
            )
        if appearance is not None:
            raise EngineError(
                "field_exists",
                f"The field '{field_name}' exists: its own box is used, do not give an appearance box.",
            )
        return None
    if appearance is None:
        return fields.SigFieldSpec(sig_field_name=field_name)
    page_count = int(reader.root["/Pages"]["/Count"])
    if not 1 <= appearance.page <= page_count:
        raise EngineError(
            "page_out_of_range",
            f"The document has {page_count} pages; page {appearance.page} does not exist.",
        )
    x1, y1, x2, y2 = appearance.box
    if x2 <= x1 or y2 <= y1:
        raise EngineError(
            "invalid_box",
            "The appearance box must be [x1, y1, x2, y2] with x2 > x1 and y2 > y1.",
        )
    return fields.SigFieldSpec(
        sig_field_name=field_name,
        on_page=appearance.page - 1,
        box=(int(x1), int(y1), int(x2), int(y2)),
    )


_timestampers: dict[str, timestamps.HTTPTimeStamper] = {}
_timestampers_lock = threading.Lock()


def timestamper_for(url: str, *, timeout: int = 10) -> timestamps.HTTPTimeStamper:
    """One HTTPTimeStamper per TSA URL and process: it caches the token size probe (a second TSA call otherwise)."""
    with _timestampers_lock:
        stamper = _timestampers.get(url)
        if stamper is None:
            stamper = _timestampers[url] = timestamps.HTTPTimeStamper(
                url, timeout=timeout
            )
        return stamper


@dataclass(frozen=True, slots=True)
class SignatureReport:
    field_name: str
    kind: str  # "signature" or "document_timestamp"
    signer_subject: str | None
    signer_certificate_sha256: str | None
    signing_time: datetime | None
    intact: bool
    valid: bool
    trusted: bool
    revocation: str
    timestamp_valid: bool | None
    timestamp_time: datetime | None
    coverage: str | None
    modification_level: str | None
    pades_level: str | None
    bottom_line: bool
    problems: list[str]


def validate_pdf(
    stream: IO[bytes],
    *,
    trust_roots: Sequence[asn1_x509.Certificate],
    allow_fetching: bool,
) -> list[SignatureReport]:
    """Validate every signature and document timestamp in the PDF, oldest first.

    Raises:
        EngineError: `pdf_unreadable` or `pdf_encrypted`.
    """
    try:
        reader = PdfFileReader(stream, strict=False)
        if reader.encrypted:
            raise EngineError(
                "pdf_encrypted",
                "The PDF is encrypted; it cannot be validated without its password.",
            )
        embedded = list(reader.embedded_signatures)
    except EngineError:
        raise
    except (PdfError, KeyError, ValueError, TypeError) as exc:
        raise EngineError(
            "pdf_unreadable", f"The file cannot be read as a PDF: {exc}"
        ) from None
    dss_context = _dss_context(reader, trust_roots)
    reports = []
    for position, signature in enumerate(embedded):
        later_doc_timestamp = any(
            other.sig_object_type == "/DocTimeStamp"
            for other in embedded[position + 1 :]
        )
        reports.append(
            _validate_one(
                signature, trust_roots, allow_fetching, dss_context, later_doc_timestamp
            )
        )
    return reports


def _dss_context(
    reader: PdfFileReader, trust_roots: Sequence[asn1_x509.Certificate]
) -> ValidationContext | None:
    try:
        dss = DocumentSecurityStore.read_dss(reader)
    except (NoDSSFoundError, PdfError, KeyError, ValueError):
        return None
    # Offline and strict: B-LT means the file alone proves the chain was not revoked.
    context: ValidationContext = dss.as_validation_context(
        {
            "trust_roots": list(trust_roots),
            "allow_fetching": False,
            "revocation_mode": "hard-fail",
        }
    )
    return context


def _validate_one(
    signature: Any,
    trust_roots: Sequence[asn1_x509.Certificate],
    allow_fetching: bool,
    dss_context: ValidationContext | None,
    later_doc_timestamp: bool,
) -> SignatureReport:
    problems: list[str] = []
    context = ValidationContext(
        trust_roots=list(trust_roots), allow_fetching=allow_fetching
    )
    if signature.sig_object_type == "/DocTimeStamp":
        ts_status = _run(
            async_validate_pdf_timestamp(signature, validation_context=context), context
        )
        ts_ok = bool(ts_status.intact and ts_status.valid and ts_status.trusted)
        return SignatureReport(
            field_name=str(signature.field_name),
            kind="document_timestamp",
            signer_subject=ts_status.signing_cert.subject.human_friendly,
            signer_certificate_sha256=ts_status.signing_cert.sha256.hex(),
            signing_time=ts_status.timestamp,
            intact=ts_status.intact,
            valid=ts_status.valid,
            trusted=ts_status.trusted,
            revocation="not_applicable",
            timestamp_valid=ts_ok,
            timestamp_time=ts_status.timestamp,
            coverage=ts_status.coverage.name.lower() if ts_status.coverage else None,
            modification_level=ts_status.modification_level.name.lower()
            if ts_status.modification_level
            else None,
            pades_level=None,
            bottom_line=ts_ok,
            problems=[] if ts_ok else ["the document timestamp does not validate"],
        )
    status = _run(
        async_validate_pdf_signature(signature, signer_validation_context=context),
        context,
    )
    ts = status.timestamp_validity
    timestamp_ok = bool(ts and ts.intact and ts.valid and ts.trusted)
    if not status.intact:
        problems.append("the signed bytes were changed after signing (digest mismatch)")
    if not status.valid:
        problems.append("the signature value does not verify")
    if not status.trusted:
        problems.append("the signer's certificate does not chain to a trusted root")
    if status.revocation_details is not None:
        problems.append(
            f"the signer's certificate was revoked on {status.revocation_details.revocation_date.isoformat()}"
        )
    if ts is not None and not timestamp_ok:
        problems.append("the signature timestamp does not validate")
    level = None
    if status.intact and status.valid:
        level = "B-B"
        if timestamp_ok:
            level = "B-T"
            if dss_context is not None and _lt_holds(signature, dss_context):
                level = "B-LTA" if later_doc_timestamp else "B-LT"
    return SignatureReport(
        field_name=str(signature.field_name),
        kind="signature",
        signer_subject=status.signing_cert.subject.human_friendly,
        signer_certificate_sha256=status.signing_cert.sha256.hex(),
        signing_time=status.signer_reported_dt or signature.self_reported_timestamp,
        intact=status.intact,
        valid=status.valid,
        trusted=status.trusted,
        revocation="revoked"
        if status.revocation_details is not None
        else ("checked" if allow_fetching and status.trusted else "not_checked"),
        timestamp_valid=timestamp_ok if ts is not None else None,
        timestamp_time=ts.timestamp if ts is not None else None,
        coverage=status.coverage.name.lower() if status.coverage else None,
        modification_level=status.modification_level.name.lower()
        if status.modification_level
        else None,
        pades_level=level,
        bottom_line=status.bottom_line,
        problems=problems,
    )


def _lt_holds(signature: Any, dss_context: ValidationContext) -> bool:
    try:
        status = _run(
            async_validate_pdf_signature(
                signature, signer_validation_context=dss_context, skip_diff=True
            ),
            dss_context,
        )
    except (SigningError, ValueError):
        return False
    return bool(status.bottom_line)


def simple_signer(
    *, certificate_der: bytes, private_key_der: bytes, chain_der: Sequence[bytes]
) -> CachedKeySigner:
    """A signer over a key held by the server itself (PKCS#8 DER), e.g. the audit seal."""
    key = serialization.load_der_private_key(private_key_der, password=None)
    if not isinstance(
        key, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey
    ):
        raise EngineError("unsupported_key", "The key type cannot sign PDFs here.")
    return CachedKeySigner(
        certificate=asn1_x509.Certificate.load(certificate_der),
        private_key=key,
        chain=[asn1_x509.Certificate.load(der) for der in chain_der],
    )


def seal_pdf(
    pdf_bytes: bytes,
    signer: signers.Signer,
    *,
    reason: str,
    field_name: str = "SignVaultSeal",
) -> bytes:
    """Add an invisible PAdES B-B signature over the whole PDF (an incremental update)."""
    source, target = io.BytesIO(pdf_bytes), io.BytesIO()
    sign_pdf(
        source,
        target,
        signer,
        SignOptions(field_name=field_name, reason=reason),
        signing_time=utcnow(),
    )
    return target.getvalue()
