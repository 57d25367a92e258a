"""The pyHanko engine: the only module that imports pyHanko. Pure functions, bytes in and out."""

from collections.abc import Sequence
from io import BytesIO

from asn1crypto import keys as asn1_keys
from asn1crypto import x509 as asn1_x509
from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
from pyhanko.sign import fields, signers
from pyhanko_certvalidator.registry import SimpleCertificateStore

# A fixed /Contents size: pyHanko need not sign twice to measure the CMS.
SEAL_BYTES_RESERVED = 16_384


def simple_signer(
    *, certificate_der: bytes, private_key_der: bytes, chain_der: Sequence[bytes]
) -> signers.Signer:
    """A pyHanko signer over an already-loaded key (PKCS#8 DER) and its certificate chain."""
    return signers.SimpleSigner(
        signing_cert=asn1_x509.Certificate.load(certificate_der),
        signing_key=asn1_keys.PrivateKeyInfo.load(private_key_der),
        cert_registry=SimpleCertificateStore.from_certs(  # type: ignore[no-untyped-call]
            [asn1_x509.Certificate.load(der) for der in chain_der]
        ),
    )


def seal_pdf(
    pdf_bytes: bytes,
    signer: signers.Signer,
    *,
    reason: str,
    field_name: str = "SignVaultSeal",
) -> bytes:
    """Add an invisible PAdES B-B signature over the whole PDF (an incremental update)."""
    writer = IncrementalPdfFileWriter(BytesIO(pdf_bytes))
    metadata = signers.PdfSignatureMetadata(
        field_name=field_name,
        reason=reason,
        md_algorithm="sha256",
        subfilter=fields.SigSeedSubFilter.PADES,
    )
    output = signers.PdfSigner(metadata, signer=signer).sign_pdf(
        writer, bytes_reserved=SEAL_BYTES_RESERVED
    )
    signed: bytes = output.getvalue()
    return signed
