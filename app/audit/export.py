"""Export encodings (CSV, JSON Lines) and the offline verification of a JSON Lines export."""

import csv
import io
import json
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from app.audit import anchors
from app.audit.anchors import Anchor
from app.audit.chain import (
    CONTENT_FIELDS,
    OPTIONAL_CONTENT_FIELDS,
    ChainBreak,
    Link,
    content_hash,
)
from app.audit.errors import AuditAnchorInvalid

EXPORT_FIELDS = (*CONTENT_FIELDS, *OPTIONAL_CONTENT_FIELDS, "hash")


# The `id` and `action` cells of the CSV row that carries the anchor.
ANCHOR_ROW_ID = "anchor"
ANCHOR_ROW_ACTION = "audit.anchor"


def jsonl_lines(
    rows: Iterable[Mapping[str, Any]], *, anchor: Mapping[str, Any] | None = None
) -> Iterator[bytes]:
    """One JSON object per line, with exactly the hashed fields plus `hash`; then `{"anchor": ...}`."""
    for row in rows:
        yield (
            json.dumps(row, ensure_ascii=False, separators=(",", ":")) + "\n"
        ).encode()
    if anchor is not None:
        yield (json.dumps({"anchor": anchor}, separators=(",", ":")) + "\n").encode()


def csv_lines(
    rows: Iterable[Mapping[str, Any]], *, anchor: Mapping[str, Any] | None = None
) -> Iterator[bytes]:
    """A header, then one row per entry; `details` is its JSON, empty cells are null.

    The anchor is a last row with `id` "anchor", `action` "audit.anchor", its
    `seq`, `hash` and time (`occurred_at`), and the whole anchor as `details`.
    """
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
    if anchor is not None:
        cells = {
            "id": ANCHOR_ROW_ID,
            "seq": anchor["seq"],
            "occurred_at": anchor["anchored_at"],
            "action": ANCHOR_ROW_ACTION,
            "hash": anchor["hash"],
            "details": json.dumps(anchor, sort_keys=True, separators=(",", ":")),
        }
        writer.writerow([cells.get(name, "") for name in EXPORT_FIELDS])
        yield buffer.getvalue().encode()


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
    anchor: Anchor | None = None
    # The export holds the anchored entry (an unfiltered one does) and its hash matched.
    anchor_entry_checked: bool = False

    @property
    def contiguous(self) -> bool:
        return not self.gaps


def verify_jsonl(lines: Iterable[str]) -> ExportVerification:
    """Recompute every entry's hash and every link between consecutive entries.

    A filtered export has gaps between entries: their content is still checked,
    but the link across a gap cannot be. The first entry's `prev_hash` is taken
    as given (it anchors the file to the entry before it, or to the genesis).
    The final anchor line's signature is checked against the seal certificate
    it carries (whose fingerprint the caller compares with the seal it trusts);
    no entry may come after the anchored one, and that entry, when present, must
    have the anchored hash.

    Raises:
        ExportFormatError: a line is not JSON or lacks a field, or the anchor
            line is malformed or not last.
    """
    result = ExportVerification()
    previous: Link | None = None
    anchor_line: tuple[int, object] | None = None
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        if anchor_line is not None:
            raise ExportFormatError(
                f"line {number}: the anchor (line {anchor_line[0]}) must be the last line"
            )
        try:
            row = json.loads(line)
            if isinstance(row, dict) and set(row) == {"anchor"}:
                anchor_line = (number, row["anchor"])
                continue
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
    if anchor_line is not None:
        result.broken = _check_anchor(result, anchor_line, previous)
    return result


def _check_anchor(
    result: ExportVerification, anchor_line: tuple[int, object], last: Link | None
) -> ChainBreak | None:
    number, value = anchor_line
    try:
        anchor = anchors.anchor_from(value)
    except AuditAnchorInvalid as exc:
        raise ExportFormatError(f"line {number}: {exc.detail}") from None
    result.anchor = anchor
    try:
        certificate = anchors.embedded_certificate(anchor)
    except AuditAnchorInvalid as exc:
        return ChainBreak(anchor.seq, None, exc.detail)
    if not anchors.signature_matches(anchor, certificate):
        return ChainBreak(
            anchor.seq,
            None,
            "the anchor's signature does not verify under its seal certificate: forged or altered",
        )
    if last is not None and last.seq > anchor.seq:
        return ChainBreak(
            last.seq,
            last.event_id,
            f"entry is after the export's anchor ({anchor.seq})",
        )
    if last is not None and last.seq == anchor.seq:
        if last.hash != anchor.hash:
            return ChainBreak(
                last.seq,
                last.event_id,
                "the anchored entry's hash is not the anchored one",
            )
        result.anchor_entry_checked = True
    return None
