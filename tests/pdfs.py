"""PDFs and stamp images made in the tests (never committed files), and what to look for in them."""

import io
import re
from typing import Any

from PIL import Image, ImageDraw
from pyhanko.pdf_utils.reader import PdfFileReader
from reportlab.lib.pdfencrypt import StandardEncryption
from reportlab.pdfgen import canvas


def make_pdf(
    pages: int = 1,
    text: str = "SignVault test document",
    *,
    password: str | None = None,
) -> bytes:
    buffer = io.BytesIO()
    encrypt = (
        StandardEncryption(password, ownerPassword=password + "-owner")
        if password
        else None
    )
    pdf = canvas.Canvas(buffer, encrypt=encrypt)
    for number in range(1, pages + 1):
        pdf.drawString(72, 720, f"{text} — page {number}")
        pdf.showPage()
    pdf.save()
    return buffer.getvalue()


def stamp_image(image_format: str = "PNG", size: tuple[int, int] = (300, 150)) -> bytes:
    """A small drawing with transparency (PNG) or without (JPEG), as a signature image would be."""
    mode = "RGBA" if image_format == "PNG" else "RGB"
    image = Image.new(mode, size, (255, 255, 255, 0) if mode == "RGBA" else "white")
    draw = ImageDraw.Draw(image)
    width, height = size
    draw.ellipse((5, 5, width - 5, height - 5), outline=(0, 0, 200), width=6)
    draw.line((10, height - 10, width - 10, 10), fill=(200, 0, 0), width=5)
    buffer = io.BytesIO()
    image.save(buffer, image_format)
    return buffer.getvalue()


def signature_widget(pdf: bytes, page: int, field_name: str) -> Any:
    """The widget annotation of a signature field on a (1-based) page."""
    reader = PdfFileReader(io.BytesIO(pdf))
    page_object = reader.root["/Pages"]["/Kids"][page - 1].get_object()
    [widget] = [
        annotation.get_object()
        for annotation in page_object.get("/Annots", [])
        if annotation.get_object().get("/T") == field_name
    ]
    return widget


def image_xobjects(form: Any) -> list[Any]:
    """The image XObjects a form XObject (an appearance stream) draws, through nested forms."""
    found = []
    for reference in form.get("/Resources", {}).get("/XObject", {}).values():
        xobject = reference.get_object()
        if xobject.get("/Subtype") == "/Image":
            found.append(xobject)
        else:
            found.extend(image_xobjects(xobject))
    return found


_SHOWN_TEXT = re.compile(rb"\(((?:\\.|[^\\)])*)\)\s*Tj")
_ESCAPE = re.compile(rb"\\([0-7]{1,3}|.)", re.DOTALL)
_ESCAPED = {b"n": b"\n", b"r": b"\r", b"t": b"\t", b"b": b"\b", b"f": b"\f"}


def stamp_lines(form: Any) -> list[str]:
    """The text lines an appearance stream shows (literal strings drawn with Tj), through nested forms."""

    def unescape(match: re.Match[bytes]) -> bytes:
        code = match.group(1)
        if code.isdigit():
            return bytes([int(code, 8)])
        return _ESCAPED.get(code, code)

    lines = [
        _ESCAPE.sub(unescape, shown).decode("latin-1")
        for shown in _SHOWN_TEXT.findall(form.data)
    ]
    for reference in form.get("/Resources", {}).get("/XObject", {}).values():
        lines.extend(stamp_lines(reference.get_object()))
    return lines


# --- hostile PDFs, written byte by byte (no library would write them) ----------------

LETTER_PAGE = b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] >>"


def raw_pdf(objects: list[bytes], *, info: int | None = None) -> bytes:
    """A PDF of these object bodies, numbered from 1 (object 1 is the catalog), with a true xref."""
    out = bytearray(b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n%s\nendobj\n" % (number, body)
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    for offset in offsets:
        out += b"%010d 00000 n \n" % offset
    info_entry = b" /Info %d 0 R" % info if info else b""
    out += b"trailer\n<< /Size %d /Root 1 0 R%s >>\nstartxref\n%d\n%%%%EOF\n" % (
        len(objects) + 1,
        info_entry,
        xref,
    )
    return bytes(out)


def nested_arrays(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth


def pdf_with_pages(
    pages: list[bytes], *, count: bytes | None = None, catalog_extra: bytes = b""
) -> bytes:
    """Catalog (1), one flat page tree (2) declaring `count`, then the page objects (3, 4, ...)."""
    kids = b" ".join(b"%d 0 R" % (3 + n) for n in range(len(pages)))
    declared = count if count is not None else b"%d" % len(pages)
    return raw_pdf(
        [
            b"<< /Type /Catalog /Pages 2 0 R" + catalog_extra + b" >>",
            b"<< /Type /Pages /Kids [" + kids + b"] /Count " + declared + b" >>",
            *pages,
        ]
    )
