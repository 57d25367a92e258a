import base64
import hashlib
import uuid
from datetime import datetime
from typing import Any

from pydantic import ConfigDict, Field, computed_field, field_validator

from app.batches.models import BatchStatus, ItemStatus
from app.core.schemas import Schema
from app.signing.schemas import SignDocumentRequest

MAX_BATCH_DOCUMENTS = 1000


class BatchOptions(SignDocumentRequest):
    """The JSON `options` part of a batch posted as multipart with files: documents optional."""

    document_ids: list[uuid.UUID] = Field(
        default_factory=list,
        max_length=MAX_BATCH_DOCUMENTS,
        description="Stored documents to sign besides the uploaded files.",
    )

    @field_validator("document_ids")
    @classmethod
    def _no_duplicates(cls, value: list[uuid.UUID]) -> list[uuid.UUID]:
        if len(set(value)) != len(value):
            raise ValueError("a document may appear only once in a batch")
        return value


class BatchCreate(BatchOptions):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "document_ids": [
                        "0b6f2d4e-8c1a-4f3b-9e7d-5a2c1b0d9e8f",
                        "7c3e9a1b-2d4f-4e6a-8b0c-1d2e3f4a5b6c",
                    ],
                    "certificate_id": "3f1c2a9e-5b7d-4c1e-9a3b-2d6f8e0c1b4a",
                    "level": "B-B",
                    "reason": "Approved",
                }
            ]
        },
    )

    document_ids: list[uuid.UUID] = Field(
        min_length=1,
        max_length=MAX_BATCH_DOCUMENTS,
        description="The documents to sign, each once (1 to 1000).",
    )


class BatchItemRead(Schema):
    position: int
    document_id: uuid.UUID | None = Field(
        description="None for an uploaded file that was refused (not a PDF, too large…)."
    )
    filename: str | None = Field(description="The uploaded file's name, if uploaded.")
    status: ItemStatus
    signature_id: uuid.UUID | None
    error_code: str | None
    error_detail: str | None
    finished_at: datetime | None


class BatchSummary(Schema):
    id: uuid.UUID
    status: BatchStatus
    owner_kind: str
    owner_id: uuid.UUID
    owner_name: str
    options: dict[str, Any] = Field(
        description="The certificate and sign options every document is signed with "
        "(an appearance image as its `image_sha256`, not its bytes)."
    )
    total: int
    succeeded: int
    failed: int
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None

    @field_validator("options")
    @classmethod
    def _image_by_digest(cls, options: dict[str, Any]) -> dict[str, Any]:
        # Up to 1.4 MB of base64 would be repeated in every read and listing.
        appearance = options.get("appearance") or {}
        image = appearance.get("image_base64")
        if image is None:
            return options
        shown = {k: v for k, v in appearance.items() if k != "image_base64"}
        shown["image_sha256"] = hashlib.sha256(base64.b64decode(image)).hexdigest()
        return {**options, "appearance": shown}

    @computed_field  # type: ignore[prop-decorator]
    @property
    def pending(self) -> int:
        return self.total - self.succeeded - self.failed


class BatchRead(BatchSummary):
    items: list[BatchItemRead]
