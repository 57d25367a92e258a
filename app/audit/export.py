"""Export encodings (CSV, JSON Lines) and the offline verification of a JSON Lines export."""

import csv
import io
import json
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from app.audit.chain import (
    CONTENT_FIELDS,
    OPTIONAL_CONTENT_FIELDS,
    ChainBreak,
    Link,
    content_hash,
)

EXPORT_FIELDS = (*CONTENT_FIELDS, *OPTIONAL_CONTENT_FIELDS, "hash")


def jsonl_lines(rows: Iterable[Mapping[str, Any]]) -> Iterator[bytes]:
    """One JSON object per line, with exactly the hashed fields plus `hash`."""
    for row in rows:
        yield (
            json.dumps(row, ensure_ascii=False, separators=(",", ":")) + "\n"
        ).encode()


def csv_lines(rows: Iterable[Mapping[str, Any]]) -> Iterator[bytes]:
    """A header, then one row per entry; `details` is its JSON, empty cells are null."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    writer.writerow(EXPORT_FIELDS)
    for row in rows:
        writer.writerow(
            [
                json.dumps(row[name], ensure_ascii=False, sort_keys=True)
                if name == "details"
                else ("" if row[name] is None else row[name])
                for name in EXPORT_FIELDS
            ]
        )
        yield buffer.getvalue().encode()
        buffer.seek(0)
        buffer.truncate()


def chunked(lines: Iterable[bytes], size: int = 64 * 1024) -> Iterator[bytes]:
    """Join lines into chunks of about `size` bytes.

    A streamed response pulls each chunk of a sync iterator through a thread hop;
    one hop per line would cost more than encoding the line.
    """
    buffer: list[bytes] = []
    held = 0
    for line in lines:
        buffer.append(line)
        held += len(line)
        if held >= size:
            yield b"".join(buffer)
            buffer, held = [], 0
    if buffer:
        yield b"".join(buffer)


class ExportFormatError(ValueError):
    """A line of the file is not an exported audit entry."""


@dataclass(slots=True)
class ExportVerification:
    entries: int = 0
    first_seq: int | None = None
    last_seq: int | None = None
    links_checked: int = 0
    gaps: list[tuple[int, int]] = field(default_factory=list)
    broken: ChainBreak | None = None

    @property
    def contiguous(self) -> bool:
        return not self.gaps


def verify_jsonl(lines: Iterable[str]) -> ExportVerification:
    """Recompute every entry's hash and every link between consecutive entries.

    A filtered export has gaps between entries: their content is still checked,
    but the link across a gap cannot be. The first entry's `prev_hash` is taken
    as given (it anchors the file to the entry before it, or to the genesis).

    Raises:
        ExportFormatError: a line is not JSON or lacks a field.
    """
    result = ExportVerification()
    previous: Link | None = None
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            link = Link(
                int(row["seq"]),
                str(row["id"]),
                str(row["prev_hash"]),
                str(row["hash"]),
                content_hash(row) == row["hash"],
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise ExportFormatError(
                f"line {number}: not an audit export entry ({exc})"
            ) from None
        if previous is not None and link.seq <= previous.seq:
            result.broken = ChainBreak(
                link.seq, link.event_id, f"out of order after entry {previous.seq}"
            )
            return result
        if previous is not None and link.seq == previous.seq + 1:
            result.links_checked += 1
            if link.prev_hash != previous.hash:
                result.broken = ChainBreak(
                    link.seq, link.event_id, "link to the previous entry does not match"
                )
                return result
        elif previous is not None:
            result.gaps.append((previous.seq, link.seq))
        if not link.content_matches:
            result.broken = ChainBreak(
                link.seq, link.event_id, "content does not match its hash"
            )
            return result
        result.entries += 1
        result.first_seq = result.first_seq or link.seq
        result.last_seq = link.seq
        previous = link
    return result
