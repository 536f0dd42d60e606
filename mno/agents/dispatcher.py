"""The dispatcher agent: fans outbox events out to webhook endpoints and email rules, then
delivers due deliveries (signed HTTP POSTs over a keep-alive pool; emails over SMTP).

Each pass: fan out new events (one transaction per chunk, cursor included), then loop
claim → send concurrently → record outcomes, each turn's fan-out, record and next claim in
one transaction (one commit), until nothing is due, ``max_items`` is reached or a warm
stop is asked. Options (``agents.yaml``):
``retry_schedule``, ``jitter``, ``disable_after``, ``fanout_gap_grace``, ``fanout_batch``.

A committed event wakes the dispatcher at once (``WAKE_ON``: every outbox write notifies
``outbox.WAKE`` in its transaction, and so does every write that queues or re-queues a
delivery, since each emits its event); a pass that is running fans the new events out
at its next look. The interval stays as the safety net.
"""

from __future__ import annotations

import dataclasses
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from sqlmodel import col, select

from mno import clock, mail, settings
from mno.agents.base import TickContext, TickResult
from mno.notify import direct, rules
from mno.store import leases, outbox
from mno.store.db import session_scope
from mno.store.models.webhooks import WebhookDelivery, WebhookEndpoint
from mno.webhooks import delivery_queue, endpoints, fanout
from mno.webhooks.delivery_queue import ClaimedDelivery
from mno.webhooks.http_sender import Job, Outcome, Pending, Sender, sender
from mno.webhooks.retry import Policy

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
WAKE_ON = (outbox.WAKE,)
_mail_pool: ThreadPoolExecutor | None = None


def queue_depth(session: Session) -> tuple[int, int]:
    return leases.depth(session, WebhookDelivery)


def fan_out_once(ctx: TickContext) -> tuple[int, bool]:
    """One fan-out chunk in its own transaction: (deliveries made, more events waiting)."""
    grace = settings.parse_duration(ctx.option("fanout_gap_grace", "10m"))
    limit = int(ctx.option("fanout_batch", 2000))
    with ctx.session() as s:
        res = fanout.fan_out(s, limit=limit, gap_grace=grace)
    return res.deliveries, res.events >= limit


def fan_out_and_claim(ctx: TickContext, want: int) -> tuple[int, bool, list[ClaimedDelivery]]:
    """A pass's first fan-out chunk and claim in one transaction: (deliveries made, more
    events waiting, claimed). A woken pass puts a new event on the wire after one commit."""
    grace = settings.parse_duration(ctx.option("fanout_gap_grace", "10m"))
    limit = int(ctx.option("fanout_batch", 2000))
    with ctx.session() as s:
        res = fanout.fan_out(s, limit=limit, gap_grace=grace)
        got = delivery_queue.claim(s, ctx.owner, want, ctx.lease_for) if want else []
    return res.deliveries, res.events >= limit, got


def fan_out_all(ctx: TickContext) -> int:
    total, more = fan_out_once(ctx)
    while more and not ctx.stopping():
        n, more = fan_out_once(ctx)
        total += n
    return total


def _targets(ctx: TickContext, ids: set[Any], cache: dict[Any, Any]) -> None:
    missing = [i for i in ids if i not in cache]
    if not missing:
        return
    with ctx.session(write=False) as s:
        for e in s.exec(select(WebhookEndpoint).where(col(WebhookEndpoint.id).in_(missing))):
            cache[e.id] = (
                e.url,
                endpoints.active_secrets(e),
                e.timeout_s,
                endpoints.header_values(e),
            )


def _send_emails(ctx: TickContext, rows: list[ClaimedDelivery]) -> list[Outcome]:
    global _mail_pool
    prepared: list[tuple[Outcome, tuple[str, str, str, list[mail.Attachment]] | None]] = []
    senders: dict[Any, str] = {}  # a direct email's own from-address (a frontend's)
    with ctx.session(write=False) as s:
        for row in rows:
            out = Outcome(delivery_id=row.id, at=clock.now())
            try:
                if row.channel == direct.CHANNEL:
                    if (own := direct.sender(row.body)) is not None:
                        senders[row.id] = own
                    prepared.append((out, (*direct.prepare(s, row.body, row.tenant_id), [])))
                else:
                    prepared.append((out, rules.prepare(s, row.target_id, row.body, row.tenant_id)))
            except Exception as exc:  # noqa: BLE001 - one bad item fails only itself
                # reported: the error is recorded as this delivery's failed attempt
                out.success, out.error_class, out.error = False, type(exc).__name__, str(exc)
                prepared.append((out, None))
    cfg = mail.config()

    def send(item: tuple[Outcome, tuple[str, str, str, list[mail.Attachment]] | None]) -> Outcome:
        out, msg = item
        if msg is None:
            return out
        start = time.perf_counter()
        try:
            if cfg is None:
                raise RuntimeError("email is not configured (profile smtp section)")
            to, subject, text, files = msg
            own = senders.get(out.delivery_id)
            use = cfg if own is None else dataclasses.replace(cfg, sender=own)
            mail.send(to, subject, text, cfg=use, attachments=files)
            out.success = True
            out.response = f"sent to {to}"
        except Exception as exc:  # noqa: BLE001 - one bad item fails only itself
            # reported: the error is recorded as this delivery's failed attempt
            out.success, out.error_class, out.error = False, type(exc).__name__, str(exc)
        out.latency_ms = (time.perf_counter() - start) * 1000
        return out

    if _mail_pool is None:
        _mail_pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="mail")
    return list(_mail_pool.map(send, prepared))


