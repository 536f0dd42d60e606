"""Late usage: events that arrive for a period already invoiced for their tenant.

An event is late when the month that holds its time, in the tenant's timezone, already has
the tenant's period invoice (``billing_invoice.kind = 'period'``). What happens then is the
platform's ``billing.late_usage``:

- ``next_invoice`` (the default): the event is stored with that month (``late_period``),
  left out of every usage window a run aggregates, and billed on the tenant's next period
  invoice as a line of its own, ``late usage for 2026-10: api_calls 2000 …``. The line
  is rated with the plan version of the subscription that covered the event's time (a
  subscription stays pinned to the version it started on; a plan change starts another),
  for the period of that subscription that holds it. Tiers and buckets count from what
  was billed already: the line is the price of everything used in that period less what
  was billed for it (a time charge rates each late entry on its own). Once billed, the
  event carries that invoice (``late_invoice_id``): a rerun, or the run after, never
  bills it again;
- ``reject``: the event is refused (``Conflict``: exit 1, HTTP 409) with the number of
  the invoice that closed the period (a draft's id while it has none).

Whether an event is late and whether a run's usage windows hold it are decided one after
the other, never both missed: a run's chunk holds an exclusive lock on its month
(``lock_month``) while it reads usage and writes invoices, and a writer of usage that may
be late holds a shared one on the months it checks, from the check to its commit (only
times before the latest month begun anywhere are checked: usage of the current month
takes no lock).

An event that no subscription charges for is not billed, late or not. An event whose
usage period has no line yet (a quarter still open, a week across the month's end) is
billed on its own all the same, counted from nothing: that period's own line, billed
later, leaves it out.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from sqlmodel import Session

from mno import clock, platform
from mno.billing import rating
from mno.billing.invoice_rows import id_in
from mno.billing.periods import local_midnight, schedule, unit_index
from mno.billing.tenant_rating import USAGE_KINDS, Catalog, PlanView, billing_start, line_key
from mno.errors import Conflict
from mno.money import minor_units, to_decimal
from mno.store import leases
from mno.store.models.billing import Invoice, InvoiceLine, Plan, Subscription, UsageEvent
from mno.store.models.tenancy import Tenant
from mno.store.types import table_of

T_USE = table_of(UsageEvent)
T_INV = table_of(Invoice)
T_LINE = table_of(InvoiceLine)
T_SUB = table_of(Subscription)
T_TEN = table_of(Tenant)

NEXT_INVOICE = "next_invoice"
REJECT = "reject"


def policy() -> str:
    """``billing.late_usage``: ``next_invoice`` or ``reject``."""
    return platform.load().billing.late_usage


def period_of(at: datetime, tz: str | None) -> str:
    """The month (YYYY-MM) that holds ``at`` in ``tz``."""
    local = at.astimezone(ZoneInfo(tz or "UTC"))
    return f"{local.year:04d}-{local.month:02d}"


@dataclass(frozen=True)
class Closed:
    """A period already invoiced for a tenant, and the invoice that closed it."""

    period: str
    invoice: str  # its number, or "draft <id>" while it has none

    def refusal(self, tenant: str) -> Conflict:
        return Conflict(
            f"usage for {self.period} arrives after invoice {self.invoice} closed that "
            f"period for tenant {tenant}",
            "billing.late_usage is reject; set it to next_invoice to bill it on the next invoice",
        )


def _horizon(now: datetime) -> datetime:
    """From here on no time lies in a month that has closed in any timezone (UTC-12 to
    UTC+14): the month now in UTC+14 is the latest current month anywhere, and it begins
    at the latest 12 hours after its UTC start (in UTC-12)."""
    ahead = now.astimezone(UTC) + timedelta(hours=14)
    return datetime(ahead.year, ahead.month, 1, tzinfo=UTC) + timedelta(hours=12)


def closed_periods(
    session: Session, posts: Sequence[tuple[uuid.UUID, datetime | None]]
) -> list[Closed | None]:
    """Per (tenant id, time): the invoiced period the time falls in, None when it is not
    late (no time given: now, whose month no run has billed). A few statements for the
    whole list."""
    out: list[Closed | None] = [None] * len(posts)
    horizon = _horizon(clock.now())
    timed = [(n, tid, at) for n, (tid, at) in enumerate(posts) if at is not None and at < horizon]
    if not timed:
        return out
    tids = sorted({tid for _, tid, _ in timed})
    zones = dict(
        session.execute(
            sa.select(T_TEN.c.id, T_TEN.c.timezone).where(id_in(session, T_TEN.c.id, tids))
        ).all()
    )
    wanted = {(tid, period_of(at, zones.get(tid))) for _, tid, at in timed}
    closed = invoiced(session, wanted, lock=True)
    for n, tid, at in timed:
        out[n] = closed.get((tid, period_of(at, zones.get(tid))))
    return out


def lock_month(session: Session, period: str, *, shared: bool = False) -> None:
    """Hold month ``period``'s late-usage lock until the transaction ends: exclusive for
    a run's chunk, shared for writers of usage of that month."""
    leases.advisory_lock(session, f"billing-usage-month:{period}", shared=shared)


