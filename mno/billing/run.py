"""Billing runs: rate every tenant's subscriptions, usage and one-off charges for a period.

Idempotent by construction:
- a named run lock per period refuses a concurrent run;
- tenants that already hold an invoice for the period are skipped (a rerun creates nothing);
- each chunk of tenants is one transaction, so a crash leaves whole chunks and a rerun
  completes the rest;
- ``billing_invoice_line.line_key`` is unique on (subscription, charge, period start, period
  end), and invoices are unique on (tenant, period, currency, kind).

Usage is aggregated in SQL (GROUP BY tenant, metric within each timezone's bounds); invoices
and lines are inserted in bulk.
"""

from __future__ import annotations

import os
import time
import uuid
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlmodel import Session

from mno import clock
from mno.billing import rating
from mno.billing.periods import local_days, month_bounds, next_month, parse_period
from mno.errors import Conflict
from mno.money import minor_units, to_minor
from mno.store import leases
from mno.store.db import session_scope
from mno.store.models.billing import (
    BillingRun,
    Charge,
    Coupon,
    Invoice,
    InvoiceLine,
    Plan,
    Subscription,
    TaxRate,
    UsageEvent,
)
from mno.store.models.tenancy import Tenant
from mno.store.types import new_id

CHUNK = 2000
T_INV = Invoice.__table__  # type: ignore[attr-defined]
T_LINE = InvoiceLine.__table__  # type: ignore[attr-defined]
T_SUB = Subscription.__table__  # type: ignore[attr-defined]
T_USE = UsageEvent.__table__  # type: ignore[attr-defined]
T_CHG = Charge.__table__  # type: ignore[attr-defined]
T_TEN = Tenant.__table__  # type: ignore[attr-defined]


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


