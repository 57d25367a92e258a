from app.core.errors import AppError, Conflict, InvalidInput


class SigningRefused(InvalidInput):
    code = "signing_refused"
    title = "The document cannot be signed as asked"


class TimestampUnavailable(AppError):
    status = 502
    code = "tsa_unavailable"
    title = "Timestamp authority unavailable"


class RevocationUnavailable(AppError):
    status = 502
    code = "revocation_unavailable"
    title = "Revocation information unavailable"


class NoCertificateChosen(InvalidInput):
    code = "certificate_required"
    title = "No certificate"


class IdempotencyKeyReused(Conflict):
    code = "idempotency_key_reused"
    title = "Idempotency key used for another request"


class AppearanceImageInvalid(InvalidInput):
    code = "appearance_image_invalid"
    title = "Appearance image unreadable"


class AppearanceImageTooLarge(InvalidInput):
    code = "appearance_image_too_large"
    title = "Appearance image too large"


class AppearanceBoxOutsidePage(SigningRefused):
    code = "appearance_box_outside_page"
    title = "Appearance box outside the page"
