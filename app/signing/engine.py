"""The signing engine: the only module that drives pyHanko.

Pure functions over PDF streams and a pyHanko `Signer`. Speed choices, measured
in ../shared/research/: the private key is parsed once (pyHanko's SimpleSigner
re-parses it for every signature), the signingCertificateV2 attribute is built
once per signer (asn1crypto re-serialises freshly built nested values on every
dump: ~14 ms a signature), the CMS size is fixed (`bytes_reserved`, else pyHanko
builds the CMS twice), and each worker thread keeps one event loop.
"""

import asyncio
import hashlib
import io
import logging
import secrets
import ssl
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterable, Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import IO, TYPE_CHECKING, Any

import aiohttp
import certifi
from asn1crypto import cms, tsp
from asn1crypto import crl as asn1_crl
from asn1crypto import keys as asn1_keys
from asn1crypto import ocsp as asn1_ocsp
from asn1crypto import x509 as asn1_x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from pyhanko.pdf_utils import generic, misc
from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
from pyhanko.pdf_utils.misc import PdfError
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.sign import fields, signers, timestamps
from pyhanko.sign.attributes import CMSAttributeProvider, SignedAttributeProviderSpec
from pyhanko.sign.general import SigningError, as_signing_certificate_v2
from pyhanko.sign.signers.pdf_cms import PdfCMSSignedAttributes
from pyhanko.sign.signers.pdf_signer import PreSignValidationStatus
from pyhanko.sign.timestamps.common_utils import TimestampRequestError
from pyhanko.sign.validation.dss import DocumentSecurityStore
from pyhanko.sign.validation.errors import NoDSSFoundError
from pyhanko.sign.validation.pdf_embedded import (
    async_validate_pdf_signature,
    async_validate_pdf_timestamp,
)
from pyhanko_certvalidator import ValidationContext
from pyhanko_certvalidator.errors import (
    InsufficientRevinfoError,
    PathBuildingError,
    PathValidationError,
    RevokedError,
)
from pyhanko_certvalidator.fetchers.aiohttp_fetchers import AIOHttpFetcherBackend
from pyhanko_certvalidator.fetchers.aiohttp_fetchers.util import LazySession
from pyhanko_certvalidator.fetchers.api import (
    CRLFetcher,
    FetcherBackend,
    Fetchers,
    OCSPFetcher,
)
from pyhanko_certvalidator.registry import SimpleCertificateStore

from app.core.types import utcnow

if TYPE_CHECKING:
    from PIL.Image import Image as PILImage
    from pyhanko.stamp import TextStampStyle

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


logger = logging.getLogger("signvault.signing")


