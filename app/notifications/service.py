"""Notification rules (validated, audited) and the delivery log."""

import secrets
import uuid
from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from app.access.models import Role
from app.access.principal import Principal
from app.audit import service as audit_service
from app.core.config import Settings
from app.core.crypto import EnvelopeCipher, destroy_sealed
from app.core.pagination import PageParams, paginate
from app.core.types import utcnow
from app.notifications import recipients as recipients_service
from app.notifications import templates
from app.notifications.destinations import (
    AllowList,
    DestinationRefused,
    DestinationUnresolved,
    parse_url,
    resolve,
)
from app.notifications.errors import (
    DeliveryNotFailed,
    DeliveryNotFound,
    InvalidRule,
    RuleNameTaken,
    RuleNotFound,
)
from app.notifications.models import (
    Channel,
    Delivery,
    DeliveryStatus,
    NotificationRule,
)
from app.notifications.outbox import THRESHOLD_EVENTS, Event
from app.notifications.queue import WEBHOOK_SECRET_PURPOSE

# Fields a change is audited with (never the secret).
AUDITED_FIELDS = (
    "name",
    "event",
    "channel",
    "recipients",
    "url",
    "days_before",
    "enabled",
    "subject_template",
    "body_template",
)
REQUIRED_FIELDS = frozenset({"name", "event", "channel", "enabled"})
RULE_SORTABLE = {
    "created_at": NotificationRule.created_at,
    "name": NotificationRule.name,
    "event": NotificationRule.event,
}
DELIVERY_SORTABLE = {
    "created_at": Delivery.created_at,
    "next_attempt_at": Delivery.next_attempt_at,
    "finished_at": Delivery.finished_at,
    "attempts": Delivery.attempts,
}


def list_rules(
    session: Session,
    *,
    params: PageParams,
    event: Sequence[Event] = (),
    channel: Sequence[Channel] = (),
    enabled: bool | None = None,
) -> tuple[Sequence[NotificationRule], int]:
    statement = select(NotificationRule)
    if event:
        statement = statement.where(
            NotificationRule.event.in_([e.value for e in event])
        )
    if channel:
        statement = statement.where(NotificationRule.channel.in_(channel))
    if enabled is not None:
        statement = statement.where(NotificationRule.enabled.is_(enabled))
    return paginate(
        session,
        statement,
        params,
        sortable=RULE_SORTABLE,
        default_sort="name",
        tiebreaker=NotificationRule.id,
    )


def get_rule(session: Session, rule_id: uuid.UUID) -> NotificationRule:
    """Raises: RuleNotFound."""
    rule = session.get(NotificationRule, rule_id)
    if rule is None:
        raise RuleNotFound(f"No notification rule {rule_id}.")
    return rule


def create_rule(
    session: Session,
    principal: Principal,
    cipher: EnvelopeCipher,
    settings: Settings,
    *,
    fields: Mapping[str, Any],
) -> tuple[NotificationRule, str | None]:
    """A new rule, and the webhook secret when it was generated here (shown once).

    Raises: InvalidRule, RuleNameTaken.
    """
    values = dict(fields)
    secret = values.pop("secret", None)
    rule = NotificationRule(created_by=principal.name)
    _assign(rule, values)
    _check(session, rule, settings)
    _refuse_taken_name(session, rule)
    generated = None
    if rule.channel == Channel.WEBHOOK:
        generated = _set_secret(session, cipher, rule, secret)
    else:
        _refuse_secret(secret)
    session.add(rule)
    session.flush()
    _audit(session, principal, "notification_rule.created", rule, _snapshot(rule))
    return rule, generated


