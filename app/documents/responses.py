"""PDF bytes sent from a blob that is already open (see `documents.service.open_content`)."""

import re
from collections.abc import Mapping
from urllib.parse import quote

from starlette.background import BackgroundTask
from starlette.responses import StreamingResponse

from app.core.storage import BlobStream
from app.documents.errors import RangeNotSatisfiable

CHUNK_BYTES = 256 * 1024
_SINGLE_RANGE = re.compile(r"bytes=(\d*)-(\d*)")


def pdf_response(
    content: BlobStream,
    *,
    filename: str,
    headers: Mapping[str, str],
    partial: bool = False,
) -> StreamingResponse:
    """Stream `content` in chunks (memory stays flat at any size) and close it when sent.

    `partial`: a 206 answering a Range request, with its Content-Range.
    """
    extra = {"Accept-Ranges": "bytes"}
    if partial:
        extra["Content-Range"] = f"bytes {content.start}-{content.end}/{content.size}"
    return StreamingResponse(
        content.chunks(CHUNK_BYTES),
        status_code=206 if partial else 200,
        media_type="application/pdf",
        headers={
            **headers,
            **extra,
            "Content-Length": str(content.length),
            "Content-Disposition": content_disposition(filename),
        },
        background=BackgroundTask(content.close),
    )


def requested_range(
    header: str | None, *, size: int, if_range: str | None, etag: str
) -> tuple[int, int] | None:
    """The one byte range (first, last) a `Range` header asks of `size` bytes; None: send it all.

    A header that is not one `bytes=` range (several ranges, another unit, bad
    syntax) is ignored, as RFC 9110 allows, and so is a Range whose `If-Range`
    names another version.

    Raises:
        RangeNotSatisfiable: the range starts past the end, or is an empty suffix (416).
    """
    if header is None or (if_range is not None and if_range.strip() != etag):
        return None
    match = _SINGLE_RANGE.fullmatch(header.strip())
    if match is None or match.group(1) == match.group(2) == "":
        return None
    first, last = match.group(1), match.group(2)
    if first == "":  # bytes=-n: the last n bytes
        if int(last) == 0:
            raise _unsatisfiable(header, size)
        return max(0, size - int(last)), size - 1
    start = int(first)
    end = size - 1 if last == "" else min(int(last), size - 1)
    if last != "" and int(last) < start:
        return None  # invalid: ignored
    if start >= size:
        raise _unsatisfiable(header, size)
    return start, end


def _unsatisfiable(header: str, size: int) -> RangeNotSatisfiable:
    return RangeNotSatisfiable(
        f"The range '{header[:100]}' is outside the content's {size} bytes.",
        headers={"Content-Range": f"bytes */{size}"},
    )


def content_disposition(filename: str) -> str:
    """`attachment` with the name as is when it is plain ASCII, else RFC 6266's UTF-8 form."""
    quoted = quote(filename, safe="")
    if quoted == filename.replace(" ", "%20") and filename.isascii():
        return f'attachment; filename="{filename}"'
    return f"attachment; filename*=utf-8''{quoted}"