class _CertvalidatorWarnings(logging.Filter):
    """Drops pyHanko's warnings, with a traceback, for each chain check that fails.

    They come once per check, two tracebacks for one untrusted signature, from
    the function that maps the failure into the status the report is made of;
    `validate_pdf` logs the report's problems in one line instead.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        return record.funcName not in ("handle_certvalidator_errors", "_warn")


logging.getLogger("pyhanko.sign.validation.generic_cms").addFilter(
    _CertvalidatorWarnings()
)


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
    image: bytes | None = None  # PNG or JPEG, checked by `stamp_image`


DEFAULT_STAMP_TEXT = "Signed by %(signer)s\n%(ts)s"
MAX_IMAGE_BYTES = 1024 * 1024
# A decompression-bomb guard, far above any sensible stamp image: decoded as
# RGBA it is at most 64 MB, checked from the header before a pixel is decoded.
MAX_IMAGE_PIXELS = 4096 * 4096
# Drawn in a box of a few hundred points: 1024 px is ~300 dpi or more.
_STAMP_IMAGE_SIDE = 1024
_STAMP_PADDING = 5


def stamp_image(data: bytes) -> "PILImage":
    """The PNG or JPEG of a visible signature, decoded, in a mode pyHanko embeds, at most 1024 px a side.

    Raises:
        EngineError: `image_too_large` (over MAX_IMAGE_BYTES or a pixel bomb), `image_invalid`.
    """
    from PIL import Image, UnidentifiedImageError

    if len(data) > MAX_IMAGE_BYTES:
        raise EngineError(
            "image_too_large",
            f"The appearance image is {len(data)} bytes; the limit is {MAX_IMAGE_BYTES}.",
        )
    image: Image.Image
    try:
        image = Image.open(io.BytesIO(data), formats=("PNG", "JPEG"))
        if image.width * image.height > MAX_IMAGE_PIXELS:
            raise EngineError(
                "image_too_large",
                f"The appearance image is {image.width}x{image.height} pixels; the limit is {MAX_IMAGE_PIXELS} pixels.",
            )
        image.load()
    except EngineError:
        raise
    except Image.DecompressionBombError:
        raise EngineError(
            "image_too_large",
            f"The appearance image has too many pixels; the limit is {MAX_IMAGE_PIXELS}.",
        ) from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, EOFError):
        raise EngineError(
            "image_invalid", "The appearance image is not a readable PNG or JPEG."
        ) from None
    if image.mode not in ("RGB", "RGBA", "L", "LA"):
        # Palettes (with or without transparency), CMYK, 16-bit: pyHanko embeds RGB(A) and grey.
        keeps_alpha = image.mode in ("P", "PA") or "transparency" in image.info
        image = image.convert("RGBA" if keeps_alpha else "RGB")
    image.thumbnail((_STAMP_IMAGE_SIDE, _STAMP_IMAGE_SIDE))
    return image


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

    The certificate is identified by its SHA-512, not the default SHA-256: a
    default field is filled in as a built value when parsed, and asn1crypto then
    re-serialises the whole attribute on every dump (~10 ms a signature for an
    issuer name of three parts, more for real ones). An explicit algorithm is
    parsed like the rest.

    Setting a spec replaces pyHanko's own, so any CAdES signed attribute the
    product adds later (commitment type, signer attributes) must be yielded here.
    """

    def __init__(self, signing_cert: asn1_x509.Certificate) -> None:
        self._sc2 = as_signing_certificate_v2(signing_cert, hash_algo="sha512").dump()

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
        # Parsed, not built: asn1crypto re-serialises a certificate built from Python
        # values on every dump (~100 ms a signature), and caches a parsed one's DER.
        certificate = asn1_x509.Certificate.load(certificate.dump())
        chain = [asn1_x509.Certificate.load(c.dump()) for c in chain]
        super().__init__(
            signing_cert=certificate,
            signing_key=asn1_keys.PrivateKeyInfo.load(pkcs8),
            cert_registry=SimpleCertificateStore.from_certs([certificate, *chain]),  # type: ignore[no-untyped-call]
        )
        self._private_key = private_key
        self.signed_attr_prov_spec = _PadesSignedAttributes(certificate)
        # Per digest algorithm: the B-B CMS cut around its two variable parts,
        # or None where pyHanko's own output could not be reproduced.
        self._templates: dict[str, _CmsTemplate | None] = {}

    async def async_sign(
        self,
        data_digest: bytes,
        digest_algorithm: str,
        dry_run: bool = False,
        use_pades: bool = False,
        timestamper: Any = None,
        signed_attr_settings: Any = None,
        is_pdf_sig: bool = True,
        encap_content_info: Any = None,
    ) -> Any:
        """A B-B CMS from this signer's template; anything else (timestamps, dry runs) by pyHanko."""
        template = None
        if (
            timestamper is None
            and not dry_run
            and use_pades
            and is_pdf_sig
            and encap_content_info is None
            and isinstance(self.signed_attr_prov_spec, _PadesSignedAttributes)
            and self.unsigned_attr_prov_spec is None
            and not self.attribute_certs
        ):
            template = await self._template(digest_algorithm.lower())
        if template is None:
            return await super().async_sign(
                data_digest,
                digest_algorithm,
                dry_run=dry_run,
                use_pades=use_pades,
                timestamper=timestamper,
                signed_attr_settings=signed_attr_settings,
                is_pdf_sig=is_pdf_sig,
                encap_content_info=encap_content_info,
            )
        return template.sign(data_digest, self.sign_raw)

    async def _template(self, digest_algorithm: str) -> "_CmsTemplate | None":
        if digest_algorithm not in self._templates:
            # Built twice at worst when two threads race: both give the same result.
            self._templates[digest_algorithm] = await _CmsTemplate.build(
                self, digest_algorithm
            )
        return self._templates[digest_algorithm]

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


@dataclass(frozen=True, slots=True)
class _CmsTemplate:
    """A signer's B-B CMS as DER cut around the document digest and the signature value.

    With a fixed set of signed attributes (content type, message digest,
    signingCertificateV2) and no unsigned ones, the CMS of a PAdES B-B signature
    differs from one document to the next only in those two byte strings, both
    of fixed length for RSA PKCS#1 v1.5. pyHanko spends ~1.5 ms a signature
    building and serialising the same asn1crypto structure; this joins bytes.
    Only used where it reproduces pyHanko's output byte for byte (checked when
    built, on a second digest).
    """

    attributes_head: (
        bytes  # the signed attributes, as signed (a SET OF), up to the digest
    )
    attributes_tail: bytes
    head: bytes  # the whole ContentInfo up to the digest
    middle: bytes  # from the digest to the signature value
    tail: bytes
    digest_algorithm: str
    signature_size: int

    @classmethod
    async def build(
        cls, signer: "CachedKeySigner", digest_algorithm: str
    ) -> "_CmsTemplate | None":
        """The template, or None where this signer's CMS is not a fixed layout."""
        try:
            mechanism = signer.get_signature_mechanism_for_digest(digest_algorithm)
            if mechanism.signature_algo != "rsassa_pkcs1v15":
                return None  # ECDSA and PSS signatures vary in length or bytes
            size = _hash(digest_algorithm).digest_size
        except (SigningError, ValueError):
            return None
        probe, check = secrets.token_bytes(size), secrets.token_bytes(size)
        pyhanko_cms = await super(CachedKeySigner, signer).async_sign(
            probe, digest_algorithm, use_pades=True
        )
        der = pyhanko_cms.dump()
        signer_info = pyhanko_cms["content"]["signer_infos"][0]
        signature = signer_info["signature"].native
        # The signed attributes are signed as a SET OF; the CMS holds them as [0].
        attributes = b"\x31" + signer_info["signed_attrs"].dump()[1:]
        if (
            der.count(probe) != 1
            or der.count(signature) != 1
            or attributes.count(probe) != 1
            or der.index(probe) > der.index(signature)
        ):
            return None
        at, sig_at = der.index(probe), der.index(signature)
        template = cls(
            attributes_head=attributes[: attributes.index(probe)],
            attributes_tail=attributes[attributes.index(probe) + size :],
            head=der[:at],
            middle=der[at + size : sig_at],
            tail=der[sig_at + len(signature) :],
            digest_algorithm=digest_algorithm,
            signature_size=len(signature),
        )
        expected = await super(CachedKeySigner, signer).async_sign(
            check, digest_algorithm, use_pades=True
        )
        ours = template.sign(check, signer.sign_raw)
        return template if ours.dump() == expected.dump() else None

    def sign(
        self, digest: bytes, sign_raw: Callable[[bytes, str], bytes]
    ) -> "cms.ContentInfo":
        signature = sign_raw(
            self.attributes_head + digest + self.attributes_tail, self.digest_algorithm
        )
        if len(signature) != self.signature_size:
            raise SigningError("the signature does not fit the CMS template")
        return cms.ContentInfo.load(
            self.head + digest + self.middle + signature + self.tail
        )


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


