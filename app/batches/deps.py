"""The body of `POST /batches`: JSON, or multipart with files and a JSON `options` part."""

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, TypeVar

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, ValidationError
from starlette.datastructures import UploadFile

from app.batches.schemas import MAX_BATCH_DOCUMENTS, BatchCreate, BatchOptions
from app.batches.service import UploadedFile
from app.core.deps import slot_given_back
from app.core.errors import UnsupportedMediaType

FILES_PART = "files"
OPTIONS_PART = "options"

M = TypeVar("M", bound=BaseModel)


@dataclass(frozen=True, slots=True)
class ReceivedBatch:
    body: BatchOptions
    uploads: list[UploadedFile]

    @property
    def total(self) -> int:
        return len(self.body.document_ids) + len(self.uploads)


def _parse(model: type[M], raw: bytes | str, *location: str) -> M:
    try:
        return model.model_validate_json(raw)
    except ValidationError as exc:
        # Rendered like FastAPI's own body errors: 422 with the fields named.
        raise RequestValidationError(
            [{**error, "loc": (*location, *error["loc"])} for error in exc.errors()]
        ) from None


async def receive_batch(request: Request) -> AsyncIterator[ReceivedBatch]:
    """JSON (`document_ids`), or multipart: `files` parts, each spooled to disk, and `options`."""
    media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if media_type == "application/json":
        async with slot_given_back(request):
            content = await request.body()
        yield ReceivedBatch(_parse(BatchCreate, content, "body"), [])
    elif media_type in ("multipart/form-data", "application/x-www-form-urlencoded"):
        async with slot_given_back(request):
            form = await request.form(max_files=MAX_BATCH_DOCUMENTS, max_fields=1)
        try:
            options = form.get(OPTIONS_PART)
            body = _parse(
                BatchOptions,
                options if isinstance(options, str) else "{}",
                "body",
                OPTIONS_PART,
            )
            uploads = [
                UploadedFile(part.filename, part.file, part.size or 0)
                for part in form.getlist(FILES_PART)
                if isinstance(part, UploadFile)
            ]
            yield ReceivedBatch(body, uploads)
        finally:
            await form.close()
    else:
        raise UnsupportedMediaType(
            f"Send a batch as application/json, or as multipart/form-data with '{FILES_PART}' parts and an '{OPTIONS_PART}' JSON part, not {media_type or 'an untyped body'}."
        )


def _request_body_schema() -> dict[str, Any]:
    # Nested models (AppearanceIn, PadesLevel…) are components already: the sign routes use them.
    json_schema = BatchCreate.model_json_schema(
        ref_template="#/components/schemas/{model}"
    )
    json_schema.pop("$defs", None)
    return {
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {
                    "schema": json_schema,
                    "example": BatchCreate.model_config["json_schema_extra"][
                        "examples"
                    ][0],  # type: ignore[index]
                },
                "multipart/form-data": {
                    "schema": {
                        "type": "object",
                        "properties": {
                            FILES_PART: {
                                "type": "array",
                                "items": {"type": "string", "format": "binary"},
                                "description": "PDFs to store as documents and sign (one part each).",
                            },
                            OPTIONS_PART: {
                                "type": "string",
                                "description": "JSON: the same fields as the JSON body; document_ids optional.",
                            },
                        },
                    }
                },
            },
        }
    }


BATCH_BODY = _request_body_schema()
