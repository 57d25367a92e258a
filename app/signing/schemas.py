import uuid
from datetime import datetime

from pydantic import ConfigDict, Field, field_validator

from app.core.schemas import RequestSchema, Schema
from app.settings.schemas import Box, checked_stamp_text
from app.signing.engine import Certification, PadesLevel


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


class AppearanceIn(RequestSchema):
    page: int = Field(ge=1, description="1-based page number.")
    box: Box = Field(
        description="[x1, y1, x2, y2] in PDF points from the bottom-left corner; inside the page's visible area (CropBox within MediaBox), else 422 `appearance_box_outside_page`."
    )
    text: str | None = Field(
        default=None,
        max_length=500,
        description="Stamp text; placeholders %(signer)s (the certificate's common name), %(user)s (the signing account's name), %(ts)s and %(reason)s. Default: the signing settings' text, else signer and time.",
    )
    image_base64: str | None = Field(
        default=None,
        description="A PNG or JPEG (base64, at most 1 MB decoded) drawn on the left of the stamp, the text beside it.",
    )

    @field_validator("text")
    @classmethod
    def check_text(cls, text: str | None) -> str | None:
        return checked_stamp_text(text)


class SignDocumentRequest(RequestSchema):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "certificate_id": "3f1c2a9e-5b7d-4c1e-9a3b-2d6f8e0c1b4a",
                    "level": "B-T",
                    "reason": "Approved",
                    "location": "Brussels",
                    "appearance": {"page": 1, "box": [50, 50, 250, 110]},
                }
            ]
        },
    )

    certificate_id: uuid.UUID | None = Field(
        default=None, description="Default: the caller's default certificate."
    )
    level: PadesLevel | None = Field(
        default=None,
        description="Default: the profile's, else `default_level` of the signing settings.",
    )
    reason: str | None = Field(default=None, max_length=500)
    location: str | None = Field(default=None, max_length=200)
    contact_info: str | None = Field(default=None, max_length=200)
    field_name: str | None = Field(
        default=None, min_length=1, max_length=200, pattern=r"^[^.]+$"
    )
    certify: Certification | None = Field(
        default=None, description="Default: the profile's, else none."
    )
    profile: str | None = Field(
        default=None,
        max_length=100,
        description="Name of a signing profile: its options apply where this request gives none (422 `unknown_signing_profile`).",
    )
    appearance: AppearanceIn | None = Field(
        default=None,
        description="Default: the profile's, else the signing settings' default appearance when it is visible and no field_name is given, else none.",
    )


class SignatureRead(Schema):
    id: uuid.UUID
    document_id: uuid.UUID
    version_number: int
    certificate_id: uuid.UUID | None
    certificate_fingerprint: str
    certificate_subject: str
    signer_kind: str
    signer_id: uuid.UUID
    signer_name: str
    level: str
    field_name: str
    reason: str | None
    location: str | None
    certified: str
    signing_time: datetime
    timestamp_time: datetime | None
    sha256_before: str
    sha256_after: str
    created_at: datetime