def invoiced(
    session: Session, pairs: Iterable[tuple[uuid.UUID, str]], *, lock: bool = False
) -> dict[tuple[uuid.UUID, str], Closed]:
    """The (tenant, period) pairs among ``pairs`` that hold a period invoice, with the
    invoice that closed each."""
    by_tenant: dict[uuid.UUID, set[str]] = defaultdict(set)
    for tid, period in pairs:
        by_tenant[tid].add(period)
    periods = sorted({p for ps in by_tenant.values() for p in ps})
    if lock:  # before reading: a run of one of these months waits for the write, or is seen
        for period in periods:
            lock_month(session, period, shared=True)
    found: dict[tuple[uuid.UUID, str], Closed] = {}
    tids = sorted(by_tenant)
    for i in range(0, len(tids), 1000):
        q = (
            sa.select(T_INV.c.tenant_id, T_INV.c.period, T_INV.c.number, T_INV.c.id)
            .where(
                id_in(session, T_INV.c.tenant_id, tids[i : i + 1000]),
                T_INV.c.kind == "period",
                T_INV.c.period.in_(periods),
            )
            .order_by(T_INV.c.created_at, T_INV.c.id)
        )
        for tid, period, number, inv_id in session.execute(q):
            if period in by_tenant[tid] and (tid, period) not in found:
                found[(tid, period)] = Closed(period, number or f"draft {inv_id}")
    return found


def open_late(period: str) -> Any:
    """Late events not billed yet that a run of ``period`` bills (those of earlier months)."""
    return sa.and_(
        T_USE.c.late_period.is_not(None),
        T_USE.c.late_invoice_id.is_(None),
        T_USE.c.late_period < period,
    )


# Billing late usage on a run ----------------------------------------------------------


@dataclass
class LateBill:
    """One tenant's late usage to bill: line rows per currency, and the events each
    currency's lines bill."""

    lines: dict[str, list[dict[str, Any]]] = field(default_factory=lambda: defaultdict(list))
    events: dict[str, list[uuid.UUID]] = field(default_factory=lambda: defaultdict(list))


def load(
    s: Session, tenant_ids: list[uuid.UUID], tz_of: dict[uuid.UUID, str], period: str, cat: Catalog
) -> dict[uuid.UUID, LateBill]:
    """Rate the late events of ``tenant_ids`` that the run of ``period`` bills: per tenant,
    its late lines and the events they bill. Tenants without late usage are left out."""
    events = s.execute(
        sa.select(
            T_USE.c.id,
            T_USE.c.tenant_id,
            T_USE.c.metric_code,
            T_USE.c.quantity,
            T_USE.c.at,
            T_USE.c.created_at,
            T_USE.c.late_period,
            T_USE.c.idempotency_key,
            T_USE.c.properties,
        )
        .where(id_in(s, T_USE.c.tenant_id, tenant_ids), open_late(period))
        .order_by(T_USE.c.tenant_id, T_USE.c.at, T_USE.c.created_at, T_USE.c.id)
    ).all()
    if not events:
        return {}
    late_tids = sorted({e.tenant_id for e in events})
    subs: dict[uuid.UUID, list[Any]] = defaultdict(list)
    for row in s.execute(
        sa.select(
            T_SUB.c.id,
            T_SUB.c.tenant_id,
            T_SUB.c.plan_id,
            T_SUB.c.started_at,
            T_SUB.c.trial_ends_at,
            T_SUB.c.cancel_at,
        )
        .where(id_in(s, T_SUB.c.tenant_id, late_tids))
        .order_by(T_SUB.c.started_at, T_SUB.c.id)
    ):
        subs[row.tenant_id].append(row)
    sub_ids = [x.id for rows in subs.values() for x in rows]
    billed: dict[uuid.UUID, list[Any]] = defaultdict(list)
    if sub_ids:
        for row in s.execute(
            sa.select(
                T_LINE.c.subscription_id,
                T_LINE.c.line_key,
                T_LINE.c.quantity,
                T_LINE.c.amount_minor,
                T_LINE.c.detail,
            )
            .join(T_INV, T_INV.c.id == T_LINE.c.invoice_id)
            .where(
                id_in(s, T_LINE.c.subscription_id, sub_ids),
                T_LINE.c.kind.in_(USAGE_KINDS),
                T_INV.c.status != "void",
            )
        ):
            billed[row.subscription_id].append(row)
    by_tenant: dict[uuid.UUID, list[Any]] = defaultdict(list)
    for e in events:
        by_tenant[e.tenant_id].append(e)
    out: dict[uuid.UUID, LateBill] = {}
    for tid, evs in by_tenant.items():
        bill = rate(evs, subs.get(tid, []), billed, tz_of.get(tid) or "UTC", period, cat)
        if any(bill.events.values()):
            out[tid] = bill
    return out


