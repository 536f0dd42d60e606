"""The probe agent: handles ``agent_probe_item`` rows and records a side effect for each.

It proves a deployment processes each item exactly once across hosts (``mno agents probe
enqueue N``, then watch ``mno agents status``), and it is the work the runtime's own tests
and benchmark use. An item may be told to fail its first attempts (``fail_times``) or to
take some time (``work_ms``).
"""

from __future__ import annotations

import time
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from mno import clock
from mno.agents.base import TickContext, TickResult
from mno.store import leases
from mno.store.models.agents import ProbeEffect, ProbeItem
from mno.store.types import new_id

if TYPE_CHECKING:
    from sqlmodel import Session


def enqueue(
    session: Session, count: int, *, batch: str = "default", fail_times: int = 0, work_ms: int = 0
) -> int:
    from mno.errors import BadInput

    if not 1 <= count <= 1_000_000:
        raise BadInput("count must be between 1 and 1,000,000")
    now = clock.now()
    rows = [
        {
            "id": new_id(),
            "created_at": now,
            "updated_at": now,
            "status": "pending",
            "attempts": 0,
            "next_attempt_at": now,
            "batch": batch,
            "fail_times": fail_times,
            "work_ms": work_ms,
        }
        for _ in range(count)
    ]
    for start in range(0, len(rows), 5000):
        session.execute(sa.insert(ProbeItem), rows[start : start + 5000])
    return count


def queue_depth(session: Session) -> tuple[int, int]:
    return leases.depth(session, ProbeItem)


def tick(ctx: TickContext) -> TickResult:
    result = TickResult()
    limit = ctx.max_items or ctx.batch_size
    while not ctx.stopping() and result.claimed < limit:
        with ctx.session() as s:
            claimed = leases.claim(
                s,
                ProbeItem,
                ctx.owner,
                min(ctx.batch_size, limit - result.claimed),
                ctx.lease_for,
                returning=("id", "attempts", "fail_times", "work_ms"),
            )
        if not claimed:
            break
        result.claimed += len(claimed)
        done: list[Any] = []
        failed: list[tuple[Any, int]] = []
        for index, (item_id, attempts, fail_times, work_ms) in enumerate(claimed):
            if ctx.stopping() and ctx.option("release_on_stop", True):
                with ctx.session() as s:
                    leases.release(s, ProbeItem, [c[0] for c in claimed[index:]], ctx.owner)
                break
            started = time.perf_counter()
            if work_ms:
                time.sleep(work_ms / 1000)
            if attempts <= fail_times:
                failed.append((item_id, attempts))
                ctx.item_done("retried", time.perf_counter() - started, str(item_id))
            else:
                done.append(item_id)
                ctx.item_done("done", time.perf_counter() - started, str(item_id))
        with ctx.session() as s:
            if done:
                s.execute(
                    sa.insert(ProbeEffect),
                    [
                        {
                            "id": ProbeEffect().id,
                            "item_id": i,
                            "owner": ctx.owner,
                            "created_at": ProbeEffect().created_at,
                            "updated_at": ProbeEffect().created_at,
                        }
                        for i in done
                    ],
                )
                result.done += leases.complete(s, ProbeItem, done, ctx.owner)
            for item_id, attempts in failed:
                leases.retry(
                    s,
                    ProbeItem,
                    item_id,
                    ctx.owner,
                    leases.backoff(attempts, timedelta(milliseconds=100), timedelta(seconds=2)),
                    "probe asked to fail",
                )
                result.retried += 1
    return result
