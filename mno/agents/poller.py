"""The sync poller: runs due connections and delivers queued pushes.

Each tick picks connections whose ``next_run_at`` is due, runs each one through
``mno.sync.engine.run`` (which takes the connection's run lock, so runs never overlap
across hosts), and schedules the next run after ``interval`` plus random jitter so
connections spread out. Connections in recovery mode (3 failed runs, under 24 h) are
skipped and rescheduled. Pushes queued for idle connections are delivered too.

On-demand runs (``mno sync run CONNECTION --async``) are ``sync_run`` requests
(``mno.store.requests``): a committed request wakes the pollers at once (``WAKE_ON``),
and each pass first does the queued requests; however many pollers woke, one does each.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from mno import settings
from mno.agents import ondemand
from mno.agents.base import TickContext, TickResult, Timer
from mno.errors import MnoError
from mno.store import leases, requests
from mno.store.models.sync import SyncConnection, SyncPush
from mno.sync import engine

if TYPE_CHECKING:
    from sqlmodel import Session

DEFAULT_OPTIONS: dict[str, Any] = {"interval": "1h", "jitter": 0.1}
REQUESTS = "sync_run"  # the kind of on-demand request the poller serves
WAKE_ON = (requests.channel(REQUESTS),)


def queue_depth(session: Session) -> tuple[int, int]:
    return leases.depth(session, SyncPush)


def run_requested(ctx: TickContext, args: dict[str, Any]) -> dict[str, Any]:
    """Do a run queued by ``mno sync run --async``; the run as ``mno sync run`` shows it,
    with ``error`` when it failed."""
    from mno.store.db import session_scope
    from mno.sync import views

    run = engine.run(
        str(args["connection"]),
        entity=args.get("entity"),
        full=bool(args.get("full")),
        force=bool(args.get("force")),
        owner=ctx.owner,
        db_url=ctx.db_url,
    )
    with session_scope(ctx.db_url, write=False) as s:
        view = views.run_view(s, run)
    if run.status == "error":
        view["error"] = run.error or "the run failed"
    return view


def tick(ctx: TickContext) -> TickResult:
    result = TickResult()
    if not ctx.stopping():
        asked = ondemand.serve(ctx, REQUESTS, lambda args: run_requested(ctx, args))
        result.add(asked)
        if asked.claimed:
            result.details["requests"] = asked.claimed
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
