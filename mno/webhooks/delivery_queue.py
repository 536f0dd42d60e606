"""The delivery queue: ``webhook_delivery`` rows of every channel (webhook, email rule,
direct email).

The dispatcher claims due deliveries (ordered targets, rate-limited endpoints) as
``ClaimedDelivery`` rows, sends them (``http_sender`` for webhooks) and records the outcomes
here in batches: attempts, retry or exhaustion, endpoint health. Operators list, show and
replay deliveries through the functions at the end.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, NamedTuple, cast

import sqlalchemy as sa
from sqlmodel import col, select

from mno import clock, mail
from mno.errors import BadInput
from mno.store import audit, buckets, leases, lookup, outbox, paging
from mno.store.bulk import Rows
from mno.store.models.webhooks import (
    NotifyRule,
    WebhookAttempt,
    WebhookBucket,
    WebhookDelivery,
    WebhookEndpoint,
)
from mno.store.types import table_of
from mno.webhooks import endpoints
from mno.webhooks.retry import Policy, parse_retry_after

if TYPE_CHECKING:
    from sqlmodel import Session

    from mno.webhooks.http_sender import Outcome

D = table_of(WebhookDelivery)
E = table_of(WebhookEndpoint)
R = table_of(NotifyRule)
READY = ("pending",)
STATUSES = ("pending", "failed", "succeeded", "exhausted", "cancelled")
MAX_REPLAY = 10_000


class ClaimedDelivery(NamedTuple):
    """A delivery leased by ``claim``: the columns the dispatcher sends and records."""

    id: uuid.UUID
    channel: str  # "webhook", "email" (a notify rule) or "direct_email"
    target_id: uuid.UUID  # the endpoint or notify rule
    event_id: uuid.UUID
    event_type: str
    body: str
    attempts: int
    tenant_id: uuid.UUID | None


_COLUMNS = ClaimedDelivery._fields


def _not_blocked() -> Any:
    """An ordered delivery waits for every earlier one to its target to finish."""
    d2 = D.alias("d2")
    earlier = (
        sa.select(d2.c.id)
        .where(d2.c.target_id == D.c.target_id, d2.c.status == "pending", d2.c.seq < D.c.seq)
        .exists()
    )
    return sa.or_(D.c.ordered == sa.false(), ~earlier)


def claim(session: Session, owner: str, limit: int, lease_for: timedelta) -> list[ClaimedDelivery]:
    """Lease up to ``limit`` due deliveries; rate-limited endpoints take store tokens."""
    out: list[ClaimedDelivery] = []
    free_endpoints = sa.select(E.c.id).where(E.c.enabled == sa.true(), E.c.rate_limit.is_(None))
    rules = sa.select(R.c.id).where(R.c.enabled == sa.true())
    where = sa.and_(
        sa.or_(
            sa.and_(D.c.channel == "webhook", D.c.target_id.in_(free_endpoints)),
            sa.and_(D.c.channel == "email", D.c.target_id.in_(rules)),
            D.c.channel == "direct_email",
        ),
        _not_blocked(),
    )
    got = leases.claim(
        session,
        WebhookDelivery,
        owner,
        limit,
        lease_for,
        ready=READY,
        where=where,
        order_by=[D.c.next_attempt_at, D.c.seq],
        returning=_COLUMNS,
    )
    out += map(ClaimedDelivery._make, got)
    if len(out) < limit:
        out += _claim_limited(session, owner, limit - len(out), lease_for)
    return out


def _claim_limited(
    session: Session, owner: str, limit: int, lease_for: timedelta
) -> list[ClaimedDelivery]:
    """Per rate-limited endpoint: refill its bucket, claim at most the whole tokens."""
    now = clock.now()
    limited = session.execute(
        sa.select(E.c.id, E.c.rate_limit).where(
            E.c.enabled == sa.true(),
            E.c.rate_limit.is_not(None),
            sa.exists(
                sa.select(D.c.id).where(
                    D.c.target_id == E.c.id, leases.claimable(WebhookDelivery, READY, now)
                )
            ),
        )
    ).all()
    out: list[ClaimedDelivery] = []
    for endpoint_id, rate in limited:
        if len(out) >= limit:
            break
        tokens = take_tokens(session, endpoint_id, float(rate), limit - len(out))
        if tokens <= 0:
            continue
        got = leases.claim(
            session,
            WebhookDelivery,
            owner,
            tokens,
            lease_for,
            ready=READY,
            where=sa.and_(D.c.target_id == endpoint_id, _not_blocked()),
            order_by=[D.c.next_attempt_at, D.c.seq],
            returning=_COLUMNS,
        )
        give_back(session, endpoint_id, tokens - len(got))
        out += map(ClaimedDelivery._make, got)
    return out


def take_tokens(session: Session, endpoint_id: uuid.UUID, rate: float, want: int) -> int:
    """Take up to ``want`` whole tokens from the endpoint's bucket (capacity: 1 s of rate)."""
    got, _ = buckets.take(
        session,
        table_of(WebhookBucket),
        "endpoint_id",
        endpoint_id,
        rate=rate,
        capacity=max(1.0, rate),
        want=want,
    )
    return got


