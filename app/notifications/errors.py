from typing import Any

from app.core.errors import AppError, Conflict, InvalidInput, NotFound


class RuleNotFound(NotFound):
    code = "notification_rule_not_found"
    title = "Notification rule not found"


class DeliveryNotFound(NotFound):
    code = "delivery_not_found"
    title = "Delivery not found"


class RuleNameTaken(Conflict):
    code = "notification_rule_name_taken"
    title = "A notification rule has this name"


class DeliveryNotFailed(Conflict):
    code = "delivery_not_failed"
    title = "Only a failed delivery can be retried"


class InvalidRule(InvalidInput):
    """A rule whose fields do not fit together; `code` says which check failed."""

    def __init__(self, code: str, detail: str, *, field: str, **kwargs: Any) -> None:
        self.code = code  # type: ignore[misc]
        super().__init__(
            detail,
            invalid_params=[{"name": field, "in": "body", "reason": detail}],
            **kwargs,
        )


class SmtpNotConfigured(Conflict):
    code = "smtp_not_configured"
    title = "SMTP is not configured"


class SmtpTestFailed(AppError):
    status = 502
    code = "smtp_test_failed"
    title = "The SMTP server refused or could not be reached"


class SmtpHostRefused(InvalidInput):
    code = "smtp_host_refused"
    title = "The SMTP host is not an address notifications may reach"
