"""Request-level pieces shared by the documents and signing routers."""

import io
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import IO, Annotated, Any

from fastapi import Depends, Request
from starlette.datastructures import UploadFile

from app.core.errors import UnsupportedMediaType
from app.core.storage import BlobStore
from app.documents.errors import EmptyUpload

_METADATA_FIELDS = ("title", "description", "external_reference", "options")
UPLOAD_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["file"],
                    "properties": {
                        "file": {"type": "string", "format": "binary"},
                        "title": {"type": "string"},
                        "description": {"type": "string"},
                        "external_reference": {"type": "string"},
                    },
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
            "schema": {"type": "string"},
            "description": "With a raw application/pdf body.",
        }
        for name in _METADATA_FIELDS
    ],
}


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


async def receive_upload(
    request: Request, blobs: BlobsDep
) -> AsyncIterator[ReceivedUpload]:
    """The uploaded PDF, spooled to disk: multipart (`file` part) or a raw `application/pdf` body."""
    content_type = request.headers.get("content-type", "")
    if content_type.startswith("multipart/form-data"):
        form = await request.form(max_files=1, max_fields=len(_METADATA_FIELDS))
        try:
            part = form.get("file")
            if not isinstance(part, UploadFile):
                raise EmptyUpload(
                    "The multipart body needs a 'file' part with the PDF."
                )
            fields = {
                k: v
                for k, v in form.items()
                if isinstance(v, str) and k in _METADATA_FIELDS
            }
            yield ReceivedUpload(await _readable(part), part.filename, fields)
        finally:
            await form.close()
    elif content_type.split(";")[0].strip() in (
        "application/pdf",
        "application/octet-stream",
    ):
        with blobs.spool() as handle:
            async for chunk in request.stream():
                handle.write(chunk)
            if handle.tell() == 0:
                raise EmptyUpload("The request body is empty; send the PDF bytes.")
            fields = {
                k: v for k, v in request.query_params.items() if k in _METADATA_FIELDS
            }
            yield ReceivedUpload(handle, None, fields)
    else:
        raise UnsupportedMediaType(
            f"Send the PDF as multipart/form-data (part 'file') or as an application/pdf body, not {content_type or 'an untyped body'}."
        )
