"""The housekeeper: retention and tidying, in batches.

Each pass:

- prunes outbox events older than ``retention.events`` (default 30d) that every outbox
  consumer has read (below the lowest ``outbox_cursor``; with no consumer registered, age
  alone decides);
- prunes audit rows older than ``retention.audit`` (default 365d; ``0`` keeps them forever);
- prunes heartbeats older than ``retention.heartbeats`` (default 1d), and agent tick
  history and finished on-demand requests (``agent_request``) older than
  ``retention.ticks`` (default 7d);
- prunes sync runs that finished more than ``retention.sync_runs`` ago (default 90d) with
  their change rows and conflicts, and sync pushes that ended more than
  ``retention.sync_pushes`` ago (default 7d), keeping what rollback and pending pushes
  need (``mno.sync.retention``);
- removes the data volumes Nex restores replaced once ``retention.previous_volumes`` has
  passed since the restore (default 7d; ``mno.nex.restores.remove_expired_previous``);
- removes retired OIDC signing keys once their tokens have expired, and expired OIDC
  tokens and codes (``mno.sso.keys.prune``, ``mno.sso.oidc_tokens.prune_expired``);
- takes back expired leases on every work table (any table with ``lease_until``).

Retention comes from the platform YAML (``retention:``); ``options`` in agents.yaml may
override any of them for this agent.
"""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING, Any, cast

import sqlalchemy as sa
from sqlmodel import SQLModel

from mno import clock, platform
from mno.agents.base import TickContext, TickResult
from mno.settings import parse_duration
from mno.store import cursors, leases
from mno.store.models import load_all
from mno.store.models.agents import AgentTick, Heartbeat, WorkRequest
from mno.store.models.core import AuditEntry, Event
from mno.store.types import table_of
from mno.sync import retention

if TYPE_CHECKING:
    from sqlalchemy.engine import CursorResult
    from sqlmodel import Session

DEFAULT_OPTIONS: dict[str, Any] = {}


def _retention(ctx: TickContext) -> dict[str, timedelta]:
    cfg = platform.load().retention
    values = {
        "events": cfg.events,
        "audit": cfg.audit,
        "heartbeats": cfg.heartbeats,
        "ticks": cfg.ticks,
        "sync_runs": cfg.sync_runs,
        "sync_pushes": cfg.sync_pushes,
    }
    for key in values:
        if key in ctx.options:
            values[key] = ctx.options[key]
    return {k: parse_duration(v) for k, v in values.items()}


def _delete_batch(session: Session, table: sa.Table, key: Any, where: Any, limit: int) -> int:
    pick = sa.select(key).where(where).limit(limit).scalar_subquery()
    deleted = cast("CursorResult[Any]", session.execute(sa.delete(table).where(key.in_(pick))))
    return deleted.rowcount or 0


def _prune(
    ctx: TickContext, table: sa.Table, key: Any, where: Any, result: TickResult, name: str
) -> None:
    total = 0
    while not ctx.stopping():
        with ctx.session() as s:
            n = _delete_batch(s, table, key, where, ctx.batch_size)
        total += n
        if n < ctx.batch_size:
            break
    result.details[name] = total
    result.done += total


def work_tables() -> list[sa.Table]:
    load_all()
    return [
        t for t in SQLModel.metadata.sorted_tables if "lease_until" in t.c and "lease_owner" in t.c
    ]


def tick(ctx: TickContext) -> TickResult:
    result = TickResult()
    keep = _retention(ctx)
    now = clock.now()

    events = table_of(Event)
    if keep["events"].total_seconds() > 0:
        with ctx.session(write=False) as s:
            floor = cursors.minimum(s)
        where = events.c.created_at < now - keep["events"]
        if floor is not None:
            where = sa.and_(where, events.c.seq <= floor)
        _prune(ctx, events, events.c.seq, where, result, "events")

    audit = table_of(AuditEntry)
    if keep["audit"].total_seconds() > 0:
        _prune(ctx, audit, audit.c.id, audit.c.at < now - keep["audit"], result, "audit")

    beats = table_of(Heartbeat)
    _prune(
        ctx, beats, beats.c.id, beats.c.last_beat < now - keep["heartbeats"], result, "heartbeats"
    )
    ticks = table_of(AgentTick)
    if keep["ticks"].total_seconds() > 0:
        _prune(ctx, ticks, ticks.c.id, ticks.c.started_at < now - keep["ticks"], result, "ticks")
        asked = table_of(WorkRequest)
        old = asked.c.finished_at < now - keep["ticks"]
        _prune(ctx, asked, asked.c.id, old, result, "requests")

    for name, prune in (
        ("sync_pushes", retention.prune_pushes),
        ("sync_runs", retention.prune_runs),
    ):
        total = 0
        if keep[name].total_seconds() > 0:
            while not ctx.stopping():
                with ctx.session() as s:
                    n = prune(s, now - keep[name], ctx.batch_size)
                total += n
                if not n:
                    break
        result.details[name] = total
        result.done += total

    from mno.nex import restores

    volumes = restores.remove_expired_previous(ctx.db_url, ctx.batch_size)
    result.details["previous_volumes"] = len(volumes)
    result.done += len(volumes)

    from mno.sso import keys as sso_keys
    from mno.sso import oidc_tokens

    with ctx.session() as s:  # retired signing keys past their tokens, expired tokens
        tidied = sso_keys.prune(s) + oidc_tokens.prune_expired(s, ctx.batch_size)
    if tidied:
        result.details["sso"] = tidied
        result.done += tidied

    taken = 0
    with ctx.session() as s:
        for table in work_tables():
            taken += leases.take_back_expired(s, table)
    result.details["leases"] = taken
    if any(result.details.values()):
        ctx.log.info(
            "pruned %(events)s events, %(audit)s audit rows, %(heartbeats)s heartbeats, "
            "%(ticks)s ticks, %(sync_runs)s sync run rows, %(sync_pushes)s sync pushes, "
            "%(previous_volumes)s previous volumes; took back %(leases)s expired leases",
            {
                k: result.details.get(k, 0)
                for k in (
                    "events",
                    "audit",
                    "heartbeats",
                    "ticks",
                    "sync_runs",
                    "sync_pushes",
                    "previous_volumes",
                    "leases",
                )
            },
            extra={"agent": ctx.agent},
        )
    return result
