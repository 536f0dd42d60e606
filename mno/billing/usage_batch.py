"""Record many usage posts in the caller's transaction with one multi-row insert.

``record_batch`` is ``usage.record`` for a list: each post gets its own outcome (the
event and whether it was created, or the error that refused it) and a refused post does
not stop the others. Idempotency is exact: a key already in the store, or repeated
earlier in the same batch, returns the first event and ``created=False``; two writers
racing with the same key both end with the one row (``ON CONFLICT DO NOTHING`` on the
``(tenant_id, idempotency_key)`` unique constraint, then a read of the winner).

A post for a period already invoiced for its tenant is late (``late_usage``): kept for
the tenant's next invoice, or refused with ``Conflict`` when late usage is (a replay of a
key already stored still returns its event).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlmodel import Session, col

from mno import clock
from mno.billing import late_usage
from mno.billing.late_usage import Closed
from mno.errors import BadInput, Conflict, MnoError, NotFound
from mno.money import to_decimal
from mno.store import bulk
from mno.store.models.billing import BillingMetric, UsageEvent
from mno.store.models.tenancy import Tenant
from mno.store.types import new_id, table_of
from mno.tenancy import tenants


@dataclass(frozen=True)
class UsagePost:
    tenant: str  # key (or id)
    metric: str
    quantity: Decimal
    at: datetime | None = None
    idempotency_key: str | None = None
    properties: dict[str, Any] = field(default_factory=dict)


Outcome = tuple[UsageEvent, bool] | MnoError


def _tenant_ids(session: Session, keys: set[str]) -> dict[str, uuid.UUID]:
    stmt = sa.select(col(Tenant.key), col(Tenant.id)).where(col(Tenant.key).in_(keys))
    found: dict[str, uuid.UUID] = dict(session.execute(stmt).all())
    for key in keys - found.keys():
        try:  # an id instead of a key, as usage.record accepts
            found[key] = tenants.get(session, key).id
        except NotFound:
            pass
    return found


def _insert(session: Session, rows: list[dict[str, Any]]) -> set[uuid.UUID]:
    """Insert ``rows``, skipping idempotency-key conflicts; the ids actually inserted."""
    t = table_of(UsageEvent)
    keys = ["tenant_id", "idempotency_key"]
    # one statement for every batch size: compiled once, sent as a multi-row insert
    stmt = bulk.insert_ignoring(session, t, keys).returning(t.c.id)
    return {row[0] for row in session.execute(stmt, rows)}


def record_batch(session: Session, posts: Sequence[UsagePost]) -> list[Outcome]:
    """One outcome per post, in order: ``(event, created)`` or the refusal."""
    if not posts:
        return []
    tenant_ids = _tenant_ids(session, {p.tenant for p in posts})
    metrics = set(
        session.execute(
            sa.select(col(BillingMetric.code)).where(
                col(BillingMetric.code).in_({p.metric for p in posts})
            )
        ).scalars()
    )
    closed = _closed(session, posts, tenant_ids)
    refuse: set[tuple[uuid.UUID, str | None]] | None = None
    if any(closed) and late_usage.policy() == late_usage.REJECT:
        refuse = _refused(session, posts, tenant_ids, closed)
    batch = _rows(posts, tenant_ids, metrics, clock.now(), closed, refuse)
    inserted = _insert(session, batch.rows) if batch.rows else set()
    events = _events(session, batch.rows, inserted)
    outcomes = batch.outcomes
    for n, row in enumerate(batch.row_of):
        if row is not None:
            outcomes[n] = events[row]
    for n, row in batch.repeats:
        outcomes[n] = (events[row][0], False)
    done = [o for o in outcomes if o is not None]
    assert len(done) == len(posts)
    return done


_NO_TENANT = uuid.UUID(int=0)


def _closed(
    session: Session, posts: Sequence[UsagePost], tenant_ids: dict[str, uuid.UUID]
) -> list[Closed | None]:
    """Per post: the invoiced period its time falls in (None when it is not late)."""
    probe = [
        (tenant_ids[p.tenant], p.at)
        if p.tenant in tenant_ids and p.at is not None and p.at.tzinfo is not None
        else (_NO_TENANT, None)
        for p in posts
    ]
    return late_usage.closed_periods(session, probe)


def _refused(
    session: Session,
    posts: Sequence[UsagePost],
    tenant_ids: dict[str, uuid.UUID],
    closed: list[Closed | None],
) -> set[tuple[uuid.UUID, str | None]]:
    """The late posts to refuse, as (tenant id, idempotency key): all but the replays of
    a key already stored."""
    late = {
        (tenant_ids[p.tenant], p.idempotency_key)
        for p, c in zip(posts, closed, strict=True)
        if c is not None
    }
    keyed = [(tid, key) for tid, key in late if key]
    if keyed:
        t = table_of(UsageEvent)
        stored = session.execute(
            sa.select(t.c.tenant_id, t.c.idempotency_key).where(
                sa.tuple_(t.c.tenant_id, t.c.idempotency_key).in_(keyed)
            )
        ).all()
        late -= {(tid, key) for tid, key in stored}
    return late


@dataclass
class _Batch:
    """The rows to insert for a batch of posts, and where each post's outcome comes from."""

    outcomes: list[Outcome | None]  # refusals, known before any write
    rows: list[dict[str, Any]]
    row_of: list[int | None]  # per post: index into rows
    repeats: list[tuple[int, int]]  # (post index, row index of the first post)


