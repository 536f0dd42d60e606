"""What ``mno agents status`` shows: schedules, live processes, last ticks, queue depth."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.exc import SQLAlchemyError

from mno import clock
from mno.agents import registry
from mno.agents.config import AgentConfig, AgentsFile
from mno.store.db import session_scope
from mno.store.models.agents import AgentTick, Heartbeat, ProbeEffect, ProbeItem
from mno.store.types import table_of

if TYPE_CHECKING:
    from sqlmodel import Session

MISSED_BEATS = 3


def collect(cfg: AgentsFile, db_url: str | None = None) -> dict[str, Any]:
    names = list(dict.fromkeys([*cfg.agents, *registry.AGENTS]))
    now = clock.now()
    with session_scope(db_url, write=False) as s:
        beats = s.execute(sa.select(table_of(Heartbeat))).mappings().all()
        t = table_of(AgentTick)
        latest = (
            sa.select(t.c.agent, sa.func.max(t.c.started_at).label("at"))
            .group_by(t.c.agent)
            .subquery()
        )
        last = {
            row.agent: row
            for row in s.execute(
                sa.select(t).join(
                    latest, sa.and_(t.c.agent == latest.c.agent, t.c.started_at == latest.c.at)
                )
            )
        }
        agents = []
        for name in names:
            agent_cfg = cfg.agents.get(name) or AgentConfig(name=name)
            due = leased = None
            if name in registry.AGENTS:
                depth_fn = getattr(registry.load(name), "queue_depth", None)
                if depth_fn is not None:
                    try:  # one agent's broken depth query does not hide the others
                        with s.begin_nested():
                            due, leased = depth_fn(s)
                    except SQLAlchemyError:  # shown as unknown depth
                        due = leased = None
            tick = last.get(name)
            agents.append(
                {
                    "agent": name,
                    "enabled": agent_cfg.enabled if name in cfg.agents else False,
                    "available": name in registry.AGENTS,
                    "schedule": agent_cfg.schedule_text(),
                    "last_tick": tick.started_at if tick else None,
                    "last_outcome": (tick.outcome + (f": {tick.error}" if tick.error else ""))
                    if tick
                    else None,
                    "last_done": tick.done if tick else None,
                    "due": due,
                    "leased": leased,
                }
            )
    processes = []
    for b in beats:
        stale = (now - b["last_beat"]).total_seconds() > MISSED_BEATS * b["interval_s"]
        processes.append(
            {
                "host": b["host"],
                "pid": b["pid"],
                "owner": b["owner"],
                "agents": b["agents"],
                "since": b["started_at"],
                "last_beat": b["last_beat"],
                "state": "stale" if stale else "live",
            }
        )
    return {"agents": agents, "processes": processes}


def probe_counts(session: Session) -> dict[str, Any]:
    items = table_of(ProbeItem)
    by_status = dict(
        session.execute(sa.select(items.c.status, sa.func.count()).group_by(items.c.status)).all()
    )
    effects = table_of(ProbeEffect)
    total = session.execute(sa.select(sa.func.count()).select_from(effects)).scalar_one()
    distinct = session.execute(
        sa.select(sa.func.count(sa.distinct(effects.c.item_id)))
    ).scalar_one()
    return {
        "items": {k: int(v) for k, v in by_status.items()},
        "effects": int(total),
        "distinct_items_done": int(distinct),
    }


def live(session: Session, agent: str) -> bool:
    """True when a process that runs ``agent`` beat within its last few heartbeats."""
    now = clock.now()
    for b in session.execute(sa.select(table_of(Heartbeat))).mappings():
        if agent not in (b["agents"] or []):
            continue
        last = b["last_beat"]
        if last.tzinfo is None:
            last = last.replace(tzinfo=now.tzinfo)
        if (now - last).total_seconds() <= MISSED_BEATS * b["interval_s"]:
            return True
    return False
