import uuid
from datetime import datetime

from app.core.schemas import Schema


class Provenance(Schema):
    produced_here: bool
    document_id: uuid.UUID | None = None
    version: int | None = None


class SignatureValidation(Schema):
    field_name: str
    kind: str
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


class ValidationReport(Schema):
    sha256: str
    signature_count: int
    all_valid: bool
    provenance: Provenance
    signatures: list[SignatureValidation]
