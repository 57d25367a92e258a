"""The audit-trail report as a PDF: a title block, one table row per entry, page numbers."""

import json
from collections.abc import Sequence
from datetime import datetime
from io import BytesIO
from typing import Any
from xml.sax.saxutils import escape

from reportlab.lib import colors
from reportlab.lib.pagesizes import A4, landscape
from reportlab.lib.styles import getSampleStyleSheet
from reportlab.lib.units import mm
from reportlab.pdfgen.canvas import Canvas
from reportlab.platypus import Paragraph, SimpleDocTemplate, Spacer, Table, TableStyle

from app.audit.chain import format_time
from app.audit.models import AuditEvent

_HEADER = ["#", "time (UTC)", "actor", "action", "outcome", "IP", "details", "hash"]
_WIDTHS = [14 * mm, 38 * mm, 40 * mm, 38 * mm, 18 * mm, 26 * mm, 78 * mm, 22 * mm]


class _NumberedCanvas(Canvas):  # type: ignore[misc]
    """Holds pages back until the end so each can say "page N of M"."""

    def __init__(self, *args: Any, footer: str = "", **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._pages: list[dict[str, Any]] = []
        self._footer = footer

    def showPage(self) -> None:  # noqa: N802 (reportlab's name)
        self._pages.append(dict(self.__dict__))
        self._startPage()

    def save(self) -> None:
        for page in self._pages:
            self.__dict__.update(page)
            self.setFont("Helvetica", 7)
            width = self._pagesize[0]
            self.drawString(12 * mm, 8 * mm, self._footer)
            self.drawRightString(
                width - 12 * mm,
                8 * mm,
                f"page {self._pageNumber} of {len(self._pages)}",
            )
            super().showPage()
        super().save()


def _details(details: dict[str, Any]) -> str:
    text = json.dumps(details, sort_keys=True, ensure_ascii=False)
    return text if len(text) <= 600 else text[:600] + "…"


def _address(event: AuditEvent) -> str:
    if event.peer_ip and event.peer_ip != event.ip:
        return f"{event.ip or '—'} via {event.peer_ip}"
    return event.ip or "—"


def _actor(event: AuditEvent) -> str:
    name = event.actor_name or event.actor_id or "—"
    return f"{name} ({event.actor_kind})"


def render_trail(
    events: Sequence[AuditEvent],
    *,
    resource_type: str,
    resource_id: str,
    generated_at: datetime,
    generated_by: str,
    seal_subject: str,
    seal_fingerprint: str,
) -> bytes:
    """The report's PDF bytes (unsigned; the caller seals it)."""
    styles = getSampleStyleSheet()
    cell = styles["BodyText"].clone("cell", fontSize=7, leading=8.5)
    buffer = BytesIO()
    title = f"Audit trail of {resource_type} {resource_id}"
    document = SimpleDocTemplate(
        buffer,
        pagesize=landscape(A4),
        leftMargin=12 * mm,
        rightMargin=12 * mm,
        topMargin=12 * mm,
        bottomMargin=15 * mm,
        title=title,
        author="SignVault",
        subject="Audit trail report",
        creator="SignVault",
    )
    intro = (
        f"Generated at {format_time(generated_at)} by {escape(generated_by)}. "
        f"{len(events)} entries, in the order of the audit chain. "
        f"Sealed by <b>{escape(seal_subject)}</b> "
        f"(SHA-256 {seal_fingerprint}); the PDF signature makes any change to this "
        "report evident. Each entry's hash is its hash in the audit chain "
        "(GET /api/v1/audit-logs/verify checks the chain)."
    )
    rows: list[list[Any]] = [_HEADER]
    for event in events:
        rows.append(
            [
                str(event.seq),
                format_time(event.occurred_at),
                Paragraph(escape(_actor(event)), cell),
                Paragraph(escape(event.action), cell),
                event.outcome,
                Paragraph(escape(_address(event)), cell),
                Paragraph(escape(_details(event.details)), cell),
                Paragraph(escape(event.hash[:16]) + "…", cell),
            ]
        )
    table = Table(rows, colWidths=_WIDTHS, repeatRows=1)
    table.setStyle(
        TableStyle(
            [
                ("FONT", (0, 0), (-1, 0), "Helvetica-Bold", 7.5),
                ("FONT", (0, 1), (-1, -1), "Helvetica", 7),
                ("BACKGROUND", (0, 0), (-1, 0), colors.HexColor("#dde3ea")),
                ("GRID", (0, 0), (-1, -1), 0.25, colors.HexColor("#8a96a3")),
                ("VALIGN", (0, 0), (-1, -1), "TOP"),
                (
                    "ROWBACKGROUNDS",
                    (0, 1),
                    (-1, -1),
                    [colors.white, colors.HexColor("#f5f7f9")],
                ),
            ]
        )
    )
    story: list[Any] = [
        Paragraph(escape(title), styles["Title"]),
        Paragraph(intro, styles["BodyText"]),
        Spacer(1, 4 * mm),
        table if events else Paragraph("No audit entries.", styles["BodyText"]),
    ]
    footer = f"SignVault audit trail · {resource_type} {resource_id} · generated {format_time(generated_at)}"

    def canvas(*args: Any, **kwargs: Any) -> _NumberedCanvas:
        return _NumberedCanvas(*args, footer=footer, **kwargs)

    document.build(story, canvasmaker=canvas)
    return buffer.getvalue()
