"""Webhook endpoints: register, list, update, enable/disable, delete, rotate the secret."""

from __future__ import annotations

import re
import uuid
from datetime import timedelta
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import urlsplit

import sqlalchemy as sa
from sqlmodel import col, select

from mno import clock, crypto, settings, signing
from mno import events as catalogue
from mno.errors import BadInput, NotFound
from mno.store import audit, outbox
from mno.store.models.tenancy import Tenant
from mno.store.models.webhooks import WebhookDelivery, WebhookEndpoint
from mno.store.types import table_of
from mno.tenancy import tenants

if TYPE_CHECKING:
    from sqlmodel import Session

_PATTERN = re.compile(r"^[a-z0-9_*]+(\.[a-z0-9_*]+)*$")
_RATE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(?:/\s*s)?\s*$")


def parse_events(value: str | list[str] | None) -> list[str]:
    if not value:
        return []
    items = value.split(",") if isinstance(value, str) else value
    out = []
    for item in items:
        item = item.strip()
        if not item:
            continue
        if not _PATTERN.match(item):
            raise BadInput(f"bad event filter {item!r}", "dotted lowercase types, * wildcards")
        if not any(catalogue.matches(item, known) for known in catalogue.CATALOGUE):
            raise BadInput(f"event filter {item!r} matches no event type", "see `mno events types`")
        out.append(item)
    return out


def parse_rate(value: str | float | None) -> float | None:
    if value is None or value == "":
        return None
    m = _RATE.match(str(value))
    if not m or float(m.group(1)) <= 0:
        raise BadInput(f"bad rate limit {value!r}", "expected N/s, e.g. 50/s")
    return float(m.group(1))


def check_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise BadInput(f"bad endpoint URL {url!r}", "expected http(s)://host/path")
    return url


def get(session: Session, endpoint_id: str | uuid.UUID) -> WebhookEndpoint:
    try:
        eid = endpoint_id if isinstance(endpoint_id, uuid.UUID) else uuid.UUID(str(endpoint_id))
    except ValueError:
        eid = None
    row = session.get(WebhookEndpoint, eid) if eid else None
    if row is None:
        # allow a unique id prefix
        matches = [
            e
            for e in session.exec(select(WebhookEndpoint))
            if str(e.id).startswith(str(endpoint_id)) and len(str(endpoint_id)) >= 4
        ]
        if len(matches) == 1:
            return matches[0]
        raise NotFound(f"no webhook endpoint {endpoint_id}", "see `mno webhook endpoint list`")
    return row


def _tenant_id(session: Session, key: str | None) -> uuid.UUID | None:
    if not key:
        return None
    return tenants.get(session, key).id


def view(e: WebhookEndpoint, *, reveal: bool = False) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": str(e.id),
        "url": e.url,
        "tenant_id": str(e.tenant_id) if e.tenant_id else None,
        "events": e.events,
        "description": e.description,
        "rate_limit": f"{e.rate_limit:g}/s" if e.rate_limit else None,
        "ordered": e.ordered,
        "timeout": f"{e.timeout_s:g}s",
        "headers": sorted(e.headers),
        "enabled": e.enabled,
        "disabled_reason": e.disabled_reason,
        "failing_since": e.failing_since,
        "rotation_grace_until": e.old_secret_until,
        "created_at": e.created_at,
    }
    if reveal:
        out["secret"] = crypto.decrypt(e.secret_enc)
    return cast("dict[str, Any]", audit.jsonable(out))


def _snapshot(e: WebhookEndpoint) -> dict[str, Any]:
    return view(e)


def add(
    session: Session,
    url: str,
    *,
    tenant: str | None = None,
    events: str | list[str] | None = None,
    description: str = "",
    rate_limit: str | float | None = None,
    ordered: bool = False,
    timeout: str = "15s",
    headers: dict[str, str] | None = None,
    disabled: bool = False,
) -> WebhookEndpoint:
    e = _new(
        url,
        _tenant_id(session, tenant),
        events=events,
        description=description,
        rate_limit=rate_limit,
        ordered=ordered,
        timeout=timeout,
        headers=headers,
        disabled=disabled,
    )
    session.add(e)
    session.flush()
    audit.record(
        session,
        "webhook.endpoint_create",
        target_type="webhook_endpoint",
        target_id=str(e.id),
        target=e.url,
        after=_snapshot(e),
        tenant_id=e.tenant_id,
    )
    outbox.emit(
        session, "webhook.endpoint_created", {"endpoint_id": str(e.id), "url": e.url}, e.tenant_id
    )
    return e


def add_many(session: Session, items: list[dict[str, Any]]) -> list[WebhookEndpoint]:
    """Register many endpoints at once (``add()``'s keywords per item), with the same
    checks, audit rows and events, in one statement per table."""
    if not items:
        return []
    keys: dict[str, uuid.UUID] = dict(
        session.execute(sa.select(col(Tenant.key), col(Tenant.id))).tuples().all()
    )
    rows = []
    for item in items:
        fields = dict(item)
        tenant = fields.pop("tenant", None)
        if tenant and tenant not in keys:
            raise NotFound(f"tenant {tenant} not found", "see `mno tenant list`")
        rows.append(_new(fields.pop("url"), keys[tenant] if tenant else None, **fields))
    session.add_all(rows)
    session.flush()
    audit.record_many(
        session,
        [
            {
                "action": "webhook.endpoint_create",
                "target_type": "webhook_endpoint",
                "target_id": str(e.id),
                "target": e.url,
                "after": _snapshot(e),
                "tenant_id": e.tenant_id,
            }
            for e in rows
        ],
    )
    outbox.emit_many(
        session,
        [
            ("webhook.endpoint_created", {"endpoint_id": str(e.id), "url": e.url}, e.tenant_id)
            for e in rows
        ],
    )
    return rows


