"""Direct emails on the dispatcher's side: opening and rendering a queued message.

Domain code queues a direct email through the mail port (``mno.mail.queue_direct``),
which writes the delivery row and seals its secret values; see ``mno.mail`` for why such
secrets never enter the outbox. The dispatcher sends the rows of channel ``CHANNEL``
through the profile's SMTP server with the same retries and exhaustion as every
delivery: ``prepare()`` opens the sealed values and renders the template (the tenant's
override, the platform's, or the built-in one).
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from mno import crypto, mail
from mno.notify import templates
from mno.store.models.tenancy import Tenant

if TYPE_CHECKING:
    from sqlmodel import Session

CHANNEL = mail.DIRECT_CHANNEL


def prepare(session: Session, body: str, tenant_id: Any) -> tuple[str, str, str]:
    """(to, subject, text) of one queued email: the sealed values opened, the template
    (the tenant's override, the platform's, or the built-in one) rendered."""
    recipe = json.loads(crypto.reveal_json(body))
    context = dict(recipe["context"])
    tenant_view: dict[str, Any] = {}
    if tenant_id is not None:
        tenant = session.get(Tenant, tenant_id)
        if tenant is not None:
            tenant_view = {"key": tenant.key, "name": tenant.name}
    context.setdefault("tenant", tenant_view)
    subject, text = templates.render(session, recipe["template"], tenant_id, context)
    return recipe["to"], subject, text


def sender(body: str) -> str | None:
    """The from-address a queued email asks for (a frontend's branding), if any."""
    try:
        value = json.loads(body).get("from")
    except (ValueError, AttributeError):
        return None
    return str(value) if value else None