def give_back(session: Session, endpoint_id: uuid.UUID, n: int) -> None:
    if n > 0:
        t = table_of(WebhookBucket)
        session.execute(
            sa.update(t).where(t.c.endpoint_id == endpoint_id).values(tokens=t.c.tokens + n)
        )


@dataclass
class Recorded:
    succeeded: int = 0
    retried: int = 0
    exhausted: int = 0
    lost_lease: int = 0
    disabled: int = 0


def record(
    session: Session,
    owner: str,
    claimed: dict[Any, ClaimedDelivery],
    outcomes: list[Outcome],
    policy: Policy,
) -> Recorded:
    """Write a batch of outcomes in the caller's transaction: attempts, states, events."""
    now = clock.now()
    res = Recorded()
    if not outcomes:
        return res
    _log_attempts(session, owner, outcomes, now)
    ok = [o for o in outcomes if o.ok]
    bad = [o for o in outcomes if not o.ok]
    ok_targets, done_ids = _complete_succeeded(session, owner, claimed, ok, now)
    res.succeeded = len(done_ids)
    res.lost_lease += len(ok) - res.succeeded
    exhausted, gone, failed_targets = _retry_failed(session, owner, claimed, bad, policy, now)
    _scrub_direct(session, claimed, done_ids | {r.id for r in exhausted})
    res.exhausted = len(exhausted)
    res.retried = len(bad) - len(exhausted)
    if exhausted:
        _emit_exhausted(session, exhausted)
    res.disabled = _endpoint_health(session, ok_targets, failed_targets, gone, policy, now)
    return res


def _log_attempts(session: Session, owner: str, outcomes: list[Outcome], now: datetime) -> None:
    """One attempt row per outcome, in one bulk insert."""
    Rows(session.connection()).insert_columns(
        table_of(WebhookAttempt),
        {
            "delivery_id": [o.delivery_id for o in outcomes],
            "at": [o.at for o in outcomes],
            "status_code": [o.status_code for o in outcomes],
            "latency_ms": [round(o.latency_ms, 2) for o in outcomes],
            "error_class": [o.error_class for o in outcomes],
            "response": [o.response for o in outcomes],
        },
        {"created_at": now, "updated_at": now, "owner": owner},
    )