def _rows(
    posts: Sequence[UsagePost],
    tenant_ids: dict[str, uuid.UUID],
    metrics: set[str],
    now: datetime,
    closed: Sequence[Closed | None] | None = None,
    refuse: set[tuple[uuid.UUID, str | None]] | None = None,
) -> _Batch:
    """Check each post and make its row; a key repeated within the batch points at the
    row of its first post."""
    outcomes: list[Outcome | None] = [None] * len(posts)
    rows: list[dict[str, Any]] = []
    row_of: list[int | None] = [None] * len(posts)
    first_with: dict[tuple[uuid.UUID, str], int] = {}
    repeats: list[tuple[int, int]] = []
    for n, post in enumerate(posts):
        tenant_id = tenant_ids.get(post.tenant)
        if tenant_id is None:
            outcomes[n] = NotFound(f"tenant {post.tenant} not found", "see `mno tenant list`")
            continue
        if post.metric not in metrics:
            outcomes[n] = NotFound(
                f"metric {post.metric!r} not found", "create it with mno metric create"
            )
            continue
        if post.at is not None and post.at.tzinfo is None:
            outcomes[n] = BadInput("at: give a timezone")
            continue
        try:
            quantity = to_decimal(post.quantity)
        except BadInput as exc:
            outcomes[n] = exc
            continue
        late = closed[n] if closed else None
        if late is not None and refuse and (tenant_id, post.idempotency_key) in refuse:
            outcomes[n] = late.refusal(post.tenant)
            continue
        if post.idempotency_key:
            ident = (tenant_id, post.idempotency_key)
            if ident in first_with:
                repeats.append((n, first_with[ident]))
                continue
            first_with[ident] = len(rows)
        row_of[n] = len(rows)
        rows.append(
            {
                "id": new_id(),
                "created_at": now,
                "updated_at": now,
                "tenant_id": tenant_id,
                "metric_code": post.metric,
                "quantity": quantity,
                "at": post.at or now,
                "idempotency_key": post.idempotency_key,
                "properties": dict(post.properties),
                "late_period": late.period if late else None,
            }
        )
    return _Batch(outcomes, rows, row_of, repeats)


def _events(
    session: Session, rows: list[dict[str, Any]], inserted: set[uuid.UUID]
) -> list[tuple[UsageEvent, bool]]:
    """Per row: the new event, or the one already stored under its idempotency key."""
    skipped = [r for r in rows if r["id"] not in inserted]
    existing: dict[tuple[uuid.UUID, str], UsageEvent] = {}
    if skipped:
        pairs = [(r["tenant_id"], r["idempotency_key"]) for r in skipped]
        stmt = sa.select(UsageEvent).where(
            sa.tuple_(UsageEvent.tenant_id, UsageEvent.idempotency_key).in_(pairs)
        )
        for event in session.execute(stmt).scalars():
            existing[(event.tenant_id, event.idempotency_key or "")] = event
    events: list[tuple[UsageEvent, bool]] = []
    for r in rows:
        if r["id"] in inserted:
            events.append((UsageEvent(**r), True))
        else:
            first = existing.get((r["tenant_id"], r["idempotency_key"]))
            if first is None:  # cannot happen after ON CONFLICT; refuse rather than guess
                raise Conflict("a usage event with this Idempotency-Key is being written")
            events.append((first, False))
    return events