class RevocationCache:
    """OCSP responses and CRLs fetched while signing, reused across signatures in this process.

    Consecutive B-LT/B-LTA signatures with one signer would otherwise fetch the
    same revocation data every time. An entry is served until the earlier of its
    nextUpdate (less a minute, so it is still current when validated) and the
    caller's `max_age`; data without a nextUpdate is never cached. Entries are
    DER, parsed afresh for each use (asn1crypto objects parse lazily and are not
    safe to share across threads). Bounded in entries and bytes, least recently
    used first out.
    """

    def __init__(
        self,
        *,
        max_entries: int = 1024,
        max_bytes: int = 64 * 1024 * 1024,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self._entries: OrderedDict[Hashable, _CachedRevocation] = OrderedDict()
        self._bytes = 0
        self._max_entries = max_entries
        self._max_bytes = max_bytes
        self._clock = clock
        self._lock = threading.Lock()
        self.hits = self.misses = 0

    def get(self, key: Hashable, *, max_age: timedelta) -> list[bytes] | None:
        ders: list[bytes] | None = self._recall(key, max_age)
        return ders

    def put(
        self, key: Hashable, ders: list[bytes], next_update: datetime | None
    ) -> None:
        self._keep(key, ders, sum(len(der) for der in ders), next_update)

    def validation_info(
        self, key: Hashable, *, max_age: timedelta
    ) -> "_KnownValidationInfo | None":
        """What an earlier signature's pre-signing validation of the same signer and TSA found."""
        info: _KnownValidationInfo | None = self._recall(("validation", key), max_age)
        return info

    def keep_validation_info(
        self, key: Hashable, info: "_KnownValidationInfo", next_update: datetime | None
    ) -> None:
        self._keep(("validation", key), info, info.size, next_update)

    def _recall(self, key: Hashable, max_age: timedelta) -> Any:
        now = self._clock()
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                self.misses += 1
                return None
            if (
                now >= entry.next_update - _REVOCATION_MARGIN
                or now >= entry.stored_at + max_age
            ):
                self._drop(key)
                self.misses += 1
                return None
            self._entries.move_to_end(key)
            self.hits += 1
            return entry.value

    def _keep(
        self, key: Hashable, value: Any, size: int, next_update: datetime | None
    ) -> None:
        if next_update is None or size > self._max_bytes:
            return
        with self._lock:
            if key in self._entries:
                self._drop(key)
            self._entries[key] = _CachedRevocation(
                value, size, next_update, self._clock()
            )
            self._bytes += size
            while (
                len(self._entries) > self._max_entries or self._bytes > self._max_bytes
            ):
                self._drop(next(iter(self._entries)))

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self._bytes = 0

    def _drop(self, key: Hashable) -> None:
        self._bytes -= self._entries.pop(key).size


@dataclass(frozen=True, slots=True)
class _CachedRevocation:
    value: Any
    size: int
    next_update: datetime
    stored_at: datetime


@dataclass(frozen=True, slots=True)
class _KnownValidationInfo:
    """A pre-signing validation's outcome, its OCSP responses and CRLs kept as DER (see `RevocationCache`)."""

    status: PreSignValidationStatus
    ocsps: tuple[bytes, ...]
    crls: tuple[bytes, ...]

    @classmethod
    def of(
        cls, status: PreSignValidationStatus
    ) -> "tuple[_KnownValidationInfo, datetime | None]":
        """The status to keep, and until when its revocation data is current (None: not to keep)."""
        updates: list[datetime | None] = [
            _ocsp_next_update(r) for r in status.ocsps_to_embed
        ] + [_crl_next_update(c) for c in status.crls_to_embed]
        info = cls(
            replace(status, ocsps_to_embed=[], crls_to_embed=[]),
            tuple(r.dump() for r in status.ocsps_to_embed),
            tuple(c.dump() for c in status.crls_to_embed),
        )
        if None in updates:
            return info, None
        # Certificates without revocation pointers: good until the caller's max_age.
        return info, min(updates, default=datetime.max.replace(tzinfo=UTC))  # type: ignore[type-var]

    @property
    def size(self) -> int:
        return sum(map(len, self.ocsps)) + sum(map(len, self.crls))

    def status_for_one_signature(self) -> PreSignValidationStatus:
        return replace(
            self.status,
            ocsps_to_embed=[asn1_ocsp.OCSPResponse.load(der) for der in self.ocsps],
            crls_to_embed=[asn1_crl.CertificateList.load(der) for der in self.crls],
        )


_REVOCATION_MARGIN = timedelta(minutes=1)
REVOCATION_CACHE = RevocationCache()


class _CachedOCSPFetcher(OCSPFetcher):
    """Serves OCSP responses from the cache, fetching (and caching) the missing ones."""

    def __init__(
        self, fetcher: OCSPFetcher, cache: RevocationCache, max_age: timedelta
    ) -> None:
        self._fetcher = fetcher
        self._cache = cache
        self._max_age = max_age
        self._served: dict[tuple[bytes, Hashable], asn1_ocsp.OCSPResponse] = {}

    async def fetch(self, cert: Any, authority: Any) -> asn1_ocsp.OCSPResponse:
        key = (_certificate_key(cert), authority.hashable)
        cached = self._cache.get(("ocsp", *key), max_age=self._max_age)
        if cached is not None:
            response = asn1_ocsp.OCSPResponse.load(cached[0])
        else:
            response = await self._fetcher.fetch(cert, authority)
            self._cache.put(
                ("ocsp", *key), [response.dump()], _ocsp_next_update(response)
            )
        self._served[key] = response
        return response

    def fetched_responses(self) -> Iterable[asn1_ocsp.OCSPResponse]:
        return list(self._served.values())

    def fetched_responses_for_cert(self, cert: Any) -> Iterable[asn1_ocsp.OCSPResponse]:
        subject = _certificate_key(cert)
        return [r for (s, _), r in self._served.items() if s == subject]


def _certificate_key(cert: Any) -> bytes:
    """The certificate's SHA-256: issuer and serial alone may repeat across test or re-keyed PKIs."""
    return hashlib.sha256(cert.dump()).digest()


def _ocsp_next_update(response: asn1_ocsp.OCSPResponse) -> datetime | None:
    """The earliest nextUpdate of the response's single responses (None if any has none)."""
    try:
        data = response["response_bytes"]["response"].parsed["tbs_response_data"]
        updates: list[datetime | None] = [
            single["next_update"].native for single in data["responses"]
        ]
    except (KeyError, TypeError, ValueError):
        return None
    known = [update for update in updates if update is not None]
    if not known or len(known) != len(updates):
        return None
    return min(known)


def _crl_next_update(crl: asn1_crl.CertificateList) -> datetime | None:
    update: datetime | None = crl["tbs_cert_list"]["next_update"].native
    return update


class _CachedCRLFetcher(CRLFetcher):
    """Serves the CRLs for a certificate from the cache, fetching (and caching) them when missing."""

    def __init__(
        self, fetcher: CRLFetcher, cache: RevocationCache, max_age: timedelta
    ) -> None:
        self._fetcher = fetcher
        self._cache = cache
        self._max_age = max_age
        self._served: dict[bytes, list[asn1_crl.CertificateList]] = {}

    async def fetch(
        self, cert: Any, *, use_deltas: Any = None
    ) -> Iterable[asn1_crl.CertificateList]:
        key = ("crl", _certificate_key(cert), use_deltas)
        cached = self._cache.get(key, max_age=self._max_age)
        if cached is not None:
            crls = [asn1_crl.CertificateList.load(der) for der in cached]
        else:
            crls = list(await self._fetcher.fetch(cert, use_deltas=use_deltas))
            updates = [u for u in map(_crl_next_update, crls) if u is not None]
            self._cache.put(
                key,
                [c.dump() for c in crls],
                min(updates) if updates and len(updates) == len(crls) else None,
            )
        self._served[_certificate_key(cert)] = crls
        return crls

    def fetched_crls(self) -> Iterable[asn1_crl.CertificateList]:
        unique = {c.dump(): c for crls in self._served.values() for c in crls}
        return list(unique.values())

    def fetched_crls_for_cert(self, cert: Any) -> Iterable[asn1_crl.CertificateList]:
        # A KeyError when not fetched through this fetcher, as the interface asks.
        return self._served[_certificate_key(cert)]


class _CachingFetcherBackend(FetcherBackend):
    """pyHanko's aiohttp fetchers behind the process-wide revocation cache (issuer certificates are not cached)."""

    def __init__(self, cache: RevocationCache, max_age: timedelta) -> None:
        # The backend takes a LazySession too (its own default is one).
        self._backend = AIOHttpFetcherBackend(session=_HTTP)  # type: ignore[arg-type]
        self._cache = cache
        self._max_age = max_age

    def get_fetchers(self) -> Fetchers:
        fetchers = self._backend.get_fetchers()
        return Fetchers(
            ocsp_fetcher=_CachedOCSPFetcher(
                fetchers.ocsp_fetcher, self._cache, self._max_age
            ),
            crl_fetcher=_CachedCRLFetcher(
                fetchers.crl_fetcher, self._cache, self._max_age
            ),
            cert_fetcher=fetchers.cert_fetcher,
        )

    async def close(self) -> None:
        await self._backend.close()  # type: ignore[no-untyped-call]


@dataclass(frozen=True, slots=True)
class RevocationFetching:
    """What B-LT/B-LTA signing needs: a context that fetches OCSP/CRL data, and its HTTP backend.

    The backend is ours to close (`_run` does): pyHanko derives further contexts
    from this one while signing, and those would otherwise leave sessions open.
    `cache` also keeps what a B-LT signature's pre-signing validation found, for
    the next ones with the same signer, TSA and trust (`scope`), for `max_age`.
    """

    context: ValidationContext
    backend: FetcherBackend
    cache: RevocationCache | None = None
    max_age: timedelta = timedelta(0)
    scope: bytes = b""

    async def aclose(self) -> None:
        await self.context.aclose()  # type: ignore[no-untyped-call]
        await self.backend.close()  # type: ignore[no-untyped-call]


def revocation_fetching(
    trust_roots: Sequence[asn1_x509.Certificate],
    chain: Sequence[asn1_x509.Certificate],
    *,
    cache: RevocationCache = REVOCATION_CACHE,
    max_age: timedelta = timedelta(minutes=5),
) -> RevocationFetching:
    """A context that collects revocation data, reusing what `cache` holds for at most `max_age` (0: fetch anew)."""
    if max_age <= timedelta(0):
        backend: FetcherBackend = AIOHttpFetcherBackend(session=_HTTP)  # type: ignore[arg-type]
        context = _fetching_context(trust_roots, chain, backend)
        return RevocationFetching(context, backend)
    backend = _CachingFetcherBackend(cache, max_age)
    scope = hashlib.sha256()
    for certificate in (*trust_roots, None, *chain):
        scope.update(b"|" if certificate is None else _certificate_key(certificate))
    return RevocationFetching(
        _fetching_context(trust_roots, chain, backend),
        backend,
        cache=cache,
        max_age=max_age,
        scope=scope.digest(),
    )


def _fetching_context(
    trust_roots: Sequence[asn1_x509.Certificate],
    chain: Sequence[asn1_x509.Certificate],
    backend: FetcherBackend,
) -> ValidationContext:
    return ValidationContext(
        trust_roots=list(trust_roots),
        other_certs=list(chain),
        allow_fetching=True,
        revocation_mode="hard-fail",
        fetcher_backend=backend,
    )


class _ThreadLoop:
    """One event loop per thread, and its HTTP session, closed when the thread (and so this holder) goes away."""

    def __init__(self) -> None:
        self.runner = asyncio.Runner()
        self._client: aiohttp.ClientSession | None = None

    def client(self) -> aiohttp.ClientSession:
        """This thread's session for TSA, OCSP and CRL requests (call it on this thread's loop)."""
        if self._client is None or self._client.closed:
            self._client = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(ssl=_ssl_context())
            )
        return self._client

    def __del__(self) -> None:
        # Not runner.close(): the collector may call us from a thread whose own
        # loop is running, and then the session cannot be closed here either.
        loop = self.runner.get_loop()
        try:
            asyncio.get_running_loop()
        except RuntimeError:
            if self._client is not None and not loop.is_closed():
                loop.run_until_complete(self._client.close())
        if not loop.is_closed():
            loop.close()


