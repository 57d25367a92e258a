"""PDFs made in the tests (never committed files)."""

import io

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
