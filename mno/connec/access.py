"""Who may use a tenant's records over Connec, and the apps' subscriptions.

An app acts for a tenant when the IDM would answer it about that tenant
(``mno.access.customers.may_ask``: the tenant owns the app, or has a live instance of
or subscription to it) and the tenant is live. A user's personal token acts for a tenant
when ``mno.access.check`` allows the user ``read`` (queries) or ``sync`` (writes) there.
Any other tenant, an unknown one included, is answered "not found" with the same words,
so a caller cannot learn which tenants exist or what they hold.

A subscription registers a webhook endpoint of the tenant for ``connec.<entity>.*``
events, owned by the app (``connec_subscription``): the dispatcher delivers every change
of those entities to it, signed the Standard Webhooks way, except the changes the app
wrote itself.
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any

from sqlmodel import select

from mno import crypto, settings
from mno.access import customers, tokens
from mno.access.check import evaluate
from mno.connec import entities
from mno.connec.writes import Writer
from mno.errors import BadInput, NotFound
from mno.store import audit
from mno.store.models.connec import ConnecSubscription
from mno.store.models.tenancy import Tenant
from mno.tenancy import apps, tenants
from mno.webhooks import endpoints

if TYPE_CHECKING:
    from sqlmodel import Session

CLOSED = ("offboarding", "offboarded")


def writer_for(session: Session, app: customers.App, tenant_key: str) -> Writer:
    """The writer for ``app`` acting on ``tenant_key``; ``NotFound`` when it may not."""
    refusal = NotFound(f"no tenant {tenant_key}")
    try:
        tenant = tenants.get(session, tenant_key)
    except NotFound:
        raise refusal from None
    if tenant.status in CLOSED or not customers.may_ask(session, app, tenant)[0]:
        raise refusal
    return Writer(tenant.id, app.id, app.code)


OPERATOR = uuid.UUID(int=0)  # the "app" of an operator's writes: it subscribes nowhere


def operator_writer(session: Session, tenant_key: str, app_code: str | None = None) -> Writer:
    """The writer of an operator (the CLI) on a tenant: acting as ``app_code`` (its id
    map, its source) or, without one, as the operator (source ``operator:<actor>``,
    delivered to every subscribed app)."""
    tenant = tenants.get(session, tenant_key)
    if app_code is None:
        return Writer(tenant.id, OPERATOR, "operator", f"operator:{settings.actor()}")
    found = apps.get(session, app_code)
    return Writer(tenant.id, found.id, found.code)


def user_writer(session: Session, token: str, tenant_key: str, action: str) -> Writer | None:
    """The writer for a user's personal token on ``tenant_key``: None when the token is
    unknown, expired or revoked; ``NotFound`` when the IDM's check (``mno.access.check``,
    as ``POST /v1/idm/authorize`` answers it) refuses ``action`` (read or sync)."""
    user = tokens.resolve(session, token)
    if user is None:
        return None
    try:
        tenant = tenants.get(session, tenant_key)
    except NotFound:
        raise NotFound(f"no tenant {tenant_key}") from None
    allowed, _reason, _role = evaluate(session, user, tenant, action)
    if not allowed:
        raise NotFound(f"no tenant {tenant_key}")
    return Writer(tenant.id, OPERATOR, "user", f"user:{user.email}")


def subscribe(
    session: Session, writer: Writer, url: str, entity_names: list[str]
) -> tuple[dict[str, Any], str]:
    """Subscribe the app to ``entity_names`` at ``url``; returns the subscription and
    its signing secret (shown this once)."""
    if not entity_names:
        raise BadInput("a subscription needs at least one entity")
    for name in entity_names:
        entities.get(name)
    tenant = session.get(Tenant, writer.tenant_id)
    assert tenant is not None
    endpoint = endpoints.add(
        session,
        url,
        tenant=tenant.key,
        events=[f"connec.{name}.*" for name in sorted(set(entity_names))],
        description=f"connec subscription of {writer.app_code}",
    )
    sub = ConnecSubscription(
        tenant_id=writer.tenant_id,
        app_id=writer.app_id,
        endpoint_id=endpoint.id,
        entities=sorted(set(entity_names)),
    )
    session.add(sub)
    session.flush()
    audit.record(
        session,
        "connec.subscribe",
        target_type="connec_subscription",
        target_id=sub.id,
        target=url,
        after={"app": writer.app_code, "entities": sub.entities, "endpoint_id": str(endpoint.id)},
        tenant_id=writer.tenant_id,
    )
    return _view(sub, endpoint.url), crypto.decrypt(endpoint.secret_enc)


def _view(sub: ConnecSubscription, url: str) -> dict[str, Any]:
    return {
        "id": str(sub.id),
        "entities": list(sub.entities),
        "url": url,
        "endpoint_id": str(sub.endpoint_id),
        "created_at": audit.utc_text(sub.created_at),
    }


def list_subscriptions(session: Session, writer: Writer) -> list[dict[str, Any]]:
    rows = session.exec(
        select(ConnecSubscription).where(
            ConnecSubscription.tenant_id == writer.tenant_id,
            ConnecSubscription.app_id == writer.app_id,
        )
    ).all()
    out = []
    for sub in rows:
        try:
            url = endpoints.get(session, sub.endpoint_id).url
        except NotFound:
            continue
        out.append(_view(sub, url))
    return out


def unsubscribe(session: Session, writer: Writer, subscription_id: str) -> None:
    """Remove one of the app's subscriptions and its webhook endpoint."""
    try:
        sid = uuid.UUID(subscription_id)
    except ValueError:
        raise NotFound(f"no subscription {subscription_id}") from None
    sub = session.get(ConnecSubscription, sid)
    if sub is None or sub.tenant_id != writer.tenant_id or sub.app_id != writer.app_id:
        raise NotFound(f"no subscription {subscription_id}")
    endpoints.delete(session, str(sub.endpoint_id))
    session.delete(sub)
    audit.record(
        session,
        "connec.unsubscribe",
        target_type="connec_subscription",
        target_id=sub.id,
        target=str(sub.id),
        before={"app": writer.app_code, "entities": list(sub.entities)},
        tenant_id=writer.tenant_id,
    )
