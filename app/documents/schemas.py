import uuid
from datetime import datetime

from pydantic import ConfigDict, Field

from app.core.schemas import RequestSchema, Schema, omittable
from app.documents.models import DocumentStatus


class DocumentUpdate(RequestSchema):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {"title": "Invoice 2026-114", "external_reference": "INV-2026-114"}
            ]
        }
    )

    title: str | None = Field(default=None, min_length=1, max_length=300)
    description: str = omittable(max_length=4000)
    external_reference: str | None = Field(default=None, max_length=200)


class DocumentVersionRead(Schema):
    number: int
    sha256: str
    size: int
    created_at: datetime


class DocumentRead(Schema):
    model_config = ConfigDict(
        from_attributes=True,
        json_schema_extra={
            "examples": [
                {
                    "id": "0b5c7e9e-3f7a-4d52-9f7e-3b1f1d2c9a10",
                    "title": "Invoice 2026-114",
                    "description": "",
                    "external_reference": "INV-2026-114",
                    "status": "uploaded",
                    "owner_kind": "user",
                    "owner_id": "5d0b8a59-1c55-4f0e-8f0e-7d1f7d9b7c11",
                    "owner_name": "alice",
                    "department_id": None,
                    "sha256": "9f2b…",
                    "original_sha256": "9f2b…",
                    "size": 20480,
                    "page_count": 1,
                    "version_count": 1,
                    "created_at": "2026-11-23T09:30:00Z",
                    "updated_at": "2026-11-23T09:30:00Z",
                }
            ]
        },
    )

    id: uuid.UUID
    title: str
    description: str
    external_reference: str | None
    status: DocumentStatus
    owner_kind: str
    owner_id: uuid.UUID
    owner_name: str
    department_id: uuid.UUID | None
    sha256: str = Field(
        validation_alias="latest_sha256", description="SHA-256 of the latest version."
    )
    original_sha256: str
    size: int
    page_count: int
    version_count: int
    created_at: datetime
    updated_at: datetime
