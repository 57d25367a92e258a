from app.core.errors import AppError, Conflict, NotFound


class AuditEventNotFound(NotFound):
    code = "audit_event_not_found"
    title = "Audit event not found"


class AuditTrailTooLarge(AppError):
    status = 422
    code = "audit_trail_too_large"
    title = "Audit trail too large"


class AuditTrailDisabled(Conflict):
    code = "audit_trail_disabled"
    title = "Audit-trail reports are disabled"


class SealUnavailable(AppError):
    status = 503
    code = "seal_unavailable"
    title = "System seal unavailable"


class AuditAnchorInvalid(AppError):
    status = 422
    code = "audit_anchor_invalid"
    title = "Audit anchor invalid"
