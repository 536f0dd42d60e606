"""The dispatcher agent: fans outbox events out to webhook endpoints and email rules, then
delivers due deliveries (signed HTTP POSTs over a keep-alive pool; emails over SMTP).

Each pass: fan out new events (one transaction per chunk, cursor included), then loop
claim → send concurrently → record outcomes in one transaction per batch, until nothing is
due, ``max_items`` is reached or a warm stop is asked. Options (``agents.yaml``):
``retry_schedule``, ``jitter``, ``disable_after``, ``fanout_gap_grace``, ``fanout_batch``.
"""

from __future__ import annotations

import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from mno import settings
from mno.agents.base import TickContext, TickResult

if TYPE_CHECKING:
    from sqlmodel import Session

DEFAULT_OPTIONS: dict[str, Any] = {
    "retry_schedule": ["5s", "5m", "30m", "2h", "5h", "10h", "10h"],
    "jitter": 0.2,
    "disable_after": "5d",
    "fanout_gap_grace": "10m",
    "fanout_batch": 2000,
}

FANOUT_EVERY_S = 0.5
_mail_pool: ThreadPoolExecutor | None = None


def queue_depth(session: Session) -> tuple[int, int]:
    from mno.store import leases
    from mno.store.models.webhooks import WebhookDelivery

    return leases.depth(session, WebhookDelivery)


def fan_out_once(ctx: TickContext) -> tuple[int, bool]:
    """One fan-out chunk in its own transaction: (deliveries made, more events waiting)."""
    from mno.webhooks import fanout

    grace = settings.parse_duration(ctx.option("fanout_gap_grace", "10m"))
    limit = int(ctx.option("fanout_batch", 2000))
    with ctx.session() as s:
        res = fanout.fan_out(s, limit=limit, gap_grace=grace)
    return res.deliveries, res.events >= limit


def fan_out_all(ctx: TickContext) -> int:
    total, more = fan_out_once(ctx)
    while more and not ctx.stopping():
        n, more = fan_out_once(ctx)
        total += n
    return total


def _targets(ctx: TickContext, ids: set[Any], cache: dict[Any, Any]) -> None:
    from sqlmodel import col, select

    from mno.store.models.webhooks import WebhookEndpoint
    from mno.webhooks import endpoints

    missing = [i for i in ids if i not in cache]
    if not missing:
        return
    with ctx.session(write=False) as s:
        for e in s.exec(select(WebhookEndpoint).where(col(WebhookEndpoint.id).in_(missing))):
            cache[e.id] = (e.url, endpoints.active_secrets(e), e.timeout_s, dict(e.headers))


def _send_emails(ctx: TickContext, rows: list[tuple[Any, ...]]) -> list[Any]:
    from mno import clock, mail
    from mno.notify import rules
    from mno.webhooks.delivery import Outcome

    global _mail_pool
    prepared: list[tuple[Outcome, tuple[str, str, str] | None]] = []
    with ctx.session(write=False) as s:
        for row in rows:
            out = Outcome(delivery_id=row[0], at=clock.now())
            try:
                prepared.append((out, rules.prepare(s, row[2], row[5], row[7])))
            except Exception as exc:  # noqa: BLE001 - one bad item fails only itself
                out.success, out.error_class, out.error = False, type(exc).__name__, str(exc)
                prepared.append((out, None))
    cfg = mail.config()

    def send(item: tuple[Outcome, tuple[str, str, str] | None]) -> Outcome:
        out, msg = item
        if msg is None:
            return out
        start = time.perf_counter()
        try:
            if cfg is None:
                raise RuntimeError("email is not configured (profile smtp section)")
            mail.send(msg[0], msg[1], msg[2], cfg=cfg)
            out.success = True
            out.response = f"sent to {msg[0]}"
        except Exception as exc:  # noqa: BLE001
            out.success, out.error_class, out.error = False, type(exc).__name__, str(exc)
        out.latency_ms = (time.perf_counter() - start) * 1000
        return out

    if _mail_pool is None:
        _mail_pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="mail")
    return list(_mail_pool.map(send, prepared))


@dataclass
class InFlight:
    """A claimed batch being sent: its rows and the futures/outcomes of each send."""

    by_id: dict[Any, tuple[Any, ...]]
    futures: list[Any]
    outcomes: list[Any]

    def results(self) -> list[Any]:
        return self.outcomes + [f.result() for f in self.futures]


