"""Notification rules: which events are emailed to whom, with which template."""

from __future__ import annotations

import json
from typing import Any

from sqlmodel import Session, col, select

from mno import validate
from mno.errors import BadInput, NotFound
from mno.mail import Attachment
from mno.notify import invoice_mail, templates
from mno.store import audit, lookup, outbox
from mno.store.models.tenancy import Tenant
from mno.store.models.webhooks import NotifyRule
from mno.tenancy import tenants
from mno.webhooks.endpoints import parse_events

TENANT_PRIMARY = "tenant-primary"


def add(
    session: Session,
    *,
    events: str,
    email_to: str,
    template: str,
    tenant: str | None = None,
) -> NotifyRule:
    patterns = parse_events(events)
    if not patterns:
        raise BadInput("--events is required")
    if email_to != TENANT_PRIMARY:
        email_to = validate.email(email_to)
    if template not in templates.BUILTIN:
        raise BadInput(f"no template {template!r}", "one of: " + ", ".join(templates.BUILTIN))
    tenant_id = None
    if tenant:
        tenant_id = tenants.get(session, tenant).id
    rule = NotifyRule(events=patterns, email_to=email_to, template=template, tenant_id=tenant_id)
    session.add(rule)
    session.flush()
    audit.record(
        session,
        "notify.rule_create",
        target_type="notify_rule",
        target_id=str(rule.id),
        target=template,
        after=view(rule),
        tenant_id=tenant_id,
    )
    outbox.emit(session, "notify.rule_created", {"rule_id": str(rule.id)}, tenant_id)
    return rule


def view(r: NotifyRule) -> dict[str, Any]:
    shown: dict[str, Any] = audit.jsonable(
        {
            "id": str(r.id),
            "events": r.events,
            "email_to": r.email_to,
            "template": r.template,
            "tenant_id": str(r.tenant_id) if r.tenant_id else None,
            "enabled": r.enabled,
        }
    )
    return shown


def list_rules(session: Session) -> list[NotifyRule]:
    return list(session.exec(select(NotifyRule).order_by(col(NotifyRule.created_at))))


def get(session: Session, rule_id: str) -> NotifyRule:
    return lookup.by_id_or_prefix(session, NotifyRule, rule_id, "notification rule")


def delete(session: Session, rule_id: str) -> None:
    r = get(session, rule_id)
    before = view(r)
    session.delete(r)
    audit.record(
        session,
        "notify.rule_delete",
        target_type="notify_rule",
        target_id=str(r.id),
        target=r.template,
        before=before,
        tenant_id=r.tenant_id,
    )
    outbox.emit(session, "notify.rule_deleted", {"rule_id": str(r.id)}, r.tenant_id)


def prepare(
    session: Session, rule_id: Any, body: str, tenant_id: Any
) -> tuple[str, str, str, list[Attachment]]:
    """(to, subject, text, attachments) for one email delivery; BadInput when no recipient
    exists. An invoice event's email gets the invoice in its context, and the
    ``invoice_issued`` one its PDF (``invoice_mail``)."""
    rule = session.get(NotifyRule, rule_id)
    if rule is None:
        raise NotFound("the notification rule was deleted")
    event = json.loads(body)
    to = rule.email_to
    tenant_view: dict[str, Any] = {}
    if tenant_id is not None:
        tenant = session.get(Tenant, tenant_id)
        if tenant is not None:
            tenant_view = {"key": tenant.key, "name": tenant.name}
            if to == TENANT_PRIMARY:
                contact = tenants.primary_contact(session, tenant)
                to = contact.email if contact else ""
    if to == TENANT_PRIMARY or not to:
        raise BadInput("no recipient: the event's tenant has no primary contact")
    extra = invoice_mail.context(session, event)
    subject, text = templates.render(
        session, rule.template, tenant_id, {**event, "tenant": tenant_view, **extra}
    )
    return to, subject, text, invoice_mail.attachments(session, rule.template, event)
