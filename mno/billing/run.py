"""Billing runs: rate every tenant's subscriptions, usage and one-off charges for a period.

``--period YYYY-MM`` names a calendar month. In each tenant's timezone the run bills:

- the arrears of every subscription period that closes within the month (fixed charges in
  arrears, usage, time and buckets): its end, or its cancellation, falls in the month;
- the in-advance charges of every period that starts in the following month;
- on the run whose month covers a subscription's start, the in-advance charges of its
  periods that started before the month closed (the first period, prorated from the start).

A monthly plan thus gets October's arrears and usage and November's in-advance charges from
the ``2026-10`` run; a weekly plan gets the weeks that ended in October and the weeks that
start in November.

Idempotent by construction:
- a named run lock per period refuses a concurrent run; a lock left by a process that died
  on this host is taken over, one left by another host expires after ``LOCK_TTL``;
- tenants that already hold an invoice for the period are skipped (a rerun creates nothing);
- each chunk of tenants is one transaction, so a crash leaves whole chunks and a rerun
  completes the rest;
- ``billing_invoice_line.line_key`` is unique on (subscription, charge, period start, period
  end): a line already billed (by ``subscription create --invoice-now`` or by the run of the
  month before) is skipped, and invoices are unique on (tenant, period, currency, kind).

Usage is aggregated in SQL (GROUP BY tenant, metric within each window of time); invoices and
lines are inserted in bulk.
"""

from __future__ import annotations

import os
import socket
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from sqlmodel import Session

from mno import clock
from mno.billing import rating
from mno.billing.periods import (
    local_days,
    local_midnight,
    month_bounds,
    month_dates,
    parse_period,
    schedule,
    unit_index,
    unit_start,
)
from mno.errors import Conflict
from mno.money import minor_units, to_minor
from mno.store import leases
from mno.store.db import session_scope
from mno.store.models.billing import (
    BillingMetric,
    BillingRun,
    Charge,
    Coupon,
    Invoice,
    InvoiceLine,
    Plan,
    Subscription,
    TaxRate,
    TaxTreatment,
    UsageEvent,
)
from mno.store.models.tenancy import Tenant
from mno.store.types import new_id

CHUNK = 2000
LOCK_TTL = timedelta(minutes=10)
T_INV = Invoice.__table__  # type: ignore[attr-defined]
T_LINE = InvoiceLine.__table__  # type: ignore[attr-defined]
T_SUB = Subscription.__table__  # type: ignore[attr-defined]
T_USE = UsageEvent.__table__  # type: ignore[attr-defined]
T_CHG = Charge.__table__  # type: ignore[attr-defined]
T_TEN = Tenant.__table__  # type: ignore[attr-defined]
T_TAXT = TaxTreatment.__table__  # type: ignore[attr-defined]
USAGE_KINDS = ("usage", "time", "bucket")
NOTES = {
    "exempt": "Exempt from tax",
    "reverse_charge": "Reverse charge: the customer accounts for the tax",
}


@dataclass
class RunResult:
    run_id: str | None
    period: str
    tenants: int = 0
    invoices: int = 0
    lines: int = 0
    totals: dict[str, int] = field(default_factory=dict)
    failed: list[dict[str, str]] = field(default_factory=list)
    seconds: float = 0.0
    dry_run: bool = False
    preview: list[dict[str, Any]] = field(default_factory=list)

    def merge(self, other: RunResult) -> None:
        self.tenants += other.tenants
        self.invoices += other.invoices
        self.lines += other.lines
        for cur, v in other.totals.items():
            self.totals[cur] = self.totals.get(cur, 0) + v
        self.failed.extend(other.failed)
        self.preview.extend(other.preview)

    def as_dict(self) -> dict[str, Any]:
        return {
            "run": self.run_id,
            "period": self.period,
            "tenants": self.tenants,
            "invoices": self.invoices,
            "lines": self.lines,
            "totals": self.totals,
            "errors": self.failed,
            "duration_s": round(self.seconds, 3),
            "dry_run": self.dry_run,
        }


