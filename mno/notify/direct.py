"""Direct emails: one message to one address, sent by the dispatcher like rule emails.

Some emails carry a secret meant only for their recipient (the lead verification code).
Such a secret must never enter the outbox, where every webhook endpoint and ``mno events
list`` would see it, so these messages are not rules over events. ``queue()`` writes the
delivery row itself, in the caller's transaction, next to the event it belongs to:

- channel ``direct_email``, the recipient's id as target, the event's id and seq;
- the body is the message recipe: ``{"to", "template", "context"}``, where secret
  context values are sealed under the master key (``{"$encrypted": …}``) and only the
  dispatcher opens them, when it renders the template;
- the dispatcher sends it through the profile's SMTP server with the same retries and
  exhaustion as every delivery; once it succeeded or is exhausted, the sealed values are
  removed from the stored body (``scrub()``).
"""

from __future__ import annotations

import json
import uuid
from typing import TYPE_CHECKING, Any

from mno import clock, crypto

if TYPE_CHECKING:
    from sqlmodel import Session

    from mno.store.models.core import Event

CHANNEL = "direct_email"
REDACTED = "[sent]"


def queue(
    session: Session,
    event: Event,
    *,
    target_id: uuid.UUID,
    to: str,
    template: str,
    context: dict[str, Any],
    sealed: dict[str, str] | None = None,
) -> uuid.UUID:
    """Queue one email rendered from ``template`` with ``context`` (+ ``sealed`` values,
    stored encrypted) for the dispatcher; returns the delivery id."""
    from mno.notify import templates
    from mno.webhooks.fanout import delivery_row, insert_deliveries

    templates.builtin_text(template)  # NotFound for an unknown name
    session.flush()  # the event's id and seq
    recipe = {
        "to": to,
        "template": template,
        "context": {
            "type": event.type,
            "timestamp": event.created_at.isoformat().replace("+00:00", "Z"),
            **context,
            **{k: crypto.sealed(v) for k, v in (sealed or {}).items()},
        },
    }
    body = json.dumps(recipe, separators=(",", ":"), ensure_ascii=False, default=str)
    row = delivery_row(
        channel=CHANNEL, target_id=target_id, ev=event, body=body, ordered=False, now=clock.now()
    )
    insert_deliveries(session, [row])
    return row["id"]


def prepare(session: Session, body: str, tenant_id: Any) -> tuple[str, str, str]:
    """(to, subject, text) of one queued email: the sealed values opened, the template
    (the tenant's override, the platform's, or the built-in one) rendered."""
    from mno.notify import templates

    recipe = json.loads(crypto.reveal_json(body))
    context = dict(recipe["context"])
    tenant_view: dict[str, Any] = {}
    if tenant_id is not None:
        from mno.store.models.tenancy import Tenant

        tenant = session.get(Tenant, tenant_id)
        if tenant is not None:
            tenant_view = {"key": tenant.key, "name": tenant.name}
    context.setdefault("tenant", tenant_view)
    subject, text = templates.render(session, recipe["template"], tenant_id, context)
    return recipe["to"], subject, text


def scrub(body: str) -> str:
    """The recipe without its sealed values (kept once the email is done with)."""

    def walk(value: Any) -> Any:
        if isinstance(value, dict):
            if set(value) == {crypto.ENCRYPTED_KEY}:
                return REDACTED
            return {k: walk(v) for k, v in value.items()}
        if isinstance(value, list):
            return [walk(v) for v in value]
        return value

    return json.dumps(walk(json.loads(body)), separators=(",", ":"), ensure_ascii=False)