_loops = threading.local()


def _thread_loop() -> _ThreadLoop:
    holder: _ThreadLoop | None = getattr(_loops, "holder", None)
    if holder is None:
        holder = _loops.holder = _ThreadLoop()
    return holder


_ssl_contexts: list[ssl.SSLContext] = []
_ssl_lock = threading.Lock()


def _ssl_context() -> ssl.SSLContext:
    """One TLS context for every outgoing request: loading the CA bundle costs 20-50 ms."""
    with _ssl_lock:
        if not _ssl_contexts:
            _ssl_contexts.append(ssl.create_default_context(cafile=certifi.where()))
        return _ssl_contexts[0]


class _ThreadSessions(LazySession):
    """Hands pyHanko's HTTP clients the calling thread's session, kept across signatures.

    pyHanko's own default opens a session, with a fresh TLS context, for every
    TSA request and every validation context: 20-50 ms a signature at B-T and
    above. A session belongs to the event loop that made it, so each thread
    (each with its own loop, see `_run`) has its own.
    """

    def get_session(self) -> aiohttp.ClientSession:
        return _thread_loop().client()

    async def close(self) -> None:
        """Nothing: the session outlives the pyHanko object that used it; it closes with its thread."""


_HTTP = _ThreadSessions()  # type: ignore[no-untyped-call]


