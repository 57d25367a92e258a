"""PDF bytes sent from a file that is already open (see `documents.service.open_content`)."""

import os
from collections.abc import Mapping
from typing import IO
from urllib.parse import quote

from starlette.background import BackgroundTask
from starlette.responses import StreamingResponse

CHUNK_BYTES = 256 * 1024


def pdf_response(
    content: IO[bytes], *, filename: str, headers: Mapping[str, str]
) -> StreamingResponse:
    """Stream `content` in chunks (memory stays flat at any size) and close it when sent."""
    size = os.fstat(content.fileno()).st_size
    return StreamingResponse(
        iter(lambda: content.read(CHUNK_BYTES), b""),
        media_type="application/pdf",
        headers={
            **headers,
            "Content-Length": str(size),
            "Content-Disposition": content_disposition(filename),
        },
        background=BackgroundTask(content.close),
    )


def content_disposition(filename: str) -> str:
    """`attachment` with the name as is when it is plain ASCII, else RFC 6266's UTF-8 form."""
    quoted = quote(filename, safe="")
    if quoted == filename.replace(" ", "%20") and filename.isascii():
        return f'attachment; filename="{filename}"'
    return f"attachment; filename*=utf-8''{quoted}"
