"""The biller: a singleton that bills each period once it has closed everywhere, issues the
drafts when the policy says so, flags overdue invoices (arrears, optional suspension) and
writes expired prepaid credit to the ledger.

Every plan interval is billed by the monthly run (see ``mno.billing.run``): the run of a
month bills the periods that close in it and the in-advance charges of the next month.

A run is idempotent, so a tick that repeats work (after a crash or a failover) creates
nothing new; the run lock refuses a concurrent run of the same period.

On-demand runs (``mno billing run --async``) are ``billing_run`` requests
(``mno.store.requests``): a committed request wakes the biller at once (``WAKE_ON``), and
each pass first does the queued requests, one at a time, each once across the fleet.
"""

from __future__ import annotations

import time
from typing import Any

import sqlalchemy as sa
from sqlmodel import col

from mno import clock, platform
from mno.agents import ondemand
from mno.agents.base import TickContext, TickResult
from mno.billing import bundles, invoices, ledger, subscriptions
from mno.billing import run as billing
from mno.billing.periods import last_closed_period
from mno.errors import Conflict
from mno.store import requests
from mno.store.models.billing import BillingRun, Invoice

SINGLETON = True
DEFAULT_OPTIONS: dict[str, Any] = {}
REQUESTS = "billing_run"  # the kind of on-demand request the biller serves
WAKE_ON = (requests.channel(REQUESTS),)


def due_period(now: Any, after_hours: int) -> str:
    """The most recent month that has closed in every timezone (plus the grace hours): the
    same period ``mno billing run`` bills when no ``--period`` is given."""
    return last_closed_period(now, after_hours)


def tick(ctx: TickContext) -> TickResult:
    started = time.perf_counter()
    cfg = platform.load().billing
    period = due_period(clock.now(), cfg.run_after_hours)
    result = TickResult(details={"period": period})
    if not ctx.stopping():
        asked = ondemand.serve(
            ctx, REQUESTS, lambda args: billing.run_requested(args, url=ctx.db_url), concurrency=1
        )
        result.add(asked)
        if asked.claimed:
            result.details["requests"] = asked.claimed
    with ctx.session(write=False) as s:
        ran = s.execute(
            sa.select(col(BillingRun.id)).where(
                col(BillingRun.period) == period,
                col(BillingRun.tenant_key).is_(None),
                col(BillingRun.status).in_(["done", "failed"]),
            )
        ).first()
    if ran is None and not ctx.stopping():
        try:
            out = billing.run(period, url=ctx.db_url)
            result.done += out.invoices
            result.failed += len(out.failed)
            result.details["run"] = out.as_dict()
        except Conflict as exc:
            result.details["run"] = str(exc)
    with ctx.session() as s:
        result.details["trials_ended"] = subscriptions.end_trials(s, clock.now())
        result.details["bundles_ended"] = bundles.end_due(s, clock.now())
    if cfg.auto_issue and not ctx.stopping():
        with ctx.session(write=False) as s:
            drafts = list(
                s.execute(
                    sa.select(col(Invoice.id))
                    .where(col(Invoice.status) == "draft", col(Invoice.kind) == "period")
                    .limit(ctx.batch_size * 10)
                ).scalars()
            )
        for inv_id in drafts:
            if ctx.stopping():
                break
            t0 = time.perf_counter()
            with ctx.session() as s:
                invoices.issue(s, str(inv_id), due_days=cfg.due_days)
            ctx.item_done("done", time.perf_counter() - t0, str(inv_id))
        result.details["issued"] = len(drafts)
    with ctx.session() as s:
        result.details["overdue"] = invoices.flag_overdue(
            s, grace_days=cfg.arrears_after_days, suspend=cfg.suspend_in_arrears
        )
    with ctx.session() as s:
        result.details["credits_expired"] = ledger.expire_credits(s)
    result.duration_ms = (time.perf_counter() - started) * 1000
    return result
