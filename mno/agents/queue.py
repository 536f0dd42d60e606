"""The usual body of a queue agent's ``tick``: claim, handle each item, complete in batches.

``work_queue(ctx, Model, handle)`` loops until the queue is empty, ``ctx.max_items`` (else
``ctx.batch_size``) items were claimed, or a warm stop is asked:

1. claims up to ``ctx.batch_size`` due rows in one short transaction (``leases.claim``);
2. calls ``handle(item)`` for each, on up to ``ctx.concurrency`` threads. ``item`` is a
   dict of the ``returning`` columns plus ``id`` and ``attempts``. A handler does its work
   through domain functions (in its own sessions) and must be idempotent: delivery is at
   least once. An exception marks only that item: it is retried with ``leases.backoff``,
   or, once ``max_attempts`` is reached, set to ``failed_status`` with its error;
3. completes every handled item in one transaction (fenced on the lease owner). When
   ``finish(session, items)`` is given, it runs in that same transaction with the items
   that were still ours, so a side effect and the completion commit together;
4. on a warm stop, items not yet started are released (their lease cleared) at once.

With ``stream=True`` (for slow items, such as the provisioner's Docker work) there is no
barrier between batches: each item is settled as soon as it finishes, and the settling
transaction claims more so that the threads never wait for the slowest item of a batch.
At most ``min(batch_size, concurrency)`` items are claimed at once, each on its own
thread, so a slow item holds one slot and nothing queues behind it. While items run, a
wake-up (``ctx.wake``) or the agent's interval passing makes the pass claim newly due
work into the free slots. The pass goes on until nothing is due and nothing runs, or
``ctx.max_items`` (else 100 batches) were claimed.

Each item is reported through ``ctx.item_done`` (logs and metrics).
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from mno.agents.base import TickContext, TickResult
from mno.store import leases

if TYPE_CHECKING:
    from sqlmodel import Session

Item = dict[str, Any]
_NOT_STARTED = object()
_LOOK_EVERY_S = 0.2  # how often a streaming pass checks for a wake-up while items run


def work_queue(
    ctx: TickContext,
    model: Any,
    handle: Callable[[Item], Any],
    *,
    ready: Sequence[str] = ("pending",),
    returning: Sequence[str] = (),
    where: Any = None,
    order_by: Any = None,
    retry_base: timedelta = timedelta(seconds=5),
    retry_cap: timedelta = timedelta(hours=1),
    max_attempts: int | None = None,
    done_status: str = "done",
    failed_status: str = "failed",
    retry_status: str = "pending",
    finish: Callable[[Session, list[Item]], None] | None = None,
    stream: bool = False,
) -> TickResult:
    """One pass over a work table; see the module docstring."""
    columns = list(dict.fromkeys(["id", "attempts", *returning]))
    result = TickResult()
    limit = ctx.max_items or ctx.batch_size
    pool = ThreadPoolExecutor(ctx.concurrency) if ctx.concurrency > 1 else None
    settle = functools.partial(
        _settle,
        ctx,
        model,
        retry_base=retry_base,
        retry_cap=retry_cap,
        max_attempts=max_attempts,
        done_status=done_status,
        failed_status=failed_status,
        retry_status=retry_status,
        finish=finish,
    )

    def claim(session: Session, n: int) -> list[Any]:
        return leases.claim(
            session,
            model,
            ctx.owner,
            n,
            ctx.lease_for,
            ready=ready,
            where=where,
            order_by=order_by,
            returning=columns,
        )

    if stream and pool is not None:
        try:
            limit = ctx.max_items or 100 * ctx.batch_size
            _stream(ctx, handle, claim, columns, result, limit, pool, settle)
        finally:
            pool.shutdown(wait=True)
        return result

    try:
        _batches(ctx, model, handle, claim, columns, result, limit, pool, settle)
    finally:
        if pool is not None:
            pool.shutdown(wait=True)
    return result


def _batches(
    ctx: TickContext,
    model: Any,
    handle: Callable[[Item], Any],
    claim: Callable[[Session, int], list[Any]],
    columns: list[str],
    result: TickResult,
    limit: int,
    pool: ThreadPoolExecutor | None,
    settle: Callable[..., list[Any] | None],
) -> None:
    """Claim a batch, handle all its items, settle them (claiming the next batch in the
    same transaction); until the queue is empty, ``limit`` is reached or a warm stop."""
    rows: list[Any] | None = None  # claimed by the previous batch's settling transaction
    while True:
        if ctx.stopping() or result.claimed >= limit:
            if rows:  # claimed ahead but not started: give them back
                with ctx.session() as s:
                    ids = [r if len(columns) == 1 else r[0] for r in rows]
                    leases.release(s, model, ids, ctx.owner)
            break
        if rows is None:
            with ctx.session() as s:
                rows = claim(s, min(ctx.batch_size, limit - result.claimed))
        if not rows:
            break
        items = [dict(zip(columns, r if len(columns) > 1 else (r,), strict=True)) for r in rows]
        result.claimed += len(items)

        def one(item: Item) -> tuple[Any, float]:
            return _run_one(ctx, handle, item)

        outcomes = list(pool.map(one, items) if pool is not None else map(one, items))
        remaining = limit - result.claimed

        def claim_next(session: Session, remaining: int = remaining) -> list[Any] | None:
            if remaining <= 0 or ctx.stopping():
                return None
            return claim(session, min(ctx.batch_size, remaining))

        rows = settle(items, outcomes, result, claim_next=claim_next)
        if rows == []:
            break


def _stream(
    ctx: TickContext,
    handle: Callable[[Item], Any],
    claim: Callable[[Session, int], list[Any]],
    columns: list[str],
    result: TickResult,
    limit: int,
    pool: ThreadPoolExecutor,
    settle: Callable[..., list[Any] | None],
) -> None:
    """Keep up to ``batch_size`` items claimed and the pool busy; settle each finished
    item (with whatever else finished meanwhile) and claim its replacement in one
    transaction."""
    inflight: dict[Future[tuple[Any, float]], Item] = {}
    exhausted = False
    slots = max(1, min(ctx.batch_size, ctx.concurrency))
    looked = time.monotonic()

    def submit(rows: list[Any]) -> None:
        for r in rows:
            item = dict(zip(columns, r if len(columns) > 1 else (r,), strict=True))
            result.claimed += 1
            inflight[pool.submit(_run_one, ctx, handle, item)] = item

    def room() -> int:
        return min(slots - len(inflight), limit - result.claimed)

    def look_again() -> bool:
        """New work may be due: a wake-up arrived, or an interval passed since the last
        look (retries coming due while a slow item runs)."""
        if ctx.woken():
            return True
        return ctx.interval_s is not None and time.monotonic() - looked >= ctx.interval_s

    with ctx.session() as s:
        want = room()
        first = claim(s, want)
    exhausted = len(first) < want
    submit(first)
    while inflight:
        finished, _ = wait(list(inflight), timeout=_LOOK_EVERY_S, return_when=FIRST_COMPLETED)
        if exhausted and room() > 0 and not ctx.stopping() and look_again():
            exhausted = False
        if not finished:
            if exhausted or room() <= 0 or ctx.stopping():
                continue
            with ctx.session() as s:  # a free slot and new work: start it now
                want = room()
                rows = claim(s, want)
            looked = time.monotonic()
            exhausted = len(rows) < want
            submit(rows)
            continue
        items = [inflight.pop(f) for f in finished]
        outcomes = [f.result() for f in finished]
        want = room()
        if exhausted or ctx.stopping():
            want = 0
        elif want > 0:
            looked = time.monotonic()

        def claim_next(session: Session, want: int = want) -> list[Any] | None:
            return claim(session, want) if want > 0 and not ctx.stopping() else None

        rows = settle(items, outcomes, result, claim_next=claim_next) or []
        if want > 0 and len(rows) < want:
            exhausted = True  # the queue is empty for now: the next tick looks again
        submit(rows)


def _run_one(ctx: TickContext, handle: Callable[[Item], Any], item: Item) -> tuple[Any, float]:
    """(None when handled, the exception when it failed, _NOT_STARTED on a warm stop;
    seconds taken)."""
    if ctx.stopping():
        return _NOT_STARTED, 0.0
    started = time.perf_counter()
    try:
        handle(item)
    except Exception as exc:  # recorded on the item (retry or failed); never ends the pass
        return exc, time.perf_counter() - started
    return None, time.perf_counter() - started


def _settle(
    ctx: TickContext,
    model: Any,
    items: list[Item],
    outcomes: list[tuple[Any, float]],
    result: TickResult,
    *,
    retry_base: timedelta,
    retry_cap: timedelta,
    max_attempts: int | None,
    done_status: str,
    failed_status: str,
    retry_status: str,
    finish: Callable[[Session, list[Item]], None] | None,
    claim_next: Callable[[Session], list[Any] | None] | None = None,
) -> list[Any] | None:
    """Record a batch's outcomes in one transaction and, in the same transaction, claim the
    next batch (one round trip fewer per batch, which is what lets a second process add
    throughput instead of queueing on the first's commits)."""
    pairs = list(zip(items, outcomes, strict=True))
    done = [i for i, (o, _) in pairs if o is None]
    unstarted = [i["id"] for i, (o, _) in pairs if o is _NOT_STARTED]
    errors = [(i, o, secs) for i, (o, secs) in pairs if isinstance(o, BaseException)]
    seconds = {i["id"]: secs for i, (_, secs) in pairs}
    with ctx.session() as s:
        if done:
            ours = set(
                leases.complete_ids(
                    s, model, [i["id"] for i in done], ctx.owner, status=done_status
                )
            )
            kept = [i for i in done if i["id"] in ours]
            if finish is not None and kept:
                finish(s, kept)
            result.done += len(kept)
        for item, exc, _ in errors:
            message = f"{type(exc).__name__}: {exc}"
            if max_attempts is not None and item["attempts"] >= max_attempts:
                leases.complete(
                    s,
                    model,
                    [item["id"]],
                    ctx.owner,
                    status=failed_status,
                    values={"last_error": message[:2000]},
                )
                result.failed += 1
            else:
                delay = leases.backoff(item["attempts"], retry_base, retry_cap)
                leases.retry(s, model, item["id"], ctx.owner, delay, message, status=retry_status)
                result.retried += 1
        if unstarted:
            leases.release(s, model, unstarted, ctx.owner)
            result.details["released"] = result.details.get("released", 0) + len(unstarted)
        next_rows = claim_next(s) if claim_next is not None else None
    for item in done:
        ctx.item_done("done", seconds[item["id"]], str(item["id"]))
    for item, exc, secs in errors:
        outcome = (
            "failed" if max_attempts is not None and item["attempts"] >= max_attempts else "retried"
        )
        ctx.item_done(outcome, secs, str(item["id"]))
        if outcome == "failed" or ctx.log.isEnabledFor(logging.DEBUG):
            ctx.log.warning(
                "item %s %s: %s: %s",
                item["id"],
                outcome,
                type(exc).__name__,
                exc,
                extra={
                    "agent": ctx.agent,
                    "item": str(item["id"]),
                    "outcome": outcome,
                    "duration_ms": round(secs * 1000, 2),
                },
            )
    return next_rows