def _run(
    coroutine: Any, *contexts: ValidationContext | RevocationFetching | None
) -> Any:
    """Run a coroutine on this thread's persistent event loop (asyncio.run costs ~0.5 ms a call).

    Validation contexts that fetched OCSP/CRL data are closed on the same loop afterwards.
    """
    runner = _thread_loop().runner

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


# Bounds on the page tree, checked on upload: pyHanko trusts /Count and recurses per level.
MAX_PAGES = 10_000
MAX_PAGE_TREE_DEPTH = 64


@contextmanager
def _reading_pdf(what: str = "The file cannot be read as a PDF") -> Iterator[None]:
    """Turn what pyHanko raises on a malformed PDF into `pdf_unreadable`.

    pyHanko parses nested arrays and dictionaries recursively: a file nesting
    thousands deep exhausts the interpreter's recursion limit, which unwinds
    cleanly as a RecursionError (the thread and its event loop stay usable).
    """
    try:
        yield
    except EngineError:
        raise
    except RecursionError:
        raise EngineError(
            "pdf_unreadable",
            f"{what}: its objects are nested too deeply.",
        ) from None
    except (
        PdfError,
        KeyError,
        ValueError,
        TypeError,
        IndexError,
        AttributeError,
    ) as exc:
        raise EngineError("pdf_unreadable", f"{what}: {exc}") from None


