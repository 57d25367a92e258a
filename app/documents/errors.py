from app.core.errors import (
    AppError,
    InvalidInput,
    NotFound,
    PayloadTooLarge,
    UnsupportedMediaType,
)


class DocumentNotFound(NotFound):
    code = "document_not_found"
    title = "Document not found"


class VersionNotFound(NotFound):
    code = "version_not_found"
    title = "Document version not found"


class NotAPdf(UnsupportedMediaType):
    code = "not_a_pdf"
    title = "Not a PDF"


class PdfUnreadable(InvalidInput):
    code = "pdf_unreadable"
    title = "Unreadable PDF"


class PdfEncrypted(InvalidInput):
    code = "pdf_encrypted"
    title = "Encrypted PDF"


class ContentPurged(AppError):
    status = 410
    code = "document_content_purged"
    title = "Document content purged"


class ContentMissing(AppError):
    """A version's content is gone from the blob store (deleted behind the server's back)."""

    status = 410
    code = "content_missing"
    title = "Document content missing"


class DocumentTooLarge(PayloadTooLarge):
    code = "document_too_large"
    title = "Document too large"


class EmptyUpload(AppError):
    status = 400
    code = "empty_upload"
    title = "No file uploaded"


class RangeNotSatisfiable(AppError):
    status = 416
    code = "range_not_satisfiable"
    title = "Range not satisfiable"
