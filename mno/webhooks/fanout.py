"""Fan-out: turn new outbox events into deliveries, never skipping one, never twice.

The outbox ``seq`` is taken at INSERT time, not at commit time. On PostgreSQL a
transaction that inserted seq 41 may commit after one that inserted seq 42 was read, so a
plain ``seq > cursor`` read would skip 41 for ever. The fan-out therefore keeps, in one
state row (``webhook_fanout``):

- ``high``: the highest seq it has fanned out;
- ``gaps``: every seq below ``high`` it has not seen yet, with the time it was first
  missed. Each pass reads ``seq > high OR seq IN gaps``, so an event that commits late is
  picked up as soon as it is visible. A gap older than the grace window (default 10 min,
  option ``fanout_gap_grace``) is dropped: it was a rolled-back insert (sequences leave
  holes) or a transaction that outlived the grace, which the store should never have.

Fanning out twice is impossible twice over: the state row is locked (``FOR UPDATE`` on
PostgreSQL, ``BEGIN IMMEDIATE`` on SQLite) for the pass, and deliveries are unique on
(event, target) and inserted with ``ON CONFLICT DO NOTHING``. The state row, the named
consumer cursor (``mno.store.cursors``; it holds the lowest seq still possibly unread,
which the housekeeper's pruning respects) and the delivery rows are written in the one
transaction of the pass.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlmodel import select

from mno import clock
from mno.events import matches
from mno.store import cursors, leases
from mno.store.bulk import Rows
from mno.store.models.core import Event
from mno.store.models.webhooks import NotifyRule, WebhookDelivery, WebhookEndpoint, WebhookFanout
from mno.store.types import table_of

if TYPE_CHECKING:
    from sqlmodel import Session

CONSUMER = "dispatcher"
DEFAULT_GAP_GRACE = timedelta(minutes=10)
# events about a delivery or an endpoint never go to the endpoint they are about
_SELF_EVENTS = {"webhook.delivery_exhausted", "webhook.endpoint_disabled"}


def body_for(event_type: str, at: datetime, payload: dict[str, Any]) -> str:
    """The compact JSON body: ``{"type", "timestamp", "data"}``."""
    return json.dumps(
        {
            "type": event_type,
            "timestamp": at.isoformat().replace("+00:00", "Z"),
            "data": payload,
        },
        separators=(",", ":"),
        ensure_ascii=False,
    )


@dataclass
class FanoutResult:
    events: int = 0
    deliveries: int = 0
    gaps: int = 0
    high: int = 0


def _state(session: Session, name: str) -> Any:
    t = table_of(WebhookFanout)
    stmt = leases.for_update(session, sa.select(t).where(t.c.name == name))
    row = session.execute(stmt).first()
    if row is not None:
        return row
    now = clock.now()
    try:
        with session.begin_nested():
            session.execute(
                sa.insert(t).values(
                    id=uuid.uuid4(), name=name, high=0, gaps={}, created_at=now, updated_at=now
                )
            )
    except IntegrityError:
        pass
    return session.execute(stmt).first()


def fanned_out_high(session: Session, name: str = CONSUMER) -> int:
    """The highest event seq the fan-out has passed (0 before its first pass)."""
    t = table_of(WebhookFanout)
    high = session.execute(sa.select(t.c.high).where(t.c.name == name)).scalar_one_or_none()
    return int(high or 0)


def endpoint_matches(e: Any, event_type: str, tenant_id: Any, payload: dict[str, Any]) -> bool:
    if event_type == "webhook.ping":
        return False
    if e.tenant_id is not None and e.tenant_id != tenant_id:
        return False
    if e.events and not any(matches(p, event_type) for p in e.events):
        return False
    return not (event_type in _SELF_EVENTS and payload.get("endpoint_id") == str(e.id))


def insert_deliveries(session: Session, rows: list[dict[str, Any]]) -> int:
    """Insert delivery rows (dicts of every column); an (event, target) pair is kept once."""
    if not rows:
        return 0
    names = list(rows[0])
    return Rows(session.connection()).insert_columns(
        table_of(WebhookDelivery),
        {k: [r[k] for r in rows] for k in names},
        conflict=["event_id", "target_id"],
    )


def delivery_row(
    *, channel: str, target_id: uuid.UUID, ev: Any, body: str, ordered: bool, now: datetime
) -> dict[str, Any]:
    return {
        "id": uuid.uuid4(),
        "created_at": now,
        "updated_at": now,
        "status": "pending",
        "lease_owner": None,
        "lease_until": None,
        "attempts": 0,
        "next_attempt_at": now,
        "last_error": None,
        "channel": channel,
        "target_id": target_id,
        "event_id": ev.id,
        "seq": ev.seq,
        "event_type": ev.type,
        "event_at": ev.created_at,
        "tenant_id": ev.tenant_id,
        "body": body,
        "ordered": ordered,
        "last_status": None,
        "last_code": None,
        "first_failed_at": None,
        "done_at": None,
    }


def fan_out(
    session: Session,
    *,
    name: str = CONSUMER,
    limit: int = 1000,
    gap_grace: timedelta = DEFAULT_GAP_GRACE,
) -> FanoutResult:
    """One pass, in the caller's (writing) transaction."""
    state = _state(session, name)
    high = int(state.high)
    gaps: dict[str, str] = dict(state.gaps or {})
    events = _unseen_events(session, high, gaps, limit)
    now = clock.now()
    result = FanoutResult()
    if events:
        cols = _delivery_columns(session, events)
        if cols["event_id"]:
            result.deliveries = Rows(session.connection()).insert_columns(
                table_of(WebhookDelivery),
                cols,
                {
                    "created_at": now,
                    "updated_at": now,
                    "next_attempt_at": now,
                    "status": "pending",
                    "attempts": 0,
                },
                conflict=["event_id", "target_id"],
            )
        result.events = len(events)
        high = _note_gaps(events, high, gaps, now)
    gaps = _save_state(session, name, high, gaps, now, gap_grace)
    result.gaps = len(gaps)
    result.high = high
    return result