def update_rule(
    session: Session,
    principal: Principal,
    cipher: EnvelopeCipher,
    settings: Settings,
    *,
    rule: NotificationRule,
    changes: Mapping[str, Any],
) -> tuple[NotificationRule, str | None]:
    """Apply changes, then check the whole rule again; a new secret replaces the stored one.

    Raises: InvalidRule, RuleNameTaken.
    """
    values = dict(changes)
    secret = values.pop("secret", None)
    before = _snapshot(rule)
    _assign(rule, values)
    _check(session, rule, settings)
    if rule.name != before["name"]:
        _refuse_taken_name(session, rule)
    generated = None
    if rule.channel == Channel.WEBHOOK:
        if secret is not None or rule.sealed_secret is None:
            generated = _set_secret(session, cipher, rule, secret)
    else:
        _refuse_secret(secret)
        if rule.sealed_secret is not None:
            cipher.destroy(session, rule.sealed_secret)
            rule.sealed_secret = None
    rule.updated_at = utcnow()
    session.flush()
    after = _snapshot(rule)
    changed = [key for key in AUDITED_FIELDS if before[key] != after[key]]
    _audit(
        session,
        principal,
        "notification_rule.updated",
        rule,
        {
            "before": {key: before[key] for key in changed},
            "after": {key: after[key] for key in changed},
            "secret_replaced": secret is not None or generated is not None,
        },
    )
    return rule, generated


def delete_rule(
    session: Session, principal: Principal, *, rule: NotificationRule
) -> None:
    """Delete a rule; its deliveries stay in the log (pending ones then fail: no rule to send by)."""
    if rule.sealed_secret is not None:
        destroy_sealed(session, rule.sealed_secret)
    _audit(session, principal, "notification_rule.deleted", rule, _snapshot(rule))
    session.delete(rule)
    session.flush()


def _assign(rule: NotificationRule, values: Mapping[str, Any]) -> None:
    for key, value in values.items():
        if value is None and key in REQUIRED_FIELDS:
            raise InvalidRule("field_required", f"{key} cannot be null.", field=key)
        if key == "event" and value is not None:
            value = Event(value).value
        setattr(rule, key, value)


def _snapshot(rule: NotificationRule) -> dict[str, Any]:
    snapshot = {key: getattr(rule, key) for key in AUDITED_FIELDS}
    snapshot["channel"] = Channel(rule.channel).value if rule.channel else None
    return snapshot


def _audit(
    session: Session,
    principal: Principal,
    action: str,
    rule: NotificationRule,
    details: Mapping[str, Any],
) -> None:
    audit_service.record(
        session,
        actor=principal.actor,
        action=action,
        resource_type="notification_rule",
        resource_id=rule.id,
        details=details,
    )


def _refuse_taken_name(session: Session, rule: NotificationRule) -> None:
    taken = session.scalar(
        select(NotificationRule.id).where(
            NotificationRule.name == rule.name, NotificationRule.id != rule.id
        )
    )
    if taken is not None:
        raise RuleNameTaken(f"A notification rule is already named '{rule.name}'.")


def _set_secret(
    session: Session,
    cipher: EnvelopeCipher,
    rule: NotificationRule,
    given: Any,
) -> str | None:
    """Seal the given secret, or a generated one (returned, to be shown once)."""
    value: str = (
        given.get_secret_value() if given is not None else secrets.token_urlsafe(32)
    )
    generated = None if given is not None else value
    if rule.sealed_secret is not None:
        cipher.destroy(session, rule.sealed_secret)
    rule.sealed_secret = cipher.seal(
        session, value.encode(), purpose=WEBHOOK_SECRET_PURPOSE
    )
    return generated


def _refuse_secret(given: Any) -> None:
    if given is not None:
        raise InvalidRule(
            "secret_not_applicable", "Only a webhook rule has a secret.", field="secret"
        )


def _check(session: Session, rule: NotificationRule, settings: Settings) -> None:
    """Raises: InvalidRule naming the first field that does not fit."""
    event = Event(rule.event)
    if rule.days_before is not None:
        if event not in THRESHOLD_EVENTS:
            raise InvalidRule(
                "days_before_not_applicable",
                f"days_before applies only to {', '.join(sorted(THRESHOLD_EVENTS))}.",
                field="days_before",
            )
        rule.days_before = sorted(set(rule.days_before), reverse=True)
    if rule.channel == Channel.EMAIL:
        _check_email_rule(session, rule)
    else:
        _check_webhook_rule(rule, settings)
    for field in ("subject_template", "body_template"):
        template = getattr(rule, field)
        if template is None:
            continue
        if templates.placeholders(template) is None:
            raise InvalidRule(
                "invalid_template",
                "The template has a stray '$': write '$$' for a dollar sign, '${name}' for a field.",
                field=field,
            )
        unknown = templates.unknown_placeholders(event, template)
        if unknown:
            offered = sorted(templates.KNOWN_FIELDS[event] | templates.COMMON_FIELDS)
            raise InvalidRule(
                "unknown_placeholder",
                f"{event.value} has no field {', '.join(unknown)}; it offers {', '.join(offered)}.",
                field=field,
            )