def inspect_pdf(stream: IO[bytes]) -> PdfFacts:
    """Open a PDF the way signing will, to refuse early what cannot be signed.

    Every page object is read (so their nesting is bounded here, not while
    signing), the page tree is walked without recursion and checked to be a
    tree of at most MAX_PAGES pages and MAX_PAGE_TREE_DEPTH levels whose /Count
    is true, and the document information dictionary is read.

    Raises:
        EngineError: `pdf_unreadable` or `pdf_encrypted`.
    """
    with _reading_pdf():
        reader = PdfFileReader(stream, strict=False)
        if reader.encrypted:
            raise EngineError(
                "pdf_encrypted",
                "The PDF is encrypted; remove the password protection and upload it again.",
            )
        page_count = _walked_page_count(reader)
        with suppress(KeyError):
            reader.trailer["/Info"]  # signing updates it: parse it now
        names = [
            name
            for name, _value, _ref in fields.enumerate_sig_fields(
                reader, filled_status=None
            )
        ]
        signed = any(
            True for _ in fields.enumerate_sig_fields(reader, filled_status=True)
        )
    return PdfFacts(
        page_count=page_count, signature_fields=names, signed=signed, reader=reader
    )


def _walked_page_count(reader: PdfFileReader) -> int:
    """The number of pages, counted by walking the page tree with bounds.

    Raises:
        EngineError: `pdf_unreadable`: no page tree, a /Count that is not a whole
            number up to MAX_PAGES or that differs from the pages found, a loop,
            or a tree deeper than MAX_PAGE_TREE_DEPTH.
    """

    def refused(reason: str) -> EngineError:
        return EngineError("pdf_unreadable", f"The PDF's page tree {reason}.")

    root_ref = reader.root.raw_get("/Pages")
    if not isinstance(root_ref, generic.IndirectObject):
        raise refused("is missing")
    root = root_ref.reference.get_object()
    if not isinstance(root, generic.DictionaryObject):
        raise refused("is not a dictionary")
    declared = root.get("/Count")
    if not isinstance(declared, int) or not 0 <= declared <= MAX_PAGES:
        raise refused(
            f"declares {str(declared)[:40]} pages; a PDF here has at most {MAX_PAGES}"
        )
    seen = {root_ref.reference}
    nodes = [(root, 1)]
    pages = 0
    while nodes:
        node, depth = nodes.pop()
        kids = node.get("/Kids")
        if not isinstance(kids, generic.ArrayObject):
            raise refused("has a node without a /Kids array")
        for kid_ref in kids:
            if not isinstance(kid_ref, generic.IndirectObject):
                raise refused("has a child that is not an indirect object")
            if kid_ref.reference in seen:
                raise refused(
                    f"refers to object {kid_ref.idnum} twice: it loops back on itself"
                )
            seen.add(kid_ref.reference)
            kid = kid_ref.reference.get_object()
            if not isinstance(kid, generic.DictionaryObject):
                raise refused(f"has a child (object {kid_ref.idnum}) that is no page")
            kind = kid.get("/Type")
            if kind == "/Pages":
                if depth == MAX_PAGE_TREE_DEPTH:
                    raise refused(f"is deeper than {MAX_PAGE_TREE_DEPTH} levels")
                nodes.append((kid, depth + 1))
            elif kind == "/Page":
                pages += 1
                if pages > declared:
                    raise refused(f"holds more pages than its /Count of {declared}")
            else:
                raise refused(f"has a child (object {kid_ref.idnum}) that is no page")
    if pages != declared:
        raise refused(f"declares {declared} pages but holds {pages}")
    return pages


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
    with _reading_pdf():
        writer = (
            IncrementalPdfFileWriter.from_reader(source)
            if isinstance(source, PdfFileReader)
            else IncrementalPdfFileWriter(source, strict=False)
        )
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
    stamp = (
        _stamp_style(options.appearance, with_reason=options.reason is not None)
        if options.appearance
        else None
    )
    pdf_signer = signers.PdfSigner(
        metadata,
        signer=signer,
        # B-B has no timestamp, even with a TSA configured: pyHanko would add one.
        timestamper=timestamper if options.level != PadesLevel.B_B else None,
        stamp_style=stamp,
        new_field_spec=new_field,
    )
    try:
        _run(
            _async_sign_pdf(
                pdf_signer,
                writer,
                target,
                bytes_reserved=_BYTES_RESERVED[options.level],
                appearance_text_params=_stamp_parameters(signer, options)
                if stamp
                else None,
                known_validation=revocation
                if options.level == PadesLevel.B_LT
                else None,
            ),
            revocation,
        )
    except TimestampRequestError as exc:
        raise EngineError(
            "tsa_unavailable", f"The timestamp authority did not answer: {exc}"
        ) from None
    except (PathValidationError, PathBuildingError) as exc:
        raise _chain_refusal(exc) from None
    except SigningError as exc:
        # pyHanko wraps the signer's chain validation failure (B-LT/B-LTA).
        if isinstance(exc.__cause__, PathValidationError | PathBuildingError):
            raise _chain_refusal(exc.__cause__) from None
        raise EngineError(
            "signing_failed", f"The document could not be signed: {exc}"
        ) from None
    except PdfError as exc:
        raise EngineError(
            "pdf_unreadable", f"The PDF cannot be signed: {exc}"
        ) from None
    except RecursionError:
        raise EngineError(
            "pdf_unreadable",
            "The PDF cannot be signed: its objects are nested too deeply.",
        ) from None
    return SignedOutput(field_name=field_name, signing_time=signing_time)