def _covering(subs: list[Any], at: datetime) -> list[Any]:
    """The subscriptions billed at ``at``: started (trial over), not ended yet."""
    return [
        sub
        for sub in subs
        if billing_start(sub) <= at and (sub.cancel_at is None or at < sub.cancel_at)
    ]


def _period(sub: Any, plan: Plan | PlanView, tz: str, at: datetime) -> tuple[datetime, datetime]:
    """The nominal bounds of the period of ``sub`` that holds ``at`` (as a run keys it)."""
    unit, every = plan.interval_unit or "month", plan.interval_every or 1
    zone = ZoneInfo(tz)
    anchor = unit_index(billing_start(sub).astimezone(zone).date(), unit)
    d = at.astimezone(zone).date()
    (_, a, b) = schedule(anchor, unit, every, d, d + timedelta(days=1))[0]
    return local_midnight(a, tz), local_midnight(b, tz)


def rate(
    events: list[Any],
    subs: list[Any],
    billed: dict[uuid.UUID, list[Any]],
    tz: str,
    period: str,
    cat: Catalog,
) -> LateBill:
    """One tenant's late lines (pure given its inputs): the events grouped by the
    subscription charge and period that would have billed them, and by late month."""
    groups: dict[tuple[uuid.UUID, int, datetime, datetime, str], list[Any]] = defaultdict(list)
    sub_of = {sub.id: sub for sub in subs}
    for e in events:
        for sub in _covering(subs, e.at):
            plan = cat.plans.get(sub.plan_id)
            if plan is None:
                continue
            for idx, ch in enumerate(plan.charges):
                if ch.get("kind") in USAGE_KINDS and ch.get("metric") == e.metric_code:
                    ps, pe = _period(sub, plan, tz, e.at)
                    groups[(sub.id, idx, ps, pe, e.late_period)].append(e)
    bill = LateBill()
    seen: set[uuid.UUID] = set()
    for (sub_id, idx, ps, pe, late_period), evs in groups.items():
        sub = sub_of[sub_id]
        plan = cat.plans[sub.plan_id]
        key = line_key(sub.id, idx, ps, pe)
        before = [ln for ln in billed.get(sub.id, []) if _same_window(ln.line_key, key)]
        row = _late_line(sub.id, idx, plan, key, ps, pe, late_period, evs, before, period, cat)
        bill.lines[plan.currency].append(row)
        billed[sub.id].append(_as_billed(row))  # a second group of the same window builds on it
        for e in evs:
            if e.id not in seen:
                seen.add(e.id)
                bill.events[plan.currency].append(e.id)
    return bill


def _same_window(existing: str, key: str) -> bool:
    return existing == key or existing.startswith(f"{key}|late|")


@dataclass(frozen=True)
class _Billed:
    line_key: str
    quantity: str
    amount_minor: int
    detail: dict[str, Any]


def _as_billed(row: dict[str, Any]) -> _Billed:
    return _Billed(row["line_key"], row["quantity"], row["amount_minor"], row["detail"])


def _plain(value: Any) -> Decimal:
    """A quantity read from the store, without the column's trailing zeros."""
    d = to_decimal(str(value or 0))
    return d.quantize(Decimal(1)) if d == d.to_integral_value() else d.normalize()