def _complete_succeeded(
    session: Session,
    owner: str,
    claimed: dict[Any, ClaimedDelivery],
    ok: list[Outcome],
    now: datetime,
) -> tuple[set[Any], set[Any]]:
    """Mark the successes done (one statement per status code) while ``owner`` still holds
    their lease. Returns the targets that got a success and the ids marked done."""
    ok_targets: set[Any] = set()
    done_ids: set[Any] = set()
    by_code: dict[int | None, list[Any]] = {}
    for o in ok:
        by_code.setdefault(o.status_code, []).append(o.delivery_id)
    for code, ids in by_code.items():
        done = leases.complete_ids(
            session,
            WebhookDelivery,
            ids,
            owner,
            status="succeeded",
            values={
                "last_status": "succeeded",
                "last_code": code,
                "done_at": now,
                "last_error": None,
                "updated_at": now,
            },
        )
        done_ids.update(done)
        ok_targets |= {claimed[i].target_id for i in done}
    return ok_targets, done_ids


def _retry_failed(
    session: Session,
    owner: str,
    claimed: dict[Any, ClaimedDelivery],
    bad: list[Outcome],
    policy: Policy,
    now: datetime,
) -> tuple[list[ClaimedDelivery], set[Any], set[Any]]:
    """Schedule the failures' next attempt or exhaust them (one executemany). Returns the
    exhausted deliveries, the endpoints that answered 410 Gone and every failed target."""
    retry_rows: list[dict[str, Any]] = []
    exhausted: list[ClaimedDelivery] = []
    gone: set[Any] = set()
    failed_targets: set[Any] = set()
    for o in bad:
        row = claimed[o.delivery_id]
        attempts = int(row.attempts)
        target = row.target_id
        failed_targets.add(target)
        if o.status_code == 410 and row.channel == "webhook":
            gone.add(target)
        ra = parse_retry_after(o.retry_after, now)
        delay = policy.next_delay(
            attempts, status_code=o.status_code, retry_after=ra, timed_out=o.timed_out
        )
        if delay is None:
            exhausted.append(row)
        retry_rows.append(
            {
                "b_id": o.delivery_id,
                "b_status": "exhausted" if delay is None else "pending",
                "b_next": now + timedelta(seconds=delay or 0),
                "b_error": (o.error or o.error_class or "failed")[:2000],
                "b_code": o.status_code,
                "b_done": now if delay is None else None,
            }
        )
    if retry_rows:
        stmt = (
            sa.update(D)
            .where(D.c.id == sa.bindparam("b_id"), D.c.lease_owner == owner)
            .values(
                status=sa.bindparam("b_status"),
                next_attempt_at=sa.bindparam("b_next"),
                last_error=sa.bindparam("b_error"),
                last_code=sa.bindparam("b_code"),
                done_at=sa.bindparam("b_done"),
                last_status="failed",
                lease_owner=None,
                lease_until=None,
                first_failed_at=sa.func.coalesce(D.c.first_failed_at, now),
                updated_at=now,
            )
        )
        session.connection().execute(stmt, retry_rows)
    return exhausted, gone, failed_targets


def _emit_exhausted(session: Session, exhausted: list[ClaimedDelivery]) -> None:
    outbox.emit_many(
        session,
        [
            (
                "webhook.delivery_exhausted",
                {
                    "delivery_id": str(r.id),
                    "channel": r.channel,
                    "endpoint_id": str(r.target_id),
                    "event_id": str(r.event_id),
                    "event_type": r.event_type,
                    "attempts": int(r.attempts),
                },
                r.tenant_id,
            )
            for r in exhausted
        ],
    )


def _endpoint_health(
    session: Session,
    ok_targets: set[Any],
    failed_targets: set[Any],
    gone: set[Any],
    policy: Policy,
    now: datetime,
) -> int:
    """A success clears an endpoint's failing clock, a failure starts it; endpoints failing
    longer than the policy allows, or gone, are disabled. Returns how many were disabled."""
    disabled = 0
    webhook_ok = [t for t in ok_targets if t not in failed_targets]
    if webhook_ok:
        session.execute(
            sa.update(E)
            .where(E.c.id.in_(webhook_ok), E.c.failing_since.is_not(None))
            .values(failing_since=None)
        )
    if failed_targets:
        session.execute(
            sa.update(E)
            .where(E.c.id.in_(list(failed_targets)), E.c.failing_since.is_(None))
            .values(failing_since=now)
        )
        stale = (
            session.execute(
                sa.select(E.c.id).where(
                    E.c.id.in_(list(failed_targets)),
                    E.c.enabled == sa.true(),
                    E.c.failing_since <= now - policy.disable_after,
                )
            )
            .scalars()
            .all()
        )
        for eid in set(stale) | gone:
            disabled += disable(
                session, eid, "410 Gone" if eid in gone else f"failing for {policy.disable_after}"
            )
    return disabled


