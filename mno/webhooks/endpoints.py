"""Webhook endpoints: register, list, update, enable/disable, delete, rotate the secret.

A new endpoint takes only the events created after it (Stripe's rule): its ``start_seq``
is the next outbox sequence. ``from_event`` / ``since`` ask for a backlog: the events from
that point that the fan-out has already passed are queued for it at once, the later ones
reach it through the fan-out as usual.

Custom header values are stored sealed by ``mno.crypto`` (``sealed:…``) or as
``secret:NAME`` references resolved when sending; views and exports show header names
and references, never a value. ``probe()`` tells an operator at once when a URL would be
refused by the SSRF guard or does not answer.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import urlsplit

import sqlalchemy as sa
from sqlmodel import col, select

from mno import clock, crypto, secrets, settings, signing
from mno import events as catalogue
from mno.errors import BadInput, NotFound
from mno.store import audit, lookup, outbox, paging
from mno.store.models.core import Event
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


# header names that carry credentials: in documents their values must be references
_SENSITIVE = re.compile(r"auth|token|secret|key|cookie|signature|password|session", re.I)
_HEADER_NAME = re.compile(r"^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")
SEALED = "sealed:"


def is_sensitive_header(name: str) -> bool:
    return bool(_SENSITIVE.search(name))


def seal_headers(headers: dict[str, str] | None) -> dict[str, str]:
    """Header values as stored: ``secret:NAME`` kept, anything else sealed."""
    out: dict[str, str] = {}
    for name, value in (headers or {}).items():
        name = name.strip()
        if not _HEADER_NAME.match(name):
            raise BadInput(f"bad header name {name!r}")
        if any(c in value for c in "\r\n\0"):
            raise BadInput(f"header {name}: the value holds a line break or NUL")
        if value.startswith(secrets.PREFIX) or value.startswith(SEALED):
            out[name] = value
        else:
            out[name] = SEALED + crypto.encrypt(value)
    return out


def header_values(e: Any) -> dict[str, str]:
    """The headers to send: sealed values opened, references resolved (a plain value of
    an endpoint written before values were sealed is sent as it is)."""
    out: dict[str, str] = {}
    for name, value in (e.headers or {}).items():
        if value.startswith(SEALED):
            out[name] = crypto.decrypt(value[len(SEALED) :])
        else:
            out[name] = str(secrets.resolve(value))
    return out


def shown_headers(e: Any) -> dict[str, str]:
    """Header names with what may be shown of each value: a reference, or ``(sealed)``."""
    return {
        name: value if value.startswith(secrets.PREFIX) else "(sealed)"
        for name, value in sorted((e.headers or {}).items())
    }


def comparable_headers(e: Any) -> dict[str, str]:
    """Headers as documents hold them, for a diff: references as written, values of
    headers that carry no credentials opened, the others ``(sealed)``."""
    out: dict[str, str] = {}
    for name, value in sorted((e.headers or {}).items()):
        if value.startswith(SEALED):  # opens this value alone: no reference is resolved
            opened = "(sealed)" if is_sensitive_header(name) else None
            out[name] = opened or crypto.decrypt(value[len(SEALED) :])
        else:
            out[name] = value
    return out


def next_seq(session: Session) -> int:
    et = table_of(Event)
    top = session.execute(sa.select(sa.func.max(et.c.seq))).scalar_one()
    return int(top or 0) + 1


def start_seq(session: Session, from_event: int | None, since: datetime | None) -> int:
    """The first outbox seq a new endpoint takes."""
    if from_event is not None and since is not None:
        raise BadInput("give --from-event or --since, not both")
    if from_event is not None:
        if from_event < 1:
            raise BadInput("--from-event must be a sequence number of 1 or more")
        return from_event
    if since is not None:
        et = table_of(Event)
        first = session.execute(
            sa.select(sa.func.min(et.c.seq)).where(et.c.created_at >= since)
        ).scalar_one()
        return int(first) if first is not None else next_seq(session)
    return next_seq(session)


def queue_backlog(session: Session, e: WebhookEndpoint) -> int:
    """How many events from ``e.start_seq`` on, already in the outbox, ``e`` takes: those
    the fan-out has passed are queued for it now, the others it fans out as usual."""
    from mno.webhooks import fanout

    if not e.enabled:
        return 0  # a disabled endpoint is sent nothing emitted while it is disabled
    high = fanout.fanned_out_high(session)
    et = table_of(Event)
    rows = session.execute(
        sa.select(et.c.id, et.c.seq, et.c.type, et.c.tenant_id, et.c.payload, et.c.created_at)
        .where(et.c.seq >= e.start_seq)
        .order_by(et.c.seq)
    ).all()
    taken = [
        ev for ev in rows if fanout.endpoint_matches(e, ev.type, ev.tenant_id, ev.payload or {})
    ]
    now = clock.now()
    fanout.insert_deliveries(
        session,
        [
            fanout.delivery_row(
                channel="webhook",
                target_id=e.id,
                ev=ev,
                body=fanout.body_for(ev.type, ev.created_at, ev.payload or {}),
                ordered=e.ordered,
                now=now,
            )
            for ev in taken
            if ev.seq <= high
        ],
    )
    return len(taken)


def probe(url: str, timeout: float = 3.0) -> str | None:
    """Why deliveries to ``url`` would fail right now, or None: the SSRF guard refuses
    its address, its name does not resolve, or nothing accepts a connection."""
    import socket

    from mno.webhooks import ssrf

    parts = urlsplit(url)
    host = parts.hostname or ""
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        addr = ssrf.Resolver(ssrf.allow_networks()).resolve(host, port)
    except ssrf.Refused as exc:
        return f"deliveries to {host} would be refused: {exc}"
    except OSError as exc:
        return f"{host} does not resolve: {exc}"
    try:
        with socket.create_connection((str(addr), port), timeout=timeout):
            return None
    except OSError as exc:
        return f"{host}:{port} does not accept connections ({exc.strerror or exc})"


def check_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise BadInput(f"bad endpoint URL {url!r}", "expected http(s)://host/path")
    return url


def get(session: Session, endpoint_id: str | uuid.UUID) -> WebhookEndpoint:
    """The endpoint ``endpoint_id`` (a UUID or a unique prefix of one)."""
    return lookup.by_id_or_prefix(
        session, WebhookEndpoint, endpoint_id, "webhook endpoint", "see `mno webhook endpoint list`"
    )


def _tenant_id(session: Session, key: str | None) -> uuid.UUID | None:
    if not key:
        return None
    return tenants.get(session, key).id


def status(e: WebhookEndpoint) -> str:
    """One word that list and show agree on: active, failing or disabled."""
    if not e.enabled:
        return "disabled"
    return "failing" if e.failing_since else "active"


def last_failures(session: Session, ids: list[uuid.UUID]) -> dict[uuid.UUID, str]:
    """The last failed attempt's reason per endpoint, e.g. ``HTTP 500 at 2026-11-02T…Z``,
    in one query for every endpoint listed."""
    if not ids:
        return {}
    t = table_of(WebhookDelivery)
    failed = sa.and_(t.c.target_id.in_(ids), t.c.last_status == "failed")
    newest = (
        sa.select(t.c.target_id, sa.func.max(t.c.updated_at).label("at"))
        .where(failed)
        .group_by(t.c.target_id)
        .subquery()
    )
    rows = session.execute(
        sa.select(t.c.target_id, t.c.last_code, t.c.last_error, t.c.updated_at)
        .join(newest, sa.and_(t.c.target_id == newest.c.target_id, t.c.updated_at == newest.c.at))
        .where(failed)
    )
    out: dict[uuid.UUID, str] = {}
    for row in rows:
        what = f"HTTP {row.last_code}" if row.last_code else (row.last_error or "failed")
        if row.last_code and row.last_error:
            what = f"{what}: {row.last_error}"
        when = row.updated_at.strftime("%Y-%m-%dT%H:%M:%SZ")
        out[row.target_id] = f"{what[:200]} at {when}"
    return out


def view(
    e: WebhookEndpoint, *, reveal: bool = False, last_failure: str | None = None
) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": str(e.id),
        "url": e.url,
        "status": status(e),
        "last_failure": last_failure,
        "tenant_id": str(e.tenant_id) if e.tenant_id else None,
        "events": e.events,
        "description": e.description,
        "rate_limit": f"{e.rate_limit:g}/s" if e.rate_limit else None,
        "ordered": e.ordered,
        "timeout": f"{e.timeout_s:g}s",
        "headers": shown_headers(e),
        "start_seq": e.start_seq,
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


def add(session: Session, url: str, **options: Any) -> WebhookEndpoint:
    """Register an endpoint (see ``add_with_backlog``)."""
    return add_with_backlog(session, url, **options)[0]


def add_with_backlog(
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
    from_event: int | None = None,
    since: datetime | None = None,
) -> tuple[WebhookEndpoint, int]:
    """Register an endpoint; returns it and the number of earlier events it will get.

    It takes the events created after it; ``from_event`` (an outbox seq) or ``since`` (a
    time) ask for the backlog from then on as well."""
    first = start_seq(session, from_event, since)
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
    e.start_seq = first
    session.add(e)
    session.flush()
    backlog = queue_backlog(session, e)
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
        session,
        "webhook.endpoint_created",
        {"endpoint_id": str(e.id), "url": e.url, "backlog": backlog},
        e.tenant_id,
    )
    return e, backlog


def add_many(session: Session, items: list[dict[str, Any]]) -> list[WebhookEndpoint]:
    """Register many endpoints at once (``add()``'s keywords per item), with the same
    checks, audit rows and events, in one statement per table."""
    if not items:
        return []
    rows_ = session.execute(sa.select(col(Tenant.key), col(Tenant.id))).all()
    keys: dict[str, uuid.UUID] = {row[0]: row[1] for row in rows_}
    rows = []
    first = next_seq(session)
    for item in items:
        fields = dict(item)
        tenant = fields.pop("tenant", None)
        if tenant and tenant not in keys:
            raise NotFound(f"tenant {tenant} not found", "see `mno tenant list`")
        e = _new(fields.pop("url"), keys[tenant] if tenant else None, **fields)
        e.start_seq = first
        rows.append(e)
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
        headers=seal_headers(headers),
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
    stmt = _endpoints(session, tenant, enabled).order_by(col(WebhookEndpoint.created_at))
    return list(session.exec(stmt))


def _endpoints(session: Session, tenant: str | None, enabled: bool | None) -> Any:
    stmt = select(WebhookEndpoint)
    if tenant:
        stmt = stmt.where(WebhookEndpoint.tenant_id == _tenant_id(session, tenant))
    if enabled is not None:
        stmt = stmt.where(WebhookEndpoint.enabled == enabled)
    return stmt


_ORDER = [col(WebhookEndpoint.created_at), col(WebhookEndpoint.id)]


def _views(session: Session, rows: list[WebhookEndpoint]) -> list[dict[str, Any]]:
    failures = last_failures(session, [e.id for e in rows])
    return [view(e, last_failure=failures.get(e.id)) for e in rows]


def page_views(
    session: Session,
    *,
    tenant: str | None = None,
    after: str | None = None,
    limit: int = paging.DEFAULT_LIMIT,
) -> paging.Page[dict[str, Any]]:
    """One page of endpoint views (with their last failures), oldest first, after the
    cursor ``after``."""
    rows, nxt = paging.page(session, _endpoints(session, tenant, None), _ORDER, after, limit)
    return paging.Page(_views(session, rows), nxt)


def stream_views(
    session: Session, *, tenant: str | None = None, after: str | None = None
) -> Iterator[dict[str, Any]]:
    """Every endpoint view, oldest first, read a chunk at a time."""
    for rows in paging.stream(session, _endpoints(session, tenant, None), _ORDER, after):
        yield from _views(session, rows)


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
        e.headers = seal_headers(headers)
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