@dataclass
class InFlight:
    """A claimed batch being sent: its rows, the webhook sends and the email outcomes."""

    by_id: dict[Any, ClaimedDelivery]
    pending: Pending
    outcomes: list[Outcome]

    def results(self) -> list[Outcome]:
        return self.outcomes + self.pending.results()


def start_batch(
    ctx: TickContext, claimed: list[ClaimedDelivery], cache: dict[Any, Any]
) -> InFlight:
    """Start sending one claimed batch (webhooks in the pool, emails now)."""
    by_id = {row.id: row for row in claimed}
    hooks = [r for r in claimed if r.channel == "webhook"]
    mails = [r for r in claimed if r.channel in ("email", "direct_email")]
    _targets(ctx, {r.target_id for r in hooks}, cache)
    outcomes: list[Outcome] = []
    jobs: list[Job] = []
    for r in hooks:
        target = cache.get(r.target_id)
        if target is None:  # deleted meanwhile
            outcomes.append(
                Outcome(
                    delivery_id=r.id,
                    at=clock.now(),
                    success=False,
                    error_class="endpoint_gone",
                    error="endpoint deleted",
                )
            )
            continue
        url, secrets, timeout_s, headers = target
        jobs.append(Job(r.id, url, str(r.event_id), r.body, secrets, timeout_s, headers))
    pending = sender(ctx.concurrency).submit_all(jobs)
    if mails:
        outcomes += _send_emails(ctx, mails)
    return InFlight(by_id, pending, outcomes)


def tick(ctx: TickContext) -> TickResult:
    """Pipeline: batch N+1 is handed to the sender before batch N's results are awaited,
    so the connections never wait on the store. While N+1 is on the wire the next chunk of
    events is fanned out (when a backlog remains, or every ``FANOUT_EVERY_S``), then N's
    outcomes are recorded and batch N+2 is claimed in one transaction.

    Each turn of the loop is one transaction (``settle``): fan out, record the batch that
    finished, claim the next. At most two claimed batches are sent and not yet recorded
    at any time: the bound on what a killed dispatcher sends again once its leases
    expire."""
    started = time.perf_counter()
    policy = Policy.from_options(ctx.options)
    grace = settings.parse_duration(ctx.option("fanout_gap_grace", "10m"))
    fan_limit = int(ctx.option("fanout_batch", 2000))
    result = TickResult()
    limit = ctx.batch_size if ctx.max_items is None else min(ctx.batch_size, ctx.max_items)
    fanned, more, claimed = fan_out_and_claim(ctx, 0 if ctx.stopping() else max(0, limit))
    result.claimed += len(claimed)
    last_fanout = time.monotonic()
    cache: dict[Any, Any] = {}
    details = {"fanned_out": fanned, "succeeded": 0, "exhausted": 0, "disabled": 0}

    def room() -> int:
        if ctx.stopping():
            return 0
        if ctx.max_items is None:
            return ctx.batch_size
        return max(0, min(ctx.batch_size, ctx.max_items - result.claimed))

    def settle(batch: InFlight | None, fan: bool) -> list[ClaimedDelivery]:
        """One transaction, one commit: fan out new events (when ``fan``), record the
        outcomes of ``batch`` (when given) and claim the next batch, so that at a steady
        trickle of events (one per transaction) each loop costs one commit, and a new
        event's deliveries are claimed in the commit that fans them out."""
        nonlocal more, last_fanout
        outcomes = batch.results() if batch is not None else []
        with ctx.session() as s:
            if fan:
                res = fanout.fan_out(s, limit=fan_limit, gap_grace=grace)
                details["fanned_out"] += res.deliveries
                more = res.events >= fan_limit
                last_fanout = time.monotonic()
            rec = (
                delivery_queue.record(s, ctx.owner, batch.by_id, outcomes, policy)
                if batch is not None
                else None
            )
            want = room()
            got = delivery_queue.claim(s, ctx.owner, want, ctx.lease_for) if want else []
        result.claimed += len(got)
        if rec is not None:
            result.done += rec.succeeded
            result.retried += rec.retried
            result.failed += rec.exhausted
            details["succeeded"] += rec.succeeded
            details["exhausted"] += rec.exhausted
            details["disabled"] += rec.disabled
            if rec.disabled:
                cache.clear()
        return got

    flying: InFlight | None = None
    while True:
        nxt = start_batch(ctx, claimed, cache) if claimed else None
        if flying is None and nxt is None:
            if more and not ctx.stopping():
                claimed = settle(None, True)
                if claimed:
                    continue
            break
        fan = more or ctx.woken() or time.monotonic() - last_fanout > FANOUT_EVERY_S
        claimed = settle(flying, fan and not ctx.stopping())
        flying = nxt
    result.details = details
    result.duration_ms = (time.perf_counter() - started) * 1000
    return result


def send_test(endpoint_id: str, db_url: str | None = None) -> dict[str, Any]:
    """Send a ``webhook.ping`` to one endpoint now and return the delivery with its attempt."""
    owner = leases.make_owner()
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
            endpoints.header_values(e),
        )
        claimed = {
            row["id"]: ClaimedDelivery(
                id=row["id"],
                channel="webhook",
                target_id=e.id,
                event_id=event_id,
                event_type="webhook.ping",
                body=body,
                attempts=1,
                tenant_id=e.tenant_id,
            )
        }
    snd = Sender(1)
    try:
        outcome = snd.send_all([job])[0]
    finally:
        snd.close()
    with session_scope(db_url) as s:
        delivery_queue.record(s, owner, claimed, [outcome], Policy())
    with session_scope(db_url, write=False) as s:
        return delivery_queue.show(s, str(row["id"]))


def ctx_lease() -> timedelta:
    return timedelta(seconds=60)