def _catalog(session: Session) -> _Catalog:
    plans = {p.id: p for p in session.execute(sa.select(Plan)).scalars()}
    coupons = {c.code: c for c in session.execute(sa.select(Coupon)).scalars()}
    taxes = {(t.country, t.region): t for t in session.execute(sa.select(TaxRate)).scalars()}
    for p in plans.values():
        session.expunge(p)
    return _Catalog(plans, coupons, taxes)


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
    year, month = parse_period(period)
    started = time.perf_counter()
    owner = f"run-{os.getpid()}-{new_id().hex[:8]}"
    lock = f"billing-run:{period}"
    result = RunResult(None, period, dry_run=dry_run)
    if not dry_run:
        with session_scope(url) as s:
            if not leases.acquire_lock(s, lock, owner, timedelta(hours=2)):
                raise Conflict(
                    f"a billing run for {period} is already running", "wait for it to finish"
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
                    T_TEN.c.id.in_(
                        sa.select(T_SUB.c.tenant_id).where(_billable_subs(year, month))
                    ).__or__(
                        T_TEN.c.id.in_(
                            sa.select(T_CHG.c.tenant_id).where(T_CHG.c.status == "submitted")
                        )
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
                    _chunk(s, chunk, year, month, period, cat, result, None, write=False)
            else:
                with session_scope(url) as s:
                    _chunk(s, chunk, year, month, period, cat, result, result.run_id, write=True)
                    leases.acquire_lock(s, lock, owner, timedelta(hours=2))
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


def _chunk(
    s: Session,
    ids: list[uuid.UUID],
    year: int,
    month: int,
    period: str,
    cat: _Catalog,
    result: RunResult,
    run_id: str | None,
    write: bool,
) -> None:
    tenants = s.execute(
        sa.select(T_TEN.c.id, T_TEN.c.key, T_TEN.c.timezone, T_TEN.c.country, T_TEN.c.region).where(
            T_TEN.c.id.in_(ids)
        )
    ).all()
    done = set(
        s.execute(
            sa.select(T_INV.c.tenant_id).where(
                T_INV.c.tenant_id.in_(ids), T_INV.c.period == period, T_INV.c.kind == "period"
            )
        ).scalars()
    )
    subs: dict[uuid.UUID, list[Any]] = defaultdict(list)
    for row in s.execute(
        sa.select(T_SUB).where(T_SUB.c.tenant_id.in_(ids), _billable_subs(year, month))
    ):
        subs[row.tenant_id].append(row)
    by_tz: dict[str, list[uuid.UUID]] = defaultdict(list)
    for t in tenants:
        by_tz[t.timezone or "UTC"].append(t.id)
    usage: dict[tuple[uuid.UUID, str], dict[str, Decimal]] = {}
    for tz, tids in by_tz.items():
        start, end = month_bounds(year, month, tz)
        q = (
            sa.select(
                T_USE.c.tenant_id,
                T_USE.c.metric_code,
                sa.func.sum(T_USE.c.quantity),
                sa.func.count(),
                sa.func.max(T_USE.c.quantity),
            )
            .where(T_USE.c.tenant_id.in_(tids), T_USE.c.at >= start, T_USE.c.at < end)
            .group_by(T_USE.c.tenant_id, T_USE.c.metric_code)
        )
        for tid, metric, total, cnt, mx in s.execute(q):
            usage[(tid, metric)] = {
                "sum": Decimal(str(total or 0)),
                "count": Decimal(cnt),
                "max": Decimal(str(mx or 0)),
            }
    charges: dict[uuid.UUID, list[Any]] = defaultdict(list)
    for row in s.execute(
        sa.select(T_CHG).where(T_CHG.c.tenant_id.in_(ids), T_CHG.c.status == "submitted")
    ):
        charges[row.tenant_id].append(row)
    inv_rows: list[dict[str, Any]] = []
    line_rows: list[dict[str, Any]] = []
    billed_charges: list[uuid.UUID] = []
    billed_subs: list[uuid.UUID] = []
    now = clock.now()
    for t in tenants:
        if t.id in done:
            continue
        try:
            invs = rate_tenant(
                t, subs.get(t.id, []), usage, charges.get(t.id, []), year, month, cat
            )
        except Exception as exc:  # noqa: BLE001 - recorded per tenant, others carry on
            result.failed.append({"tenant": t.key, "reason": str(exc)[:300]})
            continue
        result.tenants += 1
        for currency, (lines, totals) in invs.items():
            inv_id = new_id()
            inv_rows.append(
                {
                    "id": inv_id,
                    "created_at": now,
                    "updated_at": now,
                    "tenant_id": t.id,
                    "run_id": uuid.UUID(run_id) if run_id else None,
                    "period": period,
                    "kind": "period",
                    "issuer": "default",
                    "status": "draft",
                    "currency": currency,
                    "paid_minor": 0,
                    **totals,
                }
            )
            for ln in lines:
                ln.update(id=new_id(), invoice_id=inv_id, created_at=now, updated_at=now)
                line_rows.append(ln)
                if ln["kind"] == "one_off":
                    billed_charges.append(uuid.UUID(ln["charge_ref"]))
            result.invoices += 1
            result.totals[currency] = result.totals.get(currency, 0) + totals["total_minor"]
            if not write:
                result.preview.append({"tenant": t.key, "currency": currency, **totals})
        billed_subs.extend(sub.id for sub in subs.get(t.id, []))
    result.lines += len(line_rows)
    if not write:
        return
    if inv_rows:
        s.execute(T_INV.insert(), inv_rows)
    for i in range(0, len(line_rows), 5000):
        s.execute(T_LINE.insert(), line_rows[i : i + 5000])
    if billed_charges:
        s.execute(
            T_CHG.update()
            .where(T_CHG.c.id.in_(billed_charges))
            .values(status="invoiced", updated_at=now)
        )
    if billed_subs:
        s.execute(
            T_SUB.update()
            .where(T_SUB.c.id.in_(billed_subs))
            .values(periods_billed=T_SUB.c.periods_billed + 1)
        )


def rate_tenant(
    t: Any,
    subs: list[Any],
    usage: dict[tuple[uuid.UUID, str], dict[str, Decimal]],
    charges: list[Any],
    year: int,
    month: int,
    cat: _Catalog,
) -> dict[str, tuple[list[dict[str, Any]], dict[str, Any]]]:
    """Lines, then discounts, then tax, then total, per currency. Pure given its inputs."""
    tz = t.timezone or "UTC"
    start, end = month_bounds(year, month, tz)
    nstart, nend = month_bounds(*next_month(year, month), tz)
    lines: dict[str, list[dict[str, Any]]] = defaultdict(list)
    discounts: dict[str, Decimal] = defaultdict(Decimal)
    for sub in subs:
        plan = cat.plans[sub.plan_id]
        cur = plan.currency
        sub_lines: list[dict[str, Any]] = []
        if sub.cycle_limit is not None and sub.periods_billed >= sub.cycle_limit:
            continue
        for idx, ch in enumerate(plan.charges):
            kind = ch.get("kind")
            if kind == "fixed":
                advance = ch.get("timing", "advance") == "advance"
                ps, pe = (nstart, nend) if advance else (start, end)
                if sub.started_at >= pe or (sub.cancel_at and sub.cancel_at <= ps):
                    continue
                eff_start = max(ps, sub.started_at)
                eff_end = min(pe, sub.cancel_at) if sub.cancel_at else pe
                days = local_days(ps, pe, tz)
                used = local_days(eff_start, eff_end, tz)
                factor = Decimal(1) if used >= days else Decimal(used) / Decimal(days)
                ln = rating.fixed(rating.to_decimal(ch["amount"]), cur, factor)
            elif kind in ("usage", "time", "bucket"):
                ps, pe = start, end
                if sub.started_at >= pe:
                    continue
                agg = usage.get((t.id, ch["metric"]), {})
                qty = agg.get(ch.get("aggregation", "sum"), agg.get("sum", Decimal(0)))
                if kind == "usage":
                    ln = rating.rate_usage(ch, qty, cur)
                elif kind == "time":
                    ln = rating.time_minutes(
                        [qty],
                        rating.to_decimal(ch.get("rate", "0")),
                        cur,
                        rating.to_decimal(ch.get("minimum", 0)),
                        rating.to_decimal(ch.get("round_up_to", 1)),
                    )
                else:
                    ln, _ = rating.bucket(
                        qty,
                        rating.to_decimal(ch.get("included", 0)),
                        Decimal(0),
                        rating.to_decimal(ch.get("overage_price", 0)),
                        cur,
                        rating.to_decimal(ch.get("rollover_cap", 0)),
                    )
            else:
                raise ValueError(f"plan {plan.code}: unknown charge kind {kind!r}")
            sub_lines.append(
                _line(
                    ln,
                    f"{sub.id}|{idx}|{ps.isoformat()}|{pe.isoformat()}",
                    sub.id,
                    str(idx),
                    ps,
                    pe,
                    f"{plan.code} {kind}",
                )
            )
        lines[cur].extend(sub_lines)
        if sub.coupon_code and sub.coupon_code in cat.coupons:
            c = cat.coupons[sub.coupon_code]
            applies = (
                c.duration == "forever"
                or (c.duration == "once" and sub.periods_billed == 0)
                or (c.duration == "repeating" and sub.periods_billed < (c.periods or 0))
            )
            if applies:
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
    rate = cat.taxes.get((t.country, t.region)) or cat.taxes.get((t.country, None))
    for cur, lns in lines.items():
        if not lns:
            continue
        mu = minor_units(cur)
        subtotal = sum(x["amount_minor"] for x in lns)
        disc = min(to_minor(discounts.get(cur, Decimal(0)), cur), subtotal)
        base = Decimal(subtotal - disc).scaleb(-mu)
        tax_minor = 0
        detail: dict[str, Any] = {}
        if rate is not None:
            tx = rating.tax(base, rating.to_decimal(rate.rate), rate.inclusive, cur)
            tax_minor = to_minor(tx, cur)
            detail = {"rate": rate.code, "percent": rate.rate, "inclusive": rate.inclusive}
        total = subtotal - disc + (0 if rate is not None and rate.inclusive else tax_minor)
        out[cur] = (
            lns,
            {
                "subtotal_minor": subtotal,
                "discount_minor": disc,
                "tax_minor": tax_minor,
                "credit_minor": 0,
                "total_minor": max(total, 0),
                "tax_detail": detail,
            },
        )
    return out


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