def _quantity(evs: list[Any], agg: str, prop: str | None) -> Decimal:
    """The late events' quantity under the charge's aggregation."""
    qty = [_plain(e.quantity) for e in evs]
    if agg == "count":
        return Decimal(len(evs))
    if agg == "max":
        return max(qty)
    if agg == "latest":
        return qty[-1]  # events come in time order
    if agg == "unique_count":
        values = {
            str((e.properties or {}).get(prop)) if prop else (e.idempotency_key or str(e.id))
            for e in evs
        }
        return Decimal(len(values))
    return sum(qty, Decimal(0))


def _combined(base: Decimal, late: Decimal, agg: str) -> Decimal:
    """The period's quantity once the late events join what was billed."""
    if agg == "max":
        return max(base, late)
    if agg == "latest":
        return late
    return base + late


def _late_line(
    sub_id: Any,
    idx: int,
    plan: Plan | PlanView,
    key: str,
    ps: datetime,
    pe: datetime,
    late_period: str,
    evs: list[Any],
    before: list[Any],
    period: str,
    cat: Catalog,
) -> dict[str, Any]:
    """The late line of one charge and period: the price of the whole period's usage
    less what was billed for it already (a time charge: the late entries' own price)."""
    ch = plan.charges[idx]
    kind, cur, metric = ch["kind"], plan.currency, ch["metric"]
    agg = cat.aggregation(ch)
    late_q = _quantity(evs, agg, cat.metrics.get(metric, ("sum", None))[1])
    base_q = Decimal(0)
    rollover_in = Decimal(0)
    for ln in before:
        detail = ln.detail or {}
        if detail.get("late"):
            base_q = _combined(base_q, Decimal(str(detail.get("late_quantity", "0"))), agg)
        elif kind == "bucket":
            base_q = Decimal(str(detail.get("used", "0")))
            rollover_in = Decimal(str(detail.get("rollover_in", "0")))
        else:
            base_q = Decimal(str(ln.quantity or "0"))
    billed_minor = sum(int(ln.amount_minor) for ln in before)
    rated_q = _combined(base_q, late_q, agg)
    if kind == "time":
        entries = [_plain(e.quantity) for e in evs]
        ln = rating.time_minutes(
            entries,
            to_decimal(ch.get("rate", "0")),
            cur,
            to_decimal(ch.get("minimum", 0)),
            to_decimal(ch.get("round_up_to", 1)),
        )
        amount, rated_q, late_q = ln.amount_minor, ln.quantity, ln.quantity
    elif kind == "bucket":
        ln, _ = rating.bucket(
            rated_q,
            to_decimal(ch.get("included", 0)),
            rollover_in,
            to_decimal(ch.get("overage_price", 0)),
            cur,
            to_decimal(ch.get("rollover_cap", 0)),
        )
        amount = max(ln.amount_minor - billed_minor, 0)
    else:
        ln = rating.rate_usage(ch, rated_q, cur)
        amount = max(ln.amount_minor - billed_minor, 0)
    unit = (Decimal(amount).scaleb(-minor_units(cur)) / late_q).normalize() if late_q else 0
    return {
        "line_key": f"{key}|late|{late_period}|{period}",
        "subscription_id": sub_id,
        "charge_ref": str(idx),
        "kind": ln.kind,
        "description": (
            f"late usage for {late_period}: {metric} {late_q} "
            f"({plan.code} v{plan.version}, {len(evs)} events)"
        )[:500],
        "period_start": ps,
        "period_end": pe,
        "quantity": str(late_q),
        "unit_price": str(unit),
        "proration": "1",
        "amount_minor": amount,
        "detail": {
            "tiers": ln.tiers,
            "late": True,
            "late_period": late_period,
            "late_quantity": str(late_q),
            "rated_quantity": str(rated_q),
            "billed_before_minor": billed_minor,
            "events": len(evs),
            "plan_version": plan.version,
        },
    }


def mark(s: Session, billed: list[tuple[uuid.UUID, Any]]) -> None:
    """Mark late events with the invoice that billed them: ``(event id, invoice id)``."""
    if not billed:
        return
    stmt = (
        sa.update(T_USE)
        .where(T_USE.c.id == sa.bindparam("e_id"))
        .values(late_invoice_id=sa.bindparam("inv_id"))
    )
    rows = [
        {"e_id": e, "inv_id": inv if isinstance(inv, uuid.UUID) else uuid.UUID(str(inv))}
        for e, inv in billed
    ]
    s.connection().execute(stmt, rows)