@dataclass
class _Catalog:
    plans: dict[uuid.UUID, Plan]
    coupons: dict[str, Coupon]
    taxes: dict[tuple[str, str | None], TaxRate]
    # metric code -> (aggregation, property for unique_count)
    metrics: dict[str, tuple[str, str | None]] = field(default_factory=dict)

    def aggregation(self, charge: dict[str, Any]) -> str:
        return charge.get("aggregation") or self.metrics.get(charge["metric"], ("sum", None))[0]

    def special(self) -> tuple[dict[str, str | None], set[str]]:
        """Metrics some charge aggregates as unique_count (with their property) or latest."""
        unique: dict[str, str | None] = {}
        latest: set[str] = set()
        for plan in self.plans.values():
            for ch in plan.charges:
                if ch.get("kind") not in USAGE_KINDS:
                    continue
                agg = self.aggregation(ch)
                if agg == "unique_count":
                    unique[ch["metric"]] = self.metrics.get(ch["metric"], ("", None))[1]
                elif agg == "latest":
                    latest.add(ch["metric"])
        return unique, latest


def _catalog(session: Session) -> _Catalog:
    plans = {p.id: p for p in session.execute(sa.select(Plan)).scalars()}
    coupons = {c.code: c for c in session.execute(sa.select(Coupon)).scalars()}
    taxes = {(t.country, t.region): t for t in session.execute(sa.select(TaxRate)).scalars()}
    metrics = {
        m.code: (m.aggregation, m.field)
        for m in session.execute(sa.select(BillingMetric)).scalars()
    }
    for p in plans.values():
        session.expunge(p)
    return _Catalog(plans, coupons, taxes, metrics)


# Periods of a subscription ------------------------------------------------------------


@dataclass(frozen=True)
class Slot:
    """One period of a subscription: nominal bounds (the line key), the part of it the
    subscription covers, and which of its charges this run bills."""

    k: int
    start: datetime
    end: datetime
    eff_start: datetime
    eff_end: datetime
    advance: bool
    arrears: bool
    prev_start: datetime | None


def slots(
    sub: Any, plan: Plan, tz: str, year: int, month: int, *, first_only: bool = False
) -> list[Slot]:
    """The periods of ``sub`` that the run of ``year-month`` bills, oldest first; with
    ``first_only``, just the first period's in-advance charges."""
    return list(
        _slots(
            plan.interval_unit or "month",
            plan.interval_every or 1,
            tz or "UTC",
            sub.started_at,
            sub.cancel_at,
            sub.cycle_limit,
            year,
            month,
            first_only,
        )
    )


@lru_cache(maxsize=16384)
def _slots(
    unit: str,
    every: int,
    tz: str,
    started_at: datetime,
    cancel_at: datetime | None,
    cycle_limit: int | None,
    year: int,
    month: int,
    first_only: bool,
) -> tuple[Slot, ...]:
    anchor = unit_index(started_at.astimezone(ZoneInfo(tz)).date(), unit)
    if first_only:
        first_end = unit_start(anchor + every, unit)
        periods: tuple[tuple[int, Any, Any], ...] = ((0, unit_start(anchor, unit), first_end),)
        ms = me = nme = local_midnight(first_end, tz)
    else:
        ms_d, me_d, nme_d = month_dates(year, month)
        periods = schedule(anchor, unit, every, ms_d, nme_d)
        ms, me, nme = (local_midnight(d, tz) for d in (ms_d, me_d, nme_d))
    first_run = first_only or ms <= started_at < me
    out = []
    for k, a, b in periods:
        if cycle_limit is not None and k >= cycle_limit:
            break
        ps, pe = local_midnight(a, tz), local_midnight(b, tz)
        es = max(ps, started_at)
        ee = min(pe, cancel_at) if cancel_at else pe
        if es >= ee:
            continue
        arrears = not first_only and ms < ee <= me
        advance = me <= ps < nme or (first_run and ps < me)
        if arrears or advance:
            prev = local_midnight(unit_start(anchor + (k - 1) * every, unit), tz) if k else None
            out.append(Slot(k, ps, pe, es, ee, advance, arrears, prev))
    return tuple(out)


def line_key(sub_id: Any, idx: int, start: datetime, end: datetime) -> str:
    return f"{sub_id}|{idx}|{start.isoformat()}|{end.isoformat()}"


def _wanted(ch: dict[str, Any], slot: Slot) -> bool:
    kind = ch.get("kind")
    if kind == "fixed":
        return slot.advance if ch.get("timing", "advance") == "advance" else slot.arrears
    if kind in USAGE_KINDS:
        return slot.arrears
    raise ValueError(f"unknown charge kind {kind!r}")


# Running a period ---------------------------------------------------------------------


def _owner() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{new_id().hex[:8]}"


