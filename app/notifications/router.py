import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, status

from app.access.entitlements import Entitlement
from app.access.policy import require
from app.access.principal import Principal
from app.certificates.deps import get_cipher
from app.core.crypto import EnvelopeCipher
from app.core.deps import SessionDep, SettingsDep
from app.core.errors import problem_responses
from app.core.pagination import Page, PageParams, page_of, page_params
from app.core.routing import AppRoute
from app.notifications import service as notifications_service
from app.notifications import smtp as smtp_service
from app.notifications.destinations import AllowList
from app.notifications.models import Channel, Delivery, DeliveryStatus, NotificationRule
from app.notifications.outbox import Event
from app.notifications.schemas import (
    DeliveryRead,
    RuleCreate,
    RuleRead,
    RuleUpdate,
    RuleWritten,
    SmtpSettingsRead,
    SmtpSettingsWrite,
    SmtpTest,
    SmtpTestResult,
)

router = APIRouter(
    prefix="/api/v1/notifications", tags=["notifications"], route_class=AppRoute
)

ReadPrincipal = Annotated[Principal, Depends(require(Entitlement.NOTIFICATIONS_READ))]
WritePrincipal = Annotated[Principal, Depends(require(Entitlement.NOTIFICATIONS_WRITE))]
CipherDep = Annotated[EnvelopeCipher, Depends(get_cipher)]


def _load_rule(rule_id: uuid.UUID, session: SessionDep) -> NotificationRule:
    return notifications_service.get_rule(session, rule_id)


RuleDep = Annotated[NotificationRule, Depends(_load_rule)]


def _written(rule: NotificationRule, secret: str | None) -> RuleWritten:
    return RuleWritten(**RuleRead.model_validate(rule).model_dump(), secret=secret)


@router.get(
    "/rules", response_model=Page[RuleRead], responses=problem_responses(401, 403, 422)
)
def list_rules(
    _principal: ReadPrincipal,
    session: SessionDep,
    params: Annotated[PageParams, Depends(page_params)],
    event: Annotated[list[Event], Query()] = [],  # noqa: B006 (FastAPI copies defaults)
    channel: Annotated[list[Channel], Query()] = [],  # noqa: B006
    enabled: bool | None = None,
) -> dict[str, Any]:
    """Notification rules (filters `event`, `channel`, `enabled`; sortable by name, event, created_at)."""
    rows, total = notifications_service.list_rules(
        session, params=params, event=event, channel=channel, enabled=enabled
    )
    return page_of(rows, total, params, RuleRead)


@router.post(
    "/rules",
    status_code=status.HTTP_201_CREATED,
    responses=problem_responses(401, 403, 409, 415, 422, 503),
)
def create_rule(
    body: RuleCreate,
    principal: WritePrincipal,
    session: SessionDep,
    settings: SettingsDep,
    cipher: CipherDep,
) -> RuleWritten:
    """Create a rule; a webhook secret generated for it is in this response only."""
    rule, secret = notifications_service.create_rule(
        session, principal, cipher, settings, fields=body.model_dump()
    )
    return _written(rule, secret)


@router.get(
    "/rules/{rule_id}",
    response_model=RuleRead,
    responses=problem_responses(401, 403, 404),
)
def read_rule(_principal: ReadPrincipal, rule: RuleDep) -> NotificationRule:
    """One rule (never its webhook secret)."""
    return rule


@router.patch(
    "/rules/{rule_id}", responses=problem_responses(401, 403, 404, 409, 415, 422, 503)
)
def update_rule(
    body: RuleUpdate,
    principal: WritePrincipal,
    session: SessionDep,
    settings: SettingsDep,
    cipher: CipherDep,
    rule: RuleDep,
) -> RuleWritten:
    """Change a rule; the whole rule is checked again. A webhook without a secret gets one, shown once."""
    rule, secret = notifications_service.update_rule(
        session,
        principal,
        cipher,
        settings,
        rule=rule,
        changes=body.model_dump(exclude_unset=True),
    )
    return _written(rule, secret)


@router.delete(
    "/rules/{rule_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    responses=problem_responses(401, 403, 404),
)
def delete_rule(principal: WritePrincipal, session: SessionDep, rule: RuleDep) -> None:
    """Delete a rule; its deliveries stay in the log."""
    notifications_service.delete_rule(session, principal, rule=rule)


@router.get("/smtp", responses=problem_responses(401, 403))
def read_smtp(_principal: ReadPrincipal, session: SessionDep) -> SmtpSettingsRead:
    """The SMTP settings; the password is never returned (`password_set` says whether one is stored)."""
    return smtp_service.read_smtp(session)


@router.put("/smtp", responses=problem_responses(401, 403, 415, 422, 503))
def replace_smtp(
    body: SmtpSettingsWrite,
    principal: WritePrincipal,
    session: SessionDep,
    cipher: CipherDep,
    settings: SettingsDep,
) -> SmtpSettingsRead:
    """Replace the SMTP settings; `password` left out keeps the stored one, `null` removes it.

    A host that resolves to a private, loopback or link-local address is refused
    (422 `smtp_host_refused`) unless `SIGNVAULT_SMTP_ALLOWED_HOSTS` lists it.
    """
    return smtp_service.replace_smtp(
        session,
        principal,
        cipher,
        body=body,
        fields_set=body.model_fields_set,
        allowed=AllowList.parse(settings.smtp_allowed_hosts),
    )


@router.post("/smtp/test", responses=problem_responses(401, 403, 409, 415, 422, 502))
def test_smtp(
    body: SmtpTest,
    request: Request,
    principal: WritePrincipal,
    session: SessionDep,
    settings: SettingsDep,
) -> SmtpTestResult:
    """Send a test email now with the stored settings; 502 if it fails, with the server's answer if it answered as an SMTP server."""
    return smtp_service.send_test(
        session,
        principal,
        request.app.state.cipher,
        to=str(body.to),
        allowed=AllowList.parse(settings.smtp_allowed_hosts),
    )


@router.get(
    "/deliveries",
    response_model=Page[DeliveryRead],
    responses=problem_responses(401, 403, 422),
)
def list_deliveries(
    _principal: ReadPrincipal,
    session: SessionDep,
    params: Annotated[PageParams, Depends(page_params)],
    delivery_status: Annotated[list[DeliveryStatus], Query(alias="status")] = [],  # noqa: B006
    event: Annotated[list[Event], Query()] = [],  # noqa: B006
    rule_id: uuid.UUID | None = None,
) -> dict[str, Any]:
    """The delivery log, newest first (filters `status`, `event`, `rule_id`)."""
    rows, total = notifications_service.list_deliveries(
        session, params=params, status=delivery_status, event=event, rule_id=rule_id
    )
    return page_of(rows, total, params, DeliveryRead)


@router.post(
    "/deliveries/{delivery_id}/retry",
    response_model=DeliveryRead,
    responses=problem_responses(401, 403, 404, 409),
)
def retry_delivery(
    delivery_id: uuid.UUID, principal: WritePrincipal, session: SessionDep
) -> Delivery:
    """Queue a failed delivery again (its attempts count from zero)."""
    return notifications_service.retry_delivery(
        session, principal, delivery_id=delivery_id
    )