def _scrub_direct(session: Session, claimed: dict[Any, ClaimedDelivery], ids: set[Any]) -> None:
    """Direct emails that are done keep their recipe without the sealed values."""
    rows = [
        {"b_id": i, "b_body": mail.scrub_direct(claimed[i].body)}
        for i in ids
        if claimed[i].channel == mail.DIRECT_CHANNEL
    ]
    if rows:
        session.connection().execute(
            sa.update(D)
            .where(D.c.id == sa.bindparam("b_id"), D.c.status.in_(["succeeded", "exhausted"]))
            .values(body=sa.bindparam("b_body")),
            rows,
        )


def disable(session: Session, endpoint_id: Any, reason: str) -> int:
    e = session.get(WebhookEndpoint, endpoint_id)
    if e is None or not e.enabled:
        return 0
    before = audit.snapshot(e)
    e.enabled = False
    e.disabled_reason = reason
    e.touch()
    session.add(e)
    session.flush()
    audit.record(
        session,
        "webhook.endpoint_auto_disable",
        target_type="webhook_endpoint",
        target_id=str(e.id),
        target=e.url,
        before=before,
        after=audit.snapshot(e),
        tenant_id=e.tenant_id,
    )
    outbox.emit(
        session,
        "webhook.endpoint_disabled",
        {"endpoint_id": str(e.id), "url": e.url, "reason": reason},
        e.tenant_id,
    )
    return 1


# -- operator queries ------------------------------------------------------------------


def _deliveries(
    session: Session,
    endpoint: str | None,
    status: str | None,
    event_type: str | None,
    since: datetime | None,
) -> Any:
    stmt = sa.select(
        D.c.id,
        D.c.channel,
        D.c.target_id,
        D.c.event_id,
        D.c.seq,
        D.c.event_type,
        D.c.status,
        D.c.last_status,
        D.c.attempts,
        D.c.last_code,
        D.c.next_attempt_at,
        D.c.created_at,
        D.c.last_error,
    )
    if endpoint:
        stmt = stmt.where(D.c.target_id == endpoints.get(session, endpoint).id)
    if status:
        if status not in STATUSES:
            raise BadInput(f"bad status {status!r}", "one of: " + ", ".join(STATUSES))
        if status == "failed":
            stmt = stmt.where(D.c.status == "pending", D.c.last_status == "failed")
        else:
            stmt = stmt.where(D.c.status == status)
    if event_type:
        stmt = stmt.where(D.c.event_type.like(event_type.replace("*", "%")))
    if since:
        stmt = stmt.where(D.c.created_at >= since)
    return stmt


# newest first; the event's seq orders deliveries made together, the id breaks ties
_ORDER = [D.c.created_at, D.c.seq, D.c.id]


def _delivery_view(r: Any) -> dict[str, Any]:
    view: dict[str, Any] = audit.jsonable(
        {
            "id": str(r.id),
            "channel": r.channel,
            "target": str(r.target_id),
            "event_id": str(r.event_id),
            "event_type": r.event_type,
            "status": "failed" if r.status == "pending" and r.last_status == "failed" else r.status,
            "attempts": r.attempts,
            "last_code": r.last_code,
            "next_attempt_at": r.next_attempt_at if r.status == "pending" else None,
            "created_at": r.created_at,
            "last_error": r.last_error,
        }
    )
    return view


