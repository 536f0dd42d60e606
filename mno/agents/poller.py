"""The sync poller: runs due connections and delivers queued pushes.

Each tick picks connections whose ``next_run_at`` is due, runs each one through
``mno.sync.engine.run`` (which takes the connection's run lock, so runs never overlap
across hosts), and schedules the next run after ``interval`` plus random jitter so
connections spread out. Connections in recovery mode (3 failed runs, under 24 h) are
skipped and rescheduled. Pushes queued for idle connections are delivered too.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from mno import settings
from mno.agents.base import TickContext, TickResult, Timer
from mno.errors import MnoError
from mno.store import leases
from mno.store.models.sync import SyncConnection, SyncPush
from mno.sync import engine

if TYPE_CHECKING:
    from sqlmodel import Session

DEFAULT_OPTIONS: dict[str, Any] = {"interval": "1h", "jitter": 0.1}


def queue_depth(session: Session) -> tuple[int, int]:
    return leases.depth(session, SyncPush)


def tick(ctx: TickContext) -> TickResult:
    result = TickResult()
    interval = settings.parse_duration(str(ctx.option("interval", "1h")))
    jitter = float(ctx.option("jitter", 0.1))
    with ctx.session(write=False) as session:
        due = engine.due_connections(session, ctx.max_items or ctx.batch_size)
    for cid in due:
        if ctx.stopping():
            break
        result.claimed += 1
        with ctx.session() as session:
            conn = session.get(SyncConnection, cid)
            if conn is None:
                continue
            engine.schedule_next(session, cid, interval, jitter)
            recovering = engine.in_recovery(conn) is not None
        if recovering:
            result.details["skipped_recovery"] = result.details.get("skipped_recovery", 0) + 1
            ctx.item_done("skipped", 0.0, str(cid))
            continue
        with Timer() as t:
            try:
                run = engine.run(cid, owner=ctx.owner, db_url=ctx.db_url)
                ok = run.status != "error"
            except MnoError as exc:  # locked by another host, paused, …
                ctx.log.info("sync %s not run: %s", cid, exc)
                ok = False
        if ok:
            result.done += 1
        else:
            result.failed += 1
        ctx.item_done("done" if ok else "failed", t.ms / 1000, str(cid))
    return result