def start_batch(
    ctx: TickContext, claimed: list[tuple[Any, ...]], cache: dict[Any, Any]
) -> InFlight:
    """Start sending one claimed batch (webhooks in the pool, emails now)."""
    from mno import clock
    from mno.webhooks.delivery import Job, Outcome, sender

    by_id = {row[0]: row for row in claimed}
    hooks = [r for r in claimed if r[1] == "webhook"]
    mails = [r for r in claimed if r[1] == "email"]
    _targets(ctx, {r[2] for r in hooks}, cache)
    outcomes: list[Outcome] = []
    jobs: list[Job] = []
    for r in hooks:
        target = cache.get(r[2])
        if target is None:  # deleted meanwhile
            outcomes.append(
                Outcome(
                    delivery_id=r[0],
                    at=clock.now(),
                    success=False,
                    error_class="endpoint_gone",
                    error="endpoint deleted",
                )
            )
            continue
        url, secrets, timeout_s, headers = target
        jobs.append(Job(r[0], url, str(r[3]), r[5], secrets, timeout_s, headers))
    futures = sender(ctx.concurrency).submit_all(jobs)
    if mails:
        outcomes += _send_emails(ctx, mails)
    return InFlight(by_id, futures, outcomes)


def tick(ctx: TickContext) -> TickResult:
    """Pipeline: while batch N is on the wire, fan out the next chunk of events (when a
    backlog remains, or every ``FANOUT_EVERY_S``), claim batch N+1 and then record N."""
    from mno.webhooks import deliveries
    from mno.webhooks.retry import Policy

    started = time.perf_counter()
    policy = Policy.from_options(ctx.options)
    result = TickResult()
    fanned, more = fan_out_once(ctx)
    last_fanout = time.monotonic()
    cache: dict[Any, Any] = {}
    details = {"fanned_out": fanned, "succeeded": 0, "exhausted": 0, "disabled": 0}
    flying: InFlight | None = None

    def claim() -> list[tuple[Any, ...]]:
        if ctx.stopping() or (ctx.max_items is not None and result.claimed >= ctx.max_items):
            return []
        with ctx.session() as s:
            return deliveries.claim(s, ctx.owner, ctx.batch_size, ctx.lease_for)

    while True:
        claimed: list[tuple[Any, ...]] = []
        if flying is not None and (more or time.monotonic() - last_fanout > FANOUT_EVERY_S):
            n, more = fan_out_once(ctx)
            details["fanned_out"] += n
            last_fanout = time.monotonic()
        claimed = claim()
        if flying is not None:
            outcomes = flying.results()
            with ctx.session() as s:
                rec = deliveries.record(s, ctx.owner, flying.by_id, outcomes, policy)
            result.done += rec.succeeded
            result.retried += rec.retried
            result.failed += rec.exhausted
            details["succeeded"] += rec.succeeded
            details["exhausted"] += rec.exhausted
            details["disabled"] += rec.disabled
            if rec.disabled:
                cache.clear()
            flying = None
            if not claimed:
                # the batch just recorded may have unblocked ordered deliveries
                claimed = claim()
        if not claimed and more and not ctx.stopping():
            n, more = fan_out_once(ctx)
            details["fanned_out"] += n
            claimed = claim()
        if not claimed:
            break
        result.claimed += len(claimed)
        flying = start_batch(ctx, claimed, cache)
    result.details = details
    result.duration_ms = (time.perf_counter() - started) * 1000
    return result


def send_test(endpoint_id: str, db_url: str | None = None) -> dict[str, Any]:
    """Send a ``webhook.ping`` to one endpoint now and return the delivery with its attempt."""
    from mno import clock
    from mno.agents.base import make_owner
    from mno.store.db import session_scope
    from mno.webhooks import deliveries, endpoints, fanout
    from mno.webhooks.delivery import Job, Sender
    from mno.webhooks.retry import Policy

    owner = make_owner()
    now = clock.now()
    with session_scope(db_url) as s:
        e = endpoints.get(s, endpoint_id)
        event_id = uuid.uuid4()
        body = fanout.body_for("webhook.ping", now, {"endpoint_id": str(e.id)})

        class _Ev:
            id, seq, type, created_at, tenant_id = event_id, 0, "webhook.ping", now, e.tenant_id

        row = fanout.delivery_row(
            channel="webhook", target_id=e.id, ev=_Ev, body=body, ordered=False, now=now
        )
        row.update(lease_owner=owner, lease_until=now + ctx_lease(), attempts=1)
        fanout.insert_deliveries(s, [row])
        job = Job(
            row["id"],
            e.url,
            str(event_id),
            body,
            endpoints.active_secrets(e),
            e.timeout_s,
            dict(e.headers),
        )
        claimed = {
            row["id"]: (row["id"], "webhook", e.id, event_id, "webhook.ping", body, 1, e.tenant_id)
        }
    snd = Sender(1)
    try:
        outcome = snd.send_all([job])[0]
    finally:
        snd.close()
    with session_scope(db_url) as s:
        deliveries.record(s, owner, claimed, [outcome], Policy())
    with session_scope(db_url, write=False) as s:
        return deliveries.show(s, str(row["id"]))


def ctx_lease() -> Any:
    from datetime import timedelta

    return timedelta(seconds=60)