def page_deliveries(
    session: Session,
    *,
    endpoint: str | None = None,
    status: str | None = None,
    event_type: str | None = None,
    since: datetime | None = None,
    after: str | None = None,
    limit: int = 100,
) -> paging.Page[dict[str, Any]]:
    """One page of deliveries, newest first, after the cursor ``after``."""
    stmt = _deliveries(session, endpoint, status, event_type, since)
    rows, nxt = paging.page(session, stmt, _ORDER, after, limit, descending=True)
    return paging.Page([_delivery_view(r) for r in rows], nxt)


def stream_deliveries(
    session: Session,
    *,
    endpoint: str | None = None,
    status: str | None = None,
    event_type: str | None = None,
    since: datetime | None = None,
    after: str | None = None,
) -> Iterator[dict[str, Any]]:
    """Every delivery of ``page_deliveries``, read a chunk at a time."""
    stmt = _deliveries(session, endpoint, status, event_type, since)
    for r in paging.each(session, stmt, _ORDER, after, descending=True):
        yield _delivery_view(r)


def show(session: Session, delivery_id: str) -> dict[str, Any]:
    d = lookup.by_id_or_prefix(session, WebhookDelivery, delivery_id, "delivery")
    did = d.id
    attempts = session.exec(
        select(WebhookAttempt)
        .where(WebhookAttempt.delivery_id == did)
        .order_by(col(WebhookAttempt.at))
    ).all()
    return cast(
        "dict[str, Any]",
        audit.jsonable(
            {
                "id": str(d.id),
                "channel": d.channel,
                "target": str(d.target_id),
                "event_id": str(d.event_id),
                "event_type": d.event_type,
                "status": d.status,
                "attempts": d.attempts,
                "next_attempt_at": d.next_attempt_at,
                "last_error": d.last_error,
                "body": d.body,
                "attempt_log": [
                    {
                        "at": a.at,
                        "status_code": a.status_code,
                        "latency_ms": a.latency_ms,
                        "error_class": a.error_class,
                        "response": a.response,
                    }
                    for a in attempts
                ],
            }
        ),
    )


def replay(
    session: Session,
    endpoint: str,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    status: str = "exhausted",
    include_delivered: bool = False,
) -> int:
    """Re-queue up to 10,000 deliveries of one endpoint (attempt count starts over).

    ``status="all"`` takes every delivery that was not cancelled, but one already
    delivered (succeeded) only with ``include_delivered``."""
    if status not in ("exhausted", "failed", "all"):
        raise BadInput(f"bad status {status!r}", "one of: exhausted, failed, all")
    e = endpoints.get(session, endpoint)
    cond = [D.c.target_id == e.id]
    if status == "exhausted":
        cond.append(D.c.status == "exhausted")
    elif status == "failed":
        cond.append(
            sa.or_(
                D.c.status == "exhausted",
                sa.and_(D.c.status == "pending", D.c.last_status == "failed"),
            )
        )
    else:
        cond.append(D.c.status != "cancelled")
        if not include_delivered:
            cond.append(D.c.status != "succeeded")
    if since:
        cond.append(D.c.created_at >= since)
    if until:
        cond.append(D.c.created_at < until)
    ids = (
        session.execute(sa.select(D.c.id).where(*cond).order_by(D.c.seq).limit(MAX_REPLAY))
        .scalars()
        .all()
    )
    now = clock.now()
    if ids:
        session.execute(
            sa.update(D)
            .where(leases.id_in(session, D.c.id, list(ids)))
            .values(
                status="pending",
                attempts=0,
                next_attempt_at=now,
                lease_owner=None,
                lease_until=None,
                done_at=None,
                updated_at=now,
            )
        )
    audit.record(
        session,
        "webhook.replay",
        target_type="webhook_endpoint",
        target_id=str(e.id),
        target=e.url,
        after={"count": len(ids), "status": status, "include_delivered": include_delivered},
        tenant_id=e.tenant_id,
    )
    outbox.emit(
        session, "webhook.replayed", {"endpoint_id": str(e.id), "count": len(ids)}, e.tenant_id
    )
    return len(ids)