def _dead_here(owner: str) -> bool:
    """True when ``owner`` names a process of this host that no longer exists."""
    host, _, rest = owner.partition(":")
    pid_s = rest.partition(":")[0]
    if host != socket.gethostname() or not pid_s.isdigit() or int(pid_s) == os.getpid():
        return False
    try:
        os.kill(int(pid_s), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return False


def _take_lock(s: Session, lock: str, owner: str) -> bool:
    if leases.acquire_lock(s, lock, owner, LOCK_TTL):
        return True
    holder = leases.lock_holder(s, lock)
    if holder is None or not _dead_here(holder[0]):
        return False
    from mno.store.models.core import LeaseLock

    t = LeaseLock.__table__  # type: ignore[attr-defined]
    now = clock.now()
    taken = s.execute(
        sa.update(t)
        .where(t.c.name == lock, t.c.owner == holder[0])
        .values(owner=owner, until=now + LOCK_TTL, updated_at=now)
    ).rowcount
    return bool(taken)


def run(
    period: str,
    *,
    url: str | None = None,
    tenant_key: str | None = None,
    dry_run: bool = False,
    tenant_keys: list[str] | None = None,
    progress: Callable[[int, int], None] | None = None,
    crash_after_chunks: int | None = None,
) -> RunResult:
    """Bill ``period`` (YYYY-MM) for every tenant, or one, or a given list (retry)."""
    from sqlalchemy.exc import IntegrityError

    year, month = parse_period(period)
    started = time.perf_counter()
    owner = _owner()
    lock = f"billing-run:{period}"
    result = RunResult(None, period, dry_run=dry_run)
    if not dry_run:
        with session_scope(url) as s:
            if not _take_lock(s, lock, owner):
                raise Conflict(
                    f"a billing run for {period} is already running", "wait for it to finish"
                )
            # we hold the lock: a run of this period still marked running has died
            s.execute(
                sa.update(BillingRun.__table__)  # type: ignore[attr-defined]
                .where(BillingRun.period == period, BillingRun.status == "running")
                .values(status="interrupted", finished_at=clock.now())
            )
            br = BillingRun(period=period, tenant_key=tenant_key)
            s.add(br)
            s.flush()
            result.run_id = str(br.id)
    try:
        with session_scope(url, write=False) as s:
            cat = _catalog(s)
            q = (
                sa.select(T_TEN.c.id)
                .where(
                    T_TEN.c.id.in_(sa.select(T_SUB.c.tenant_id).where(_billable_subs(year, month)))
                    | T_TEN.c.id.in_(
                        sa.select(T_CHG.c.tenant_id).where(T_CHG.c.status == "submitted")
                    )
                )
                .order_by(T_TEN.c.id)
            )
            if tenant_key:
                q = q.where(T_TEN.c.key == tenant_key)
            if tenant_keys:
                q = q.where(T_TEN.c.key.in_(tenant_keys))
            ids = list(s.execute(q).scalars())
        total = len(ids)
        for n, i in enumerate(range(0, total, CHUNK)):
            chunk = ids[i : i + CHUNK]
            if dry_run:
                with session_scope(url, write=False) as s:
                    part = _chunk(s, chunk, year, month, period, cat, None, write=False)
            else:
                try:
                    with session_scope(url) as s:
                        part = _chunk(s, chunk, year, month, period, cat, result.run_id, True)
                        _take_lock(s, lock, owner)
                except IntegrityError:
                    # a line billed elsewhere that the cheap check did not look for
                    with session_scope(url) as s:
                        part = _chunk(s, chunk, year, month, period, cat, result.run_id, True, True)
                        _take_lock(s, lock, owner)
            result.merge(part)
            if progress:
                progress(min(i + CHUNK, total), total)
            if crash_after_chunks is not None and n + 1 >= crash_after_chunks:
                raise RuntimeError("simulated crash")
        result.seconds = time.perf_counter() - started
        if not dry_run:
            from mno.store import outbox

            with session_scope(url) as s:
                br = s.get(BillingRun, uuid.UUID(result.run_id))
                assert br is not None
                br.status = "failed" if result.failed else "done"
                br.tenants, br.invoices = result.tenants, result.invoices
                br.failed, br.totals = result.failed, result.totals
                br.finished_at = clock.now()
                s.add(br)
                outbox.emit(s, "billing.run_finished", result.as_dict())
    finally:
        if not dry_run:
            with session_scope(url) as s:
                leases.release_lock(s, lock, owner)
    return result


def _billable_subs(year: int, month: int) -> Any:
    """Live subscriptions, and those that ended no earlier than the period's earliest start."""
    earliest = month_bounds(year, month, "UTC")[0] - timedelta(days=1)
    return sa.or_(
        T_SUB.c.status.in_(["active", "trialing"]),
        sa.and_(T_SUB.c.status == "canceled", T_SUB.c.ended_at > earliest),
    )


def retry_failed(run_id: str, url: str | None = None) -> RunResult:
    with session_scope(url, write=False) as s:
        br = s.get(BillingRun, uuid.UUID(run_id))
        if br is None:
            from mno.errors import NotFound

            raise NotFound(f"billing run {run_id} not found")
        keys = [f["tenant"] for f in br.failed]
        period = br.period
    if not keys:
        return RunResult(run_id, period)
    return run(period, url=url, tenant_keys=keys)


def _in(s: Session, column: Any, values: list[Any]) -> Any:
    return leases._id_in(s, column, values)


def existing_lines(s: Session, keys: Iterable[str]) -> dict[str, dict[str, Any]]:
    """Lines already billed among ``keys``: line key -> detail."""
    keys = list(keys)
    out: dict[str, dict[str, Any]] = {}
    for i in range(0, len(keys), 5000):
        part = keys[i : i + 5000]
        for k, detail in s.execute(
            sa.select(T_LINE.c.line_key, T_LINE.c.detail).where(_in(s, T_LINE.c.line_key, part))
        ):
            out[k] = detail or {}
    return out


def _num(value: Any) -> Decimal:
    """A quantity read from SQL, without the column's trailing zeros."""
    d = Decimal(str(value or 0))
    return d.quantize(Decimal(1)) if d == d.to_integral_value() else d.normalize()


UsageMap = dict[tuple[Any, str, datetime, datetime], dict[str, Decimal]]


def aggregate_usage(
    s: Session,
    windows: dict[tuple[datetime, datetime], list[Any]],
    unique: dict[str, str | None],
    latest: set[str],
) -> UsageMap:
    """Per (tenant, metric, window start, window end): sum, count and max, plus
    unique_count and latest for the metrics that need them; all computed in SQL."""
    usage: UsageMap = {}

    def slot(tid: Any, metric: str, ws: datetime, we: datetime) -> dict[str, Decimal]:
        return usage.setdefault((tid, metric, ws, we), {})

    for (ws, we), tids in windows.items():
        where = [_in(s, T_USE.c.tenant_id, tids), T_USE.c.at >= ws, T_USE.c.at < we]
        q = (
            sa.select(
                T_USE.c.tenant_id,
                T_USE.c.metric_code,
                sa.func.sum(T_USE.c.quantity),
                sa.func.count(),
                sa.func.max(T_USE.c.quantity),
            )
            .where(*where)
            .group_by(T_USE.c.tenant_id, T_USE.c.metric_code)
        )
        for tid, metric, total, cnt, mx in s.execute(q):
            agg = slot(tid, metric, ws, we)
            agg["sum"] = _num(total)
            agg["count"] = Decimal(cnt)
            agg["max"] = _num(mx)
        for metric, prop in unique.items():
            value = (
                T_USE.c.properties[prop].as_string()
                if prop
                else sa.func.coalesce(T_USE.c.idempotency_key, sa.cast(T_USE.c.id, sa.String))
            )
            q = (
                sa.select(T_USE.c.tenant_id, sa.func.count(sa.distinct(value)))
                .where(*where, T_USE.c.metric_code == metric)
                .group_by(T_USE.c.tenant_id)
            )
            for tid, cnt in s.execute(q):
                slot(tid, metric, ws, we)["unique_count"] = Decimal(cnt)
        if latest:
            ranked = (
                sa.select(
                    T_USE.c.tenant_id,
                    T_USE.c.metric_code,
                    T_USE.c.quantity,
                    sa.func.row_number()
                    .over(
                        partition_by=(T_USE.c.tenant_id, T_USE.c.metric_code),
                        order_by=(T_USE.c.at.desc(), T_USE.c.created_at.desc(), T_USE.c.id.desc()),
                    )
                    .label("rn"),
                )
                .where(*where, T_USE.c.metric_code.in_(sorted(latest)))
                .subquery()
            )
            q = sa.select(ranked.c.tenant_id, ranked.c.metric_code, ranked.c.quantity).where(
                ranked.c.rn == 1
            )
            for tid, metric, qty in s.execute(q):
                slot(tid, metric, ws, we)["latest"] = _num(qty)
    return usage


def _chunk(
    s: Session,
    ids: list[uuid.UUID],
    year: int,
    month: int,
    period: str,
    cat: _Catalog,
    run_id: str | None,
    write: bool,
    check_all: bool = False,
) -> RunResult:
    result = RunResult(run_id, period, dry_run=not write)
    invoiced = (
        sa.select(T_INV.c.id)
        .where(T_INV.c.tenant_id == T_TEN.c.id, T_INV.c.period == period, T_INV.c.kind == "period")
        .exists()
    )
    tenants = s.execute(
        sa.select(T_TEN.c.id, T_TEN.c.key, T_TEN.c.timezone, T_TEN.c.country, T_TEN.c.region)
        .where(_in(s, T_TEN.c.id, ids), ~invoiced)
        .order_by(T_TEN.c.id)
    ).all()
    todo = [t.id for t in tenants]
    if not todo:
        return result
    subs: dict[uuid.UUID, list[Any]] = defaultdict(list)
    sub_cols = [
        T_SUB.c[c]
        for c in (
            "id",
            "tenant_id",
            "plan_id",
            "started_at",
            "cancel_at",
            "cycle_limit",
            "periods_billed",
            "coupon_code",
        )
    ]
    for row in s.execute(
        sa.select(*sub_cols).where(_in(s, T_SUB.c.tenant_id, todo), _billable_subs(year, month))
    ):
        subs[row.tenant_id].append(row)
    treatments: dict[uuid.UUID, dict[tuple[str, str], Any]] = defaultdict(dict)
    for row in s.execute(sa.select(T_TAXT).where(_in(s, T_TAXT.c.tenant_id, todo))):
        treatments[row.tenant_id][(row.country, row.region or "")] = row
    # periods to bill, usage windows and the line keys that may already exist
    tz_of = {t.id: t.timezone or "UTC" for t in tenants}
    plan_slots: dict[uuid.UUID, list[Slot]] = {}
    windows: dict[tuple[datetime, datetime], list[Any]] = defaultdict(list)
    maybe: list[str] = []
    for tid, tsubs in subs.items():
        tz = tz_of[tid]
        ms = month_bounds(year, month, tz)[0]
        for sub in tsubs:
            plan = cat.plans.get(sub.plan_id)
            if plan is None:
                continue
            sl = slots(sub, plan, tz, year, month)
            plan_slots[sub.id] = sl
            has_usage = any(ch.get("kind") in USAGE_KINDS for ch in plan.charges)
            check = check_all or sub.started_at >= ms
            for slot in sl:
                if slot.arrears and has_usage:
                    windows[(slot.eff_start, slot.eff_end)].append(tid)
                for idx, ch in enumerate(plan.charges):
                    if ch.get("kind") == "bucket" and slot.prev_start is not None:
                        maybe.append(line_key(sub.id, idx, slot.prev_start, slot.start))
                    if check:
                        maybe.append(line_key(sub.id, idx, slot.start, slot.end))
    billed = existing_lines(s, maybe) if maybe else {}
    unique, latest = cat.special()
    usage = aggregate_usage(s, windows, unique, latest)
    charges: dict[uuid.UUID, list[Any]] = defaultdict(list)
    for row in s.execute(
        sa.select(T_CHG).where(_in(s, T_CHG.c.tenant_id, todo), T_CHG.c.status == "submitted")
    ):
        charges[row.tenant_id].append(row)
    inv_rows: list[dict[str, Any]] = []
    line_rows: list[dict[str, Any]] = []
    billed_charges: list[uuid.UUID] = []
    billed_subs: set[uuid.UUID] = set()
    now = clock.now()
    for t in tenants:
        try:
            invs = rate_tenant(
                t,
                subs.get(t.id, []),
                usage,
                charges.get(t.id, []),
                year,
                month,
                cat,
                billed=billed,
                slots_of=plan_slots,
                treatments=treatments.get(t.id),
            )
        except Exception as exc:  # noqa: BLE001 - recorded per tenant, others carry on
            result.failed.append({"tenant": t.key, "reason": str(exc)[:300]})
            continue
        result.tenants += 1
        for currency, (lines, totals) in invs.items():
            inv_id = new_id()
            inv_rows.append(
                _invoice_row(inv_id, t.id, run_id, period, "period", currency, totals, now)
            )
            for ln in lines:
                ln.update(id=new_id(), invoice_id=inv_id, created_at=now, updated_at=now)
                line_rows.append(ln)
                if ln["kind"] == "one_off":
                    billed_charges.append(uuid.UUID(ln["charge_ref"]))
                elif ln["subscription_id"] is not None:
                    billed_subs.add(ln["subscription_id"])
            result.invoices += 1
            result.totals[currency] = result.totals.get(currency, 0) + totals["total_minor"]
            if not write:
                result.preview.append({"tenant": t.key, "currency": currency, **totals})
    result.lines += len(line_rows)
    if write:
        _insert(s, inv_rows, line_rows, billed_charges, billed_subs, now)
    return result


def _invoice_row(
    inv_id: uuid.UUID,
    tenant_id: uuid.UUID,
    run_id: str | None,
    period: str,
    kind: str,
    currency: str,
    totals: dict[str, Any],
    now: datetime,
) -> dict[str, Any]:
    return {
        "id": inv_id,
        "created_at": now,
        "updated_at": now,
        "tenant_id": tenant_id,
        "run_id": uuid.UUID(run_id) if run_id else None,
        "period": period,
        "kind": kind,
        "issuer": "default",
        "status": "draft",
        "currency": currency,
        "paid_minor": 0,
        **totals,
    }


def _insert(
    s: Session,
    inv_rows: list[dict[str, Any]],
    line_rows: list[dict[str, Any]],
    billed_charges: list[uuid.UUID],
    billed_subs: set[uuid.UUID],
    now: datetime,
) -> None:
    if s.get_bind().dialect.name == "postgresql":
        _copy(s, T_INV, inv_rows, ("tax_detail",))
        _copy(s, T_LINE, line_rows, ("detail",))
    else:
        if inv_rows:
            s.execute(T_INV.insert(), inv_rows)
        for i in range(0, len(line_rows), 5000):
            s.execute(T_LINE.insert(), line_rows[i : i + 5000])
    if billed_charges:
        s.execute(
            T_CHG.update()
            .where(_in(s, T_CHG.c.id, billed_charges))
            .values(status="invoiced", updated_at=now)
        )
    if billed_subs:
        s.execute(
            T_SUB.update()
            .where(_in(s, T_SUB.c.id, list(billed_subs)))
            .values(periods_billed=T_SUB.c.periods_billed + 1)
        )


def _copy(
    s: Session, table: sa.Table, rows: list[dict[str, Any]], json_cols: tuple[str, ...]
) -> None:
    """Bulk insert with PostgreSQL's COPY, in the session's transaction (one round trip
    per batch instead of one per row)."""
    if not rows:
        return
    import json

    cols = list(rows[0])
    js = [c in json_cols for c in cols]
    names = ", ".join(f'"{c}"' for c in cols)
    raw = s.connection().connection.driver_connection
    assert raw is not None
    with raw.cursor() as cur, cur.copy(f'COPY "{table.name}" ({names}) FROM STDIN') as cp:
        for r in rows:
            cp.write_row([json.dumps(r[c]) if j else r[c] for c, j in zip(cols, js, strict=True)])


def invoice_first_period(session: Session, sub: Subscription, tenant: Tenant) -> Invoice | None:
    """Bill the first period's in-advance charges of ``sub`` now, in the caller's
    transaction. The lines carry the keys a later run would use, so that run skips them."""
    plan = session.get(Plan, sub.plan_id)
    assert plan is not None
    cat = _catalog(session)
    tz = tenant.timezone or "UTC"
    first = slots(sub, plan, tz, 2000, 1, first_only=True)
    keys = [line_key(sub.id, i, x.start, x.end) for x in first for i in range(len(plan.charges))]
    treatments = {
        (r.country, r.region or ""): r
        for r in session.execute(sa.select(T_TAXT).where(T_TAXT.c.tenant_id == tenant.id))
    }
    invs = rate_tenant(
        tenant,
        [sub],
        {},
        [],
        0,
        0,
        cat,
        billed=existing_lines(session, keys),
        slots_of={sub.id: first},
        treatments=treatments,
    )
    if not invs:
        return None
    now = clock.now()
    (currency, (lines, totals)) = next(iter(invs.items()))
    inv_id = new_id()
    period = f"sub-{sub.id.hex[:16]}"
    row = _invoice_row(inv_id, tenant.id, None, period, "subscription", currency, totals, now)
    for ln in lines:
        ln.update(id=new_id(), invoice_id=inv_id, created_at=now, updated_at=now)
    session.flush()
    _insert(session, [row], lines, [], set(), now)
    sub.periods_billed += 1
    session.add(sub)
    inv = session.get(Invoice, inv_id)
    assert inv is not None
    return inv


def rate_tenant(
    t: Any,
    subs: list[Any],
    usage: UsageMap,
    charges: list[Any],
    year: int,
    month: int,
    cat: _Catalog,
    *,
    billed: dict[str, dict[str, Any]] | None = None,
    slots_of: dict[Any, list[Slot]] | None = None,
    treatments: dict[tuple[str, str], Any] | None = None,
) -> dict[str, tuple[list[dict[str, Any]], dict[str, Any]]]:
    """Lines, then discounts, then tax, then total, per currency. Pure given its inputs.

    ``billed`` holds lines that already exist (skipped; buckets read their rollover from
    them); ``slots_of`` gives each subscription's periods when they are known already."""
    tz = t.timezone or "UTC"
    billed = billed or {}
    lines: dict[str, list[dict[str, Any]]] = defaultdict(list)
    discounts: dict[str, Decimal] = defaultdict(Decimal)
    for sub in subs:
        plan = cat.plans[sub.plan_id]
        cur = plan.currency
        sl = (slots_of or {}).get(sub.id)
        if sl is None:
            sl = slots(sub, plan, tz, year, month)
        sub_lines = _sub_lines(t.id, sub, plan, tz, sl, usage, billed, cat)
        lines[cur].extend(sub_lines)
        if sub_lines and sub.coupon_code and sub.coupon_code in cat.coupons:
            c = cat.coupons[sub.coupon_code]
            applies = (
                c.duration == "forever"
                or (c.duration == "once" and sub.periods_billed == 0)
                or (c.duration == "repeating" and sub.periods_billed < (c.periods or 0))
            )
            if applies and (c.kind == "percentage" or (c.currency or cur) == cur):
                base = sum((Decimal(x["amount_minor"]) for x in sub_lines), Decimal(0))
                sub_total = base.scaleb(-minor_units(cur))
                discounts[cur] += rating.discount(
                    sub_total, c.kind, rating.to_decimal(c.value), cur
                )
    for ch in charges:
        amt = Decimal(ch.amount_minor)
        ln = rating.fixed(amt.scaleb(-minor_units(ch.currency)), ch.currency)
        ln.kind = "one_off"
        lines[ch.currency].append(
            _line(ln, f"charge|{ch.id}", None, str(ch.id), None, None, ch.description)
        )
    out: dict[str, tuple[list[dict[str, Any]], dict[str, Any]]] = {}
    country = t.country or ""
    rate = cat.taxes.get((country, t.region)) or cat.taxes.get((country, None))
    treat = None
    if treatments:
        treat = treatments.get((country, t.region or "")) or treatments.get((country, ""))
    for cur, lns in lines.items():
        if not lns:
            continue
        out[cur] = (lns, invoice_totals(lns, discounts.get(cur, Decimal(0)), cur, rate, treat))
    return out


def invoice_totals(
    lns: list[dict[str, Any]], discount: Decimal, cur: str, rate: Any, treat: Any
) -> dict[str, Any]:
    """Subtotal, then discounts, then tax (once per invoice), then the total (>= 0).

    An exempt or reverse-charged tenant pays no tax: the invoice carries a note instead."""
    mu = minor_units(cur)
    subtotal = sum(x["amount_minor"] for x in lns)
    disc = min(to_minor(discount, cur), subtotal)
    base = Decimal(subtotal - disc).scaleb(-mu)
    tax_minor = 0
    added = 0
    detail: dict[str, Any] = {}
    if treat is not None:
        note = NOTES.get(treat.treatment, treat.treatment)
        if treat.tax_id:
            note += f" (tax id {treat.tax_id})"
        if treat.note:
            note += f". {treat.note}"
        detail = {"treatment": treat.treatment, "note": note, "country": treat.country}
        if treat.region:
            detail["region"] = treat.region
        if treat.tax_id:
            detail["tax_id"] = treat.tax_id
        if rate is not None:
            detail.update(rate=rate.code, percent="0", standard_percent=rate.rate)
    elif rate is not None:
        tx = rating.tax(base, rating.to_decimal(rate.rate), rate.inclusive, cur)
        tax_minor = to_minor(tx, cur)
        added = 0 if rate.inclusive else tax_minor
        detail = {"rate": rate.code, "percent": rate.rate, "inclusive": rate.inclusive}
    total = subtotal - disc + added
    return {
        "subtotal_minor": subtotal,
        "discount_minor": disc,
        "tax_minor": tax_minor,
        "credit_minor": 0,
        "total_minor": max(total, 0),
        "tax_detail": detail,
    }


def _sub_lines(
    tid: Any,
    sub: Any,
    plan: Plan,
    tz: str,
    sl: list[Slot],
    usage: UsageMap,
    billed: dict[str, dict[str, Any]],
    cat: _Catalog,
) -> list[dict[str, Any]]:
    cur = plan.currency
    out: list[dict[str, Any]] = []
    carried: dict[str, Decimal] = {}  # bucket rollover out, by line key, within this rating
    for slot in sl:
        for idx, ch in enumerate(plan.charges):
            if not _wanted(ch, slot):
                continue
            kind = ch["kind"]
            key = line_key(sub.id, idx, slot.start, slot.end)
            if key in billed:
                if kind == "bucket":
                    carried[key] = Decimal(str(billed[key].get("rollover_out", "0")))
                continue
            if kind == "fixed":
                days = local_days(slot.start, slot.end, tz)
                used = local_days(slot.eff_start, slot.eff_end, tz)
                fields = _fixed_fields(str(ch["amount"]), cur, min(used, days), days)
                out.append(
                    {
                        "line_key": key,
                        "subscription_id": sub.id,
                        "charge_ref": str(idx),
                        "kind": "fixed",
                        "description": f"{plan.code} fixed",
                        "period_start": slot.start,
                        "period_end": slot.end,
                        **fields,
                        "detail": {"tiers": []},
                    }
                )
                continue
            else:
                agg = usage.get((tid, ch["metric"], slot.eff_start, slot.eff_end), {})
                qty = agg.get(cat.aggregation(ch), Decimal(0))
                if kind == "usage":
                    ln = rating.rate_usage(ch, qty, cur)
                elif kind == "time":
                    ln = rating.time_minutes(
                        [qty] if qty else [],
                        rating.to_decimal(ch.get("rate", "0")),
                        cur,
                        rating.to_decimal(ch.get("minimum", 0)),
                        rating.to_decimal(ch.get("round_up_to", 1)),
                    )
                else:
                    rollover_in = Decimal(0)
                    if slot.prev_start is not None:
                        prev = line_key(sub.id, idx, slot.prev_start, slot.start)
                        if prev in carried:
                            rollover_in = carried[prev]
                        elif prev in billed:
                            rollover_in = Decimal(str(billed[prev].get("rollover_out", "0")))
                    ln, carried[key] = rating.bucket(
                        qty,
                        rating.to_decimal(ch.get("included", 0)),
                        rollover_in,
                        rating.to_decimal(ch.get("overage_price", 0)),
                        cur,
                        rating.to_decimal(ch.get("rollover_cap", 0)),
                    )
            desc = f"{plan.code} {kind}"
            out.append(_line(ln, key, sub.id, str(idx), slot.start, slot.end, desc))
    return out


@lru_cache(maxsize=4096)
def _fixed_fields(amount: str, cur: str, used: int, days: int) -> dict[str, Any]:
    """A fixed charge's line fields for ``used`` of ``days`` days (pure, so memoised)."""
    factor = Decimal(1) if used >= days else Decimal(used) / Decimal(days)
    ln = rating.fixed(rating.to_decimal(amount), cur, factor)
    return {
        "quantity": str(ln.quantity),
        "unit_price": str(ln.unit_price),
        "proration": str(ln.proration),
        "amount_minor": ln.amount_minor,
    }


def _line(
    ln: rating.Line, key: str, sub_id: uuid.UUID | None, ref: str, ps: Any, pe: Any, desc: str
) -> dict[str, Any]:
    return {
        "line_key": key,
        "subscription_id": sub_id,
        "charge_ref": ref,
        "kind": ln.kind,
        "description": desc[:500],
        "period_start": ps,
        "period_end": pe,
        "quantity": str(ln.quantity),
        "unit_price": str(ln.unit_price),
        "proration": str(ln.proration),
        "amount_minor": ln.amount_minor,
        "detail": {"tiers": ln.tiers, **ln.detail},
    }