def _new(
    url: str,
    tenant_id: uuid.UUID | None,
    *,
    events: str | list[str] | None = None,
    description: str = "",
    rate_limit: str | float | None = None,
    ordered: bool = False,
    timeout: str = "15s",
    headers: dict[str, str] | None = None,
    disabled: bool = False,
) -> WebhookEndpoint:
    """A checked, unsaved endpoint with a new signing secret."""
    e = WebhookEndpoint(
        url=check_url(url),
        tenant_id=tenant_id,
        events=parse_events(events),
        description=description,
        rate_limit=parse_rate(rate_limit),
        ordered=ordered,
        timeout_s=settings.parse_duration(timeout).total_seconds(),
        headers=dict(headers or {}),
        enabled=not disabled,
        disabled_reason="created disabled" if disabled else None,
        secret_enc=crypto.encrypt(signing.new_secret()),
    )
    if e.timeout_s <= 0 or e.timeout_s > 120:
        raise BadInput("timeout must be between 0 and 120s")
    return e


def list_endpoints(
    session: Session, *, tenant: str | None = None, enabled: bool | None = None
) -> list[WebhookEndpoint]:
    stmt = select(WebhookEndpoint).order_by(col(WebhookEndpoint.created_at))
    if tenant:
        stmt = stmt.where(WebhookEndpoint.tenant_id == _tenant_id(session, tenant))
    if enabled is not None:
        stmt = stmt.where(WebhookEndpoint.enabled == enabled)
    return list(session.exec(stmt))


def _changed(session: Session, e: WebhookEndpoint, before: dict[str, Any], action: str) -> None:
    e.touch()
    session.add(e)
    session.flush()
    audit.record(
        session,
        action,
        target_type="webhook_endpoint",
        target_id=str(e.id),
        target=e.url,
        before=before,
        after=_snapshot(e),
        tenant_id=e.tenant_id,
    )
    outbox.emit(
        session,
        "webhook.endpoint_updated",
        {"endpoint_id": str(e.id), "action": action.rsplit("_", 1)[-1]},
        e.tenant_id,
    )


_UNSET: Any = object()


def update(
    session: Session,
    endpoint_id: str,
    *,
    url: str | None = None,
    events: str | None = None,
    description: str | None = None,
    rate_limit: str | None = None,
    ordered: bool | None = None,
    timeout: str | None = None,
    headers: dict[str, str] | None = None,
) -> WebhookEndpoint:
    e = get(session, endpoint_id)
    before = _snapshot(e)
    if url is not None:
        e.url = check_url(url)
    if events is not None:
        e.events = parse_events(events)
    if description is not None:
        e.description = description
    if rate_limit is not None:
        e.rate_limit = None if rate_limit in ("", "none", "0") else parse_rate(rate_limit)
    if ordered is not None:
        e.ordered = ordered
    if timeout is not None:
        e.timeout_s = settings.parse_duration(timeout).total_seconds()
    if headers is not None:
        e.headers = dict(headers)
    _changed(session, e, before, "webhook.endpoint_update")
    return e


def set_enabled(
    session: Session, endpoint_id: str | uuid.UUID, enabled: bool, reason: str | None = None
) -> WebhookEndpoint:
    e = get(session, endpoint_id)
    before = _snapshot(e)
    e.enabled = enabled
    e.disabled_reason = None if enabled else (reason or "disabled by operator")
    if enabled:
        e.failing_since = None
    _changed(
        session, e, before, "webhook.endpoint_enable" if enabled else "webhook.endpoint_disable"
    )
    return e


def delete(session: Session, endpoint_id: str) -> None:
    e = get(session, endpoint_id)
    before = _snapshot(e)
    t = table_of(WebhookDelivery)
    session.execute(
        sa.update(t)
        .where(t.c.target_id == e.id, t.c.status == "pending")
        .values(status="cancelled", lease_owner=None, lease_until=None, done_at=clock.now())
    )
    session.delete(e)
    audit.record(
        session,
        "webhook.endpoint_delete",
        target_type="webhook_endpoint",
        target_id=str(e.id),
        target=e.url,
        before=before,
        tenant_id=e.tenant_id,
    )
    outbox.emit(session, "webhook.endpoint_deleted", {"endpoint_id": str(e.id)}, e.tenant_id)


def rotate_secret(session: Session, endpoint_id: str, grace: str = "24h") -> WebhookEndpoint:
    """New secret now; the old one keeps signing (space-separated) until the grace ends."""
    e = get(session, endpoint_id)
    before = _snapshot(e)
    period = settings.parse_duration(grace)
    if period > timedelta(0):
        e.old_secret_enc = e.secret_enc
        e.old_secret_until = clock.now() + period
    else:
        e.old_secret_enc = None
        e.old_secret_until = None
    e.secret_enc = crypto.encrypt(signing.new_secret())
    _changed(session, e, before, "webhook.endpoint_rotate_secret")
    return e


def active_secrets(e: Any) -> list[str]:
    """Plain secrets to sign with now: the current one, plus the old one during grace."""
    out = [crypto.decrypt(e.secret_enc)]
    if e.old_secret_enc and e.old_secret_until and e.old_secret_until > clock.now():
        out.append(crypto.decrypt(e.old_secret_enc))
    return out