def _stamp_parameters(signer: signers.Signer, options: SignOptions) -> dict[str, str]:
    """What a stamp text's placeholders stand for (pyHanko adds `ts`).

    `signer` is the certificate's holder, whatever account signs with it;
    `user` is that account (pyHanko would put it under `signer`, as the
    signature's /Name).
    """
    certificate = signer.signing_cert
    subject = certificate.subject if certificate is not None else None
    common_name = subject.native.get("common_name") if subject is not None else None
    if isinstance(common_name, list):  # a subject may repeat the attribute
        common_name = common_name[-1]
    return {
        "signer": str(common_name or (subject.human_friendly if subject else "")),
        "user": options.signer_name or "",
        "reason": options.reason or "",
    }


async def _async_sign_pdf(
    pdf_signer: signers.PdfSigner,
    writer: IncrementalPdfFileWriter,
    output: IO[bytes],
    *,
    bytes_reserved: int,
    appearance_text_params: dict[str, str] | None,
    known_validation: RevocationFetching | None,
) -> None:
    """`PdfSigner.async_sign_pdf`, step by step (pyHanko's staged signing API), reusing validation.

    With `known_validation`, the pre-signing validation of the signer's chain
    and the TSA's (path building, OCSP and CRL checks: ~7 ms even with the
    revocation data cached) runs once per signer, TSA and trust, and its
    outcome is reused while its revocation data stays current, as the revocation
    cache reuses the data itself. A refusal is never kept: it is checked anew.
    """
    session = pdf_signer.init_signing_session(writer)
    status = await _presign_validation(session, writer, known_validation)
    tbs = session.prepare_tbs_document(
        validation_info=status,
        bytes_reserved=bytes_reserved,
        appearance_text_params=appearance_text_params,
    )
    digest, written = tbs.digest_tbs_document(output=output)
    signed = await tbs.perform_signature(
        document_digest=digest.document_digest,
        pdf_cms_signed_attrs=PdfCMSSignedAttributes(
            signing_time=session.system_time,
            adobe_revinfo_attr=None if status is None else status.adobe_revinfo_attr,
            cades_signed_attrs=pdf_signer.signature_meta.cades_signed_attr_spec,
        ),
    )
    await signed.post_signature_processing(written)
    misc.finalise_output(output, written)  # type: ignore[no-untyped-call]


async def _presign_validation(
    session: Any,
    writer: IncrementalPdfFileWriter,
    known: RevocationFetching | None,
) -> PreSignValidationStatus | None:
    if known is None or known.cache is None:
        fresh: (
            PreSignValidationStatus | None
        ) = await session.perform_presign_validation(writer)
        return fresh
    timestamper = session.timestamper
    key = (
        known.scope,
        _certificate_key(session.pdf_signer.signer.signing_cert),
        timestamper.url
        if isinstance(timestamper, timestamps.HTTPTimeStamper)
        else None,
    )
    kept = known.cache.validation_info(key, max_age=known.max_age)
    if kept is not None:
        return kept.status_for_one_signature()
    status: PreSignValidationStatus = await session.perform_presign_validation(writer)
    info, current_until = _KnownValidationInfo.of(status)
    known.cache.keep_validation_info(key, info, current_until)
    return status


def _stamp_style(appearance: Appearance, *, with_reason: bool) -> "TextStampStyle":
    """Text only; with an image, the image on the left (its aspect kept) and the text beside it."""
    from pyhanko.stamp import TextStampStyle

    text = appearance.text or (
        DEFAULT_STAMP_TEXT + ("\nReason: %(reason)s" if with_reason else "")
    )
    if appearance.image is None:
        return TextStampStyle(stamp_text=text)
    from pyhanko.pdf_utils.images import PdfImage
    from pyhanko.pdf_utils.layout import (
        AxisAlignment,
        InnerScaling,
        Margins,
        SimpleBoxLayoutRule,
    )

    image = stamp_image(appearance.image)
    x1, y1, x2, y2 = (int(v) for v in appearance.box)
    pad = _STAMP_PADDING
    width, height = x2 - x1, y2 - y1
    # The image takes the full height it can, but never more than 40 % of the width.
    slot = max(
        0,
        int(
            min(
                (height - 2 * pad) * image.width / image.height,
                (width - 2 * pad) * 0.4,
            )
        ),
    )
    return TextStampStyle(
        stamp_text=text,
        background=PdfImage(image),
        background_opacity=1.0,
        background_layout=SimpleBoxLayoutRule(
            x_align=AxisAlignment.ALIGN_MIN,
            y_align=AxisAlignment.ALIGN_MID,
            margins=Margins(left=pad, right=width - pad - slot, top=pad, bottom=pad),
            inner_content_scaling=InnerScaling.STRETCH_TO_FIT,
        ),
        inner_content_layout=SimpleBoxLayoutRule(
            x_align=AxisAlignment.ALIGN_MIN,
            y_align=AxisAlignment.ALIGN_MID,
            margins=Margins(left=slot + 2 * pad, right=pad, top=pad, bottom=pad),
            inner_content_scaling=InnerScaling.SHRINK_TO_FIT,
        ),
    )