def _unseen_events(
    session: Session, high: int, gaps: dict[str, str], limit: int
) -> Sequence[sa.Row[Any]]:
    """Up to ``limit`` events above ``high`` or in ``gaps``, in seq order."""
    et = table_of(Event)
    cond = et.c.seq > high
    if gaps:
        cond = sa.or_(cond, et.c.seq.in_([int(g) for g in gaps]))
    return session.execute(
        sa.select(et.c.id, et.c.seq, et.c.type, et.c.tenant_id, et.c.payload, et.c.created_at)
        .where(cond)
        .order_by(et.c.seq)
        .limit(limit)
    ).all()


def _delivery_columns(session: Session, events: Sequence[sa.Row[Any]]) -> dict[str, list[Any]]:
    """The deliveries of ``events`` to the enabled endpoints and notify rules that take
    them, as columns for one bulk insert."""
    # a disabled endpoint gets nothing emitted while it is disabled (as Svix does)
    endpoints = list(
        session.exec(select(WebhookEndpoint).where(WebhookEndpoint.enabled == True))  # noqa: E712
    )
    rules = list(session.exec(select(NotifyRule).where(NotifyRule.enabled == True)))  # noqa: E712
    # an endpoint an app subscribed through Connec never gets the changes that app wrote
    owners = connec_owners(session)
    cols: dict[str, list[Any]] = {
        k: []
        for k in (
            "channel",
            "target_id",
            "event_id",
            "seq",
            "event_type",
            "event_at",
            "tenant_id",
            "body",
            "ordered",
        )
    }

    def add(channel: str, target: Any, ev: Any, body: str, ordered: bool) -> None:
        for k, v in (
            ("channel", channel),
            ("target_id", target),
            ("event_id", ev.id),
            ("seq", ev.seq),
            ("event_type", ev.type),
            ("event_at", ev.created_at),
            ("tenant_id", ev.tenant_id),
            ("body", body),
            ("ordered", ordered),
        ):
            cols[k].append(v)

    # which endpoints and rules take an event depends on its type and tenant (and,
    # for the events about an endpoint, on its payload): matched once per pair
    hooks_for: dict[tuple[str, Any], list[Any]] = {}
    rules_for: dict[tuple[str, Any], list[Any]] = {}
    for ev in events:
        body: str | None = None
        payload = ev.payload or {}
        key = (ev.type, ev.tenant_id)
        hooks = hooks_for.get(key)
        if hooks is None:
            hooks = hooks_for[key] = [
                e for e in endpoints if endpoint_matches(e, ev.type, ev.tenant_id, {})
            ]
            rules_for[key] = [
                r
                for r in rules
                if (r.tenant_id is None or r.tenant_id == ev.tenant_id)
                and any(matches(p, ev.type) for p in r.events)
            ]
        for e in hooks:
            if ev.seq < e.start_seq:  # created before the endpoint (and no backlog asked)
                continue
            if ev.type in _SELF_EVENTS and payload.get("endpoint_id") == str(e.id):
                continue
            if owners and owners.get(e.id) == payload.get("source_app_id", False):
                continue
            body = body or body_for(ev.type, ev.created_at, payload)
            add("webhook", e.id, ev, body, e.ordered)
        for r in rules_for[key]:
            body = body or body_for(ev.type, ev.created_at, payload)
            add("email", r.id, ev, body, False)
    return cols


def connec_owners(session: Session) -> dict[uuid.UUID, str]:
    """Endpoint id → the id (text) of the app that subscribed it through Connec."""
    from mno.store.models.connec import ConnecSubscription

    t = table_of(ConnecSubscription)
    return {
        row.endpoint_id: str(row.app_id)
        for row in session.execute(sa.select(t.c.endpoint_id, t.c.app_id))
    }


def _note_gaps(
    events: Sequence[sa.Row[Any]], high: int, gaps: dict[str, str], now: datetime
) -> int:
    """Close the gaps these events fill and open one for every seq skipped below the new
    high (in ``gaps``, stamped ``now``). Returns the new high."""
    seen = {int(ev.seq) for ev in events}
    for s in seen:
        gaps.pop(str(s), None)
    top = max(seen)
    if top > high:
        stamp = now.isoformat()
        # a fresh consumer starts at the oldest event still in the outbox
        start = high + 1 if high > 0 else min(seen)
        for s in range(start, top):
            if s not in seen:
                gaps[str(s)] = stamp
        high = top
    return high


def _save_state(
    session: Session,
    name: str,
    high: int,
    gaps: dict[str, str],
    now: datetime,
    gap_grace: timedelta,
) -> dict[str, str]:
    """Drop the gaps older than the grace window, then write the state row and advance the
    consumer cursor to the lowest seq still possibly unread. Returns the gaps kept."""
    cutoff = now - gap_grace
    gaps = {s: at for s, at in gaps.items() if datetime.fromisoformat(at) > cutoff}
    t = table_of(WebhookFanout)
    session.execute(
        sa.update(t).where(t.c.name == name).values(high=high, gaps=gaps, updated_at=now)
    )
    low = (min(int(s) for s in gaps) - 1) if gaps else high
    cursors.advance(session, name, low)
    return gaps