def _check_email_rule(session: Session, rule: NotificationRule) -> None:
    if rule.url is not None:
        raise InvalidRule(
            "url_not_applicable",
            "An email rule has recipients, not a url.",
            field="url",
        )
    if not rule.recipients:
        raise InvalidRule(
            "recipients_required",
            "An email rule needs at least one recipient.",
            field="recipients",
        )
    normalised = []
    for recipient in rule.recipients:
        role = recipients_service.role_name(recipient)
        if recipient == recipients_service.ASSIGNEES:
            normalised.append(recipient)
        elif role is not None:
            if session.scalar(select(Role.id).where(Role.name == role)) is None:
                raise InvalidRule(
                    "unknown_role", f"There is no role '{role}'.", field="recipients"
                )
            normalised.append(recipient)
        else:
            address = recipients_service.normalised_address(recipient)
            if address is None:
                raise InvalidRule(
                    "invalid_recipient",
                    f"'{recipient}' is neither an email address, 'assignees' nor 'role:<name>'.",
                    field="recipients",
                )
            normalised.append(address)
    rule.recipients = list(dict.fromkeys(normalised))


def _check_webhook_rule(rule: NotificationRule, settings: Settings) -> None:
    if rule.recipients is not None:
        raise InvalidRule(
            "recipients_not_applicable",
            "A webhook rule has a url, not recipients.",
            field="recipients",
        )
    if rule.subject_template is not None or rule.body_template is not None:
        raise InvalidRule(
            "template_not_applicable",
            "A webhook sends the event as JSON: templates apply to email only.",
            field="subject_template" if rule.subject_template else "body_template",
        )
    if not rule.url:
        raise InvalidRule("url_required", "A webhook rule needs a url.", field="url")
    try:
        parse_url(rule.url)
        resolve(rule.url, AllowList.parse(settings.webhook_allowed_hosts))
    except DestinationUnresolved:
        pass  # checked again at each send, when the name may resolve
    except DestinationRefused as exc:
        raise InvalidRule("webhook_url_refused", f"{exc}.", field="url") from None


def list_deliveries(
    session: Session,
    *,
    params: PageParams,
    status: Sequence[DeliveryStatus] = (),
    event: Sequence[Event] = (),
    rule_id: uuid.UUID | None = None,
) -> tuple[Sequence[Delivery], int]:
    statement = select(Delivery)
    if status:
        statement = statement.where(Delivery.status.in_(status))
    if event:
        statement = statement.where(Delivery.event.in_([e.value for e in event]))
    if rule_id is not None:
        statement = statement.where(Delivery.rule_id == rule_id)
    return paginate(
        session,
        statement,
        params,
        sortable=DELIVERY_SORTABLE,
        default_sort="-created_at",
        tiebreaker=Delivery.id,
    )


def retry_delivery(
    session: Session, principal: Principal, *, delivery_id: uuid.UUID
) -> Delivery:
    """Queue a failed delivery again, with a fresh count of attempts.

    Raises: DeliveryNotFound, DeliveryNotFailed.
    """
    delivery = session.get(Delivery, delivery_id, with_for_update=True)
    if delivery is None:
        raise DeliveryNotFound(f"No delivery {delivery_id}.")
    if delivery.status != DeliveryStatus.FAILED:
        raise DeliveryNotFailed(
            f"The delivery is {delivery.status.value}; only a failed one can be retried."
        )
    previous_error = delivery.last_error
    delivery.status = DeliveryStatus.PENDING
    delivery.attempts = 0
    delivery.next_attempt_at = utcnow()
    delivery.finished_at = None
    session.flush()
    audit_service.record(
        session,
        actor=principal.actor,
        action="notification.retried",
        resource_type="notification_delivery",
        resource_id=delivery.id,
        details={
            "event": delivery.event,
            "target": delivery.target,
            "last_error": previous_error,
        },
    )
    return delivery