def _chain_refusal(exc: PathValidationError | PathBuildingError) -> EngineError:
    if isinstance(exc, RevokedError):
        return EngineError(
            "signer_revoked",
            f"The signer's certificate is revoked according to its issuer: {exc}",
        )
    if isinstance(exc, InsufficientRevinfoError):
        return EngineError(
            "revocation_unavailable",
            f"No revocation data could be fetched for the signer's chain: {exc}",
        )
    return EngineError(
        "chain_invalid",
        f"The signer's certificate chain could not be validated: {exc}",
    )


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
    left, bottom, right, top = _visible_area(reader, appearance.page - 1)
    if x1 < left or y1 < bottom or x2 > right or y2 > top:
        raise EngineError(
            "appearance_box_outside_page",
            f"The appearance box [{x1:g}, {y1:g}, {x2:g}, {y2:g}] is not inside page "
            f"{appearance.page}, whose visible area is [{left:g}, {bottom:g}, {right:g}, {top:g}].",
        )
    return fields.SigFieldSpec(
        sig_field_name=field_name,
        on_page=appearance.page - 1,
        box=(int(x1), int(y1), int(x2), int(y2)),
    )


# What viewers assume of a page without a MediaBox: US Letter.
_DEFAULT_MEDIA_BOX = (0.0, 0.0, 612.0, 792.0)


def _visible_area(
    reader: PdfFileReader, page_index: int
) -> tuple[float, float, float, float]:
    """The page's CropBox clipped to its MediaBox (both inheritable), normalised."""
    page_ref, _resources = reader.find_page_for_modification(page_index)  # type: ignore[no-untyped-call]
    boxes: dict[str, tuple[float, float, float, float]] = {}
    node = page_ref.get_object()
    for _level in range(MAX_PAGE_TREE_DEPTH + 1):  # the page and its ancestors
        for name in ("/MediaBox", "/CropBox"):
            if name not in boxes and name in node:
                boxes[name] = _rectangle(node[name])
        parent = node.get("/Parent")  # pyHanko's get() does not dereference
        if isinstance(parent, generic.IndirectObject):
            parent = parent.reference.get_object()
        if not isinstance(parent, generic.DictionaryObject) or len(boxes) == 2:
            break
        node = parent
    media = boxes.get("/MediaBox", _DEFAULT_MEDIA_BOX)
    crop = boxes.get("/CropBox", media)
    return (
        max(media[0], crop[0]),
        max(media[1], crop[1]),
        min(media[2], crop[2]),
        min(media[3], crop[3]),
    )


def _rectangle(value: Any) -> tuple[float, float, float, float]:
    """A PDF rectangle as (left, bottom, right, top), whichever corners it names."""
    if not isinstance(value, generic.ArrayObject) or len(value) != 4:
        raise EngineError("pdf_unreadable", "A page box of the PDF is not a rectangle.")
    a, b, c, d = (float(n) for n in value)
    return min(a, c), min(b, d), max(a, c), max(b, d)


_timestampers: dict[str, timestamps.HTTPTimeStamper] = {}
_timestampers_lock = threading.Lock()


def timestamper_for(url: str, *, timeout: int = 10) -> timestamps.HTTPTimeStamper:
    """One HTTPTimeStamper per TSA URL and process: it caches the token size probe (a second TSA call otherwise).

    Its requests go through the calling thread's HTTP session (`_ThreadSessions`).
    """
    with _timestampers_lock:
        stamper = _timestampers.get(url)
        if stamper is None:
            stamper = _timestampers[url] = timestamps.HTTPTimeStamper(
                url, timeout=timeout, session=_HTTP
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
    with _reading_pdf():
        reader = PdfFileReader(stream, strict=False)
        if reader.encrypted:
            raise EngineError(
                "pdf_encrypted",
                "The PDF is encrypted; it cannot be validated without its password.",
            )
        embedded = list(reader.embedded_signatures)
    try:
        dss_context = _dss_context(reader, trust_roots)
        reports = []
        for position, signature in enumerate(embedded):
            later_doc_timestamp = any(
                other.sig_object_type == "/DocTimeStamp"
                for other in embedded[position + 1 :]
            )
            reports.append(
                _validate_one(
                    signature,
                    trust_roots,
                    allow_fetching,
                    dss_context,
                    later_doc_timestamp,
                )
            )
    except RecursionError:
        raise EngineError(
            "pdf_unreadable",
            "The file cannot be validated: its objects are nested too deeply.",
        ) from None
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
    report = SignatureReport(
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
    if problems:
        logger.warning(
            "validation: signature %s by %s: %s",
            report.field_name,
            report.signer_subject,
            "; ".join(problems),
        )
    return report


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
