"""Request-level pieces shared by the documents and signing routers."""

import io
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from typing import IO, Annotated, Any

from fastapi import Depends, Request
from starlette.datastructures import FormData, UploadFile

from app.core.deps import slot_given_back
from app.core.errors import InvalidInput, UnsupportedMediaType
from app.core.storage import BlobStore
from app.documents.errors import EmptyUpload

DOCUMENT_FIELDS = ("title", "description", "external_reference")


def upload_body(fields: Mapping[str, dict[str, Any]]) -> dict[str, Any]:
    """The OpenAPI request body of an upload route: the PDF and these form fields (query parameters with a raw body)."""
    return {
        "requestBody": {
            "required": True,
            "content": {
                "multipart/form-data": {
                    "schema": {
                        "type": "object",
                        "required": ["file"],
                        "properties": {
                            "file": {"type": "string", "format": "binary"},
                            **fields,
                        },
                        "additionalProperties": False,
                    }
                },
                "application/pdf": {"schema": {"type": "string", "format": "binary"}},
            },
        },
        "parameters": [
            {
                "name": name,
                "in": "query",
                "required": False,
                "schema": schema,
                "description": "With a raw application/pdf body.",
            }
            for name, schema in fields.items()
        ],
    }


UPLOAD_BODY = upload_body({name: {"type": "string"} for name in DOCUMENT_FIELDS})


async def blob_store(request: Request) -> BlobStore:
    blobs: BlobStore = request.app.state.blobs
    return blobs


BlobsDep = Annotated[BlobStore, Depends(blob_store)]


# Starlette keeps a multipart part up to this size in memory (its spool limit).
_SMALL_PART_BYTES = 1024 * 1024


async def _readable(part: UploadFile) -> IO[bytes]:
    """The part's content, a small one as a plain in-memory buffer.

    A SpooledTemporaryFile routes every call through Python code, and pyHanko's
    parser reads a byte at a time: ~1,000 calls for a 25 KB PDF.
    """
    if part.size is not None and part.size <= _SMALL_PART_BYTES:
        return io.BytesIO(await part.read())
    return part.file


@dataclass(frozen=True, slots=True)
class ReceivedUpload:
    file: IO[bytes]
    filename: str | None
    fields: dict[str, str]


class UploadReceiver:
    """The uploaded PDF, spooled to disk: multipart (`file` part) or a raw `application/pdf` body.

    The multipart body may carry the named `fields`; another field, or one given
    twice, is a 422 naming it rather than something silently ignored. With a raw
    body they come as query parameters.
    """

    def __init__(self, fields: Sequence[str]) -> None:
        self.fields = tuple(fields)

    async def __call__(
        self, request: Request, blobs: BlobsDep
    ) -> AsyncIterator[ReceivedUpload]:
        content_type = request.headers.get("content-type", "")
        if content_type.startswith("multipart/form-data"):
            # A few more than accepted, so that a stray one is named, not just counted.
            async with slot_given_back(request):
                form = await request.form(max_files=1, max_fields=len(self.fields) + 8)
            try:
                part = form.get("file")
                if not isinstance(part, UploadFile):
                    raise EmptyUpload(
                        "The multipart body needs a 'file' part with the PDF."
                    )
                yield ReceivedUpload(
                    await _readable(part), part.filename, self._form_fields(form)
                )
            finally:
                await form.close()
        elif content_type.split(";")[0].strip() in (
            "application/pdf",
            "application/octet-stream",
        ):
            with blobs.spool() as handle:
                async with slot_given_back(request):
                    async for chunk in request.stream():
                        handle.write(chunk)
                if handle.tell() == 0:
                    raise EmptyUpload("The request body is empty; send the PDF bytes.")
                fields = {
                    k: v for k, v in request.query_params.items() if k in self.fields
                }
                yield ReceivedUpload(handle, None, fields)
        else:
            raise UnsupportedMediaType(
                f"Send the PDF as multipart/form-data (part 'file') or as an application/pdf body, not {content_type or 'an untyped body'}."
            )

    def _form_fields(self, form: FormData) -> dict[str, str]:
        fields: dict[str, str] = {}
        refused = []
        for name, value in form.multi_items():
            if name == "file":
                continue
            if name not in self.fields or not isinstance(value, str):
                refused.append(
                    {
                        "name": name,
                        "in": "body",
                        "reason": "not a field of this request; accepted: "
                        + ", ".join(("file", *self.fields)),
                    }
                )
            elif name in fields:
                refused.append({"name": name, "in": "body", "reason": "given twice"})
            else:
                fields[name] = value
        if refused:
            raise InvalidInput(
                "The form has fields this request does not take: "
                + ", ".join(sorted({p["name"] for p in refused}))
                + ".",
                invalid_params=refused,
            )
        return fields


receive_upload = UploadReceiver(DOCUMENT_FIELDS)
