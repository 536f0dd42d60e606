"""Rating one tenant for a billing run: the lines of each subscription period, then
discounts, then tax (or an exemption or reverse-charge note), then the total.

Pure given its inputs: the catalogue, the periods to bill (``slots``), the usage aggregated
in SQL and the lines that exist already (skipped; buckets read their rollover from them).
A bucket (retainer) charge bills two lines per period: its recurring ``amount`` as a fixed
line (``fee_key``; in advance or in arrears as its ``timing`` says, prorated by day like a
fixed charge) and, in arrears, the overage beyond the hours rolled over and included.
The fixed lines of a bundle's part plans become one ``bundle`` line per bundle
subscription and period (``bundle_rating``).
One charge's price (tiers, packages, rounding) is ``rating``'s; writing the drafts is
``run``'s; issuing, paying and voiding them is ``invoices``'.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from sqlmodel import Session

from mno.billing import bundle_rating, rating
from mno.billing.periods import (
    local_days,
    local_midnight,
    month_dates,
    schedule,
    unit_index,
    unit_start,
)
from mno.money import minor_units, to_decimal, to_minor
from mno.store.models.billing import BillingMetric, Coupon, Plan, TaxRate

USAGE_KINDS = ("usage", "time", "bucket")
RATED_MAX = 20_000  # usage lines a run keeps rated (see Catalog.rate_usage)
NOTES = {
    "exempt": "Exempt from tax",
    "reverse_charge": "Reverse charge: the customer accounts for the tax",
}


# (tenant, metric, window start, window end) -> aggregations ("sum", "count", "max",
# "unique_count", "latest": Decimal) and, for time metrics, "entries": each entry's minutes
UsageMap = dict[tuple[Any, str, datetime, datetime], dict[str, Any]]


@dataclass(frozen=True, slots=True)
class PlanView:
    """The plan fields rating reads, as a plain object (cheap attribute access)."""

    id: uuid.UUID
    code: str
    version: int
    currency: str
    interval_unit: str
    interval_every: int
    charges: list[dict[str, Any]]
    setup_fee: str = "0"

    @classmethod
    def of(cls, p: Plan) -> PlanView:
        return cls(
            p.id,
            p.code,
            p.version,
            p.currency,
            p.interval_unit,
            p.interval_every,
            p.charges,
            p.setup_fee or "0",
        )


@dataclass
class Catalog:
    """What rating reads besides the tenant: plans, coupons, tax rates and metrics."""

    plans: dict[uuid.UUID, Plan | PlanView]
    coupons: dict[str, Coupon]
    taxes: dict[tuple[str, str | None], TaxRate]
    # metric code -> (aggregation, property for unique_count)
    metrics: dict[str, tuple[str, str | None]] = field(default_factory=dict)
    # bundles: part subscription id -> bundle subscription id, and each one's bundle
    bundle_parts: dict[Any, uuid.UUID] = field(default_factory=dict)
    bundles: dict[uuid.UUID, bundle_rating.BundleView] = field(default_factory=dict)
    # usage lines rated during this run: (plan, charge index, quantity) -> line
    rated: dict[tuple[Any, int, str], rating.Line] = field(default_factory=dict)

    def rate_usage(self, plan: Plan | PlanView, idx: int, qty: Decimal) -> rating.Line:
        """``rating.rate_usage`` of charge ``idx`` of ``plan``, once per quantity in a run
        (the catalogue is read once per run, so its plans do not change meanwhile). The
        line is shared by every tenant with that quantity: callers copy, never change it."""
        key = (plan.id, idx, str(qty))
        ln = self.rated.get(key)
        if ln is None:
            if len(self.rated) >= RATED_MAX:
                self.rated.clear()  # memory stays flat however many quantities there are
            ln = self.rated[key] = rating.rate_usage(plan.charges[idx], qty, plan.currency)
        return ln

    def aggregation(self, charge: dict[str, Any]) -> str:
        return charge.get("aggregation") or self.metrics.get(charge["metric"], ("sum", None))[0]

    def aggregations(self) -> set[str]:
        """How the usage charges of the catalogue aggregate (``sum``, ``count``, …)."""
        return {
            self.aggregation(ch)
            for plan in self.plans.values()
            for ch in plan.charges
            if ch.get("kind") in USAGE_KINDS
        }

    def time_metrics(self) -> set[str]:
        """Metrics some time charge rates entry by entry."""
        return {
            ch["metric"]
            for plan in self.plans.values()
            for ch in plan.charges
            if ch.get("kind") == "time"
        }

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


def load_catalog(session: Session) -> Catalog:
    """Every plan (as a ``PlanView``), coupon, tax rate and metric, read once per run."""
    plans = {p.id: p for p in session.execute(sa.select(Plan)).scalars()}
    coupons = {c.code: c for c in session.execute(sa.select(Coupon)).scalars()}
    taxes = {(t.country, t.region): t for t in session.execute(sa.select(TaxRate)).scalars()}
    metrics = {
        m.code: (m.aggregation, m.field)
        for m in session.execute(sa.select(BillingMetric)).scalars()
    }
    views = {pid: PlanView.of(p) for pid, p in plans.items()}
    parts, bundles = bundle_rating.load(session)
    return Catalog(dict(views), coupons, taxes, metrics, parts, bundles)


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


def billing_start(sub: Any) -> datetime:
    """Where billing starts: the end of the trial, if any, else the subscription's start."""
    start: datetime = getattr(sub, "trial_ends_at", None) or sub.started_at
    return start


def slots(
    sub: Any,
    plan: Plan | PlanView,
    tz: str,
    year: int,
    month: int,
    *,
    first_only: bool = False,
) -> list[Slot]:
    """The periods of ``sub`` that the run of ``year-month`` bills, oldest first; with
    ``first_only``, just the first period's in-advance charges. A trial is not billed:
    the periods start at its end."""
    return list(
        _slots(
            plan.interval_unit or "month",
            plan.interval_every or 1,
            tz or "UTC",
            billing_start(sub),
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
    return f"{sub_id}|{idx}|{_iso(start)}|{_iso(end)}"


def fee_key(sub_id: Any, idx: int, start: datetime, end: datetime) -> str:
    """The line key of a bucket's recurring fee for a period (its overage has ``line_key``)."""
    return f"{line_key(sub_id, idx, start, end)}|fee"


def setup_key(sub_id: Any) -> str:
    """The setup fee's line key: one per subscription, so it is billed once."""
    return f"{sub_id}|setup"


def has_setup_fee(plan: Plan | PlanView) -> bool:
    return _positive(plan.setup_fee or "0")


@lru_cache(maxsize=1024)
def _positive(amount: str) -> bool:
    return to_decimal(amount) > 0


@lru_cache(maxsize=16384)
def _span(start: datetime, end: datetime, tz: str) -> str:
    """A period as local dates, both included: ``2026-11-01 to 2026-11-30``."""
    zone = ZoneInfo(tz or "UTC")
    last = end.astimezone(zone).date() - timedelta(days=1)
    return f"{start.astimezone(zone).date().isoformat()} to {last.isoformat()}"


@lru_cache(maxsize=65536)
def _iso(at: datetime) -> str:
    return at.isoformat()


def _fee_due(ch: dict[str, Any], slot: Slot) -> bool:
    """Whether this run bills a bucket's recurring fee (its ``amount``) for ``slot``: in
    advance or in arrears, as the charge's ``timing`` says."""
    if not _positive(str(ch.get("amount") or "0")):
        return False
    return slot.advance if ch.get("timing", "advance") == "advance" else slot.arrears


def _wanted(ch: dict[str, Any], slot: Slot) -> bool:
    kind = ch.get("kind")
    if kind == "fixed":
        return slot.advance if ch.get("timing", "advance") == "advance" else slot.arrears
    if kind in USAGE_KINDS:
        return slot.arrears
    raise ValueError(f"unknown charge kind {kind!r}")


# Running a period ---------------------------------------------------------------------


def coupon_applies(coupon: Any, periods_used: int) -> bool:
    """Whether a coupon still applies after ``periods_used`` billed periods."""
    return (
        coupon.duration == "forever"
        or (coupon.duration == "once" and periods_used == 0)
        or (coupon.duration == "repeating" and periods_used < (coupon.periods or 0))
    )


def rate_tenant(
    t: Any,
    subs: list[Any],
    usage: UsageMap,
    charges: list[Any],
    year: int,
    month: int,
    cat: Catalog,
    *,
    billed: dict[str, dict[str, Any]] | None = None,
    slots_of: dict[Any, list[Slot]] | None = None,
    treatments: dict[tuple[str, str], Any] | None = None,
    late: dict[str, list[dict[str, Any]]] | None = None,
) -> dict[str, tuple[list[dict[str, Any]], dict[str, Any]]]:
    """Lines, then discounts, then tax, then total, per currency. Pure given its inputs.

    ``billed`` holds lines that already exist (skipped; buckets read their rollover from
    them); ``slots_of`` gives each subscription's periods when they are known already;
    ``late`` adds the lines of late usage (``late_usage``), per currency, which coupons
    leave alone."""
    tz = t.timezone or "UTC"
    billed = billed or {}
    lines: dict[str, list[dict[str, Any]]] = defaultdict(list)
    discounts: dict[str, Decimal] = defaultdict(Decimal)
    # most catalogues sell no bundle: no collector to make for every tenant then
    bundled = (
        bundle_rating.BundleLines(cat.bundle_parts, cat.bundles, tz, billed)
        if cat.bundle_parts
        else None
    )
    for sub in subs:
        plan = cat.plans[sub.plan_id]
        cur = plan.currency
        sl = (slots_of or {}).get(sub.id)
        if sl is None:
            sl = slots(sub, plan, tz, year, month)
        sub_lines = _sub_lines(t.id, sub, plan, tz, sl, usage, billed, cat)
        if sub_lines and sub.periods_billed == 0 and has_setup_fee(plan):
            # the setup fee goes on the subscription's first invoice, once (unique key)
            key = setup_key(sub.id)
            if key not in billed:
                ln = rating.fixed(to_decimal(plan.setup_fee), cur)
                ln.kind = "setup"
                sub_lines.append(
                    _line(ln, key, sub.id, "setup", None, None, f"{plan.code} setup fee")
                )
        if bundled is not None and bundled.owns(sub.id):
            # a bundle's part: its fixed charges go into the bundle's one line
            sub_lines = bundled.take(sub.id, plan.code, sl, sub_lines)
        lines[cur].extend(sub_lines)
        if sub_lines and sub.coupon_code and sub.coupon_code in cat.coupons:
            c = cat.coupons[sub.coupon_code]
            if coupon_applies(c, sub.periods_billed + (sub.coupon_periods_used or 0)) and (
                c.kind == "percentage" or (c.currency or cur) == cur
            ):
                base = sum((Decimal(x["amount_minor"]) for x in sub_lines), Decimal(0))
                sub_total = base.scaleb(-minor_units(cur))
                off = rating.discount(sub_total, c.kind, to_decimal(c.value), cur)
                discounts[cur] += off
                if off and sub_total:
                    # the share of each line the coupon took, so that a later proration
                    # credit gives back only what was paid
                    share = str((off / sub_total).normalize())
                    for x in sub_lines:
                        x["detail"]["discount_share"] = share
    for cur, bundle_line in bundled.lines() if bundled is not None else ():
        lines[cur].append(bundle_line)
    for ch in charges:
        amt = Decimal(ch.amount_minor)
        ln = rating.fixed(amt.scaleb(-minor_units(ch.currency)), ch.currency)
        ln.kind = "one_off"
        lines[ch.currency].append(
            _line(ln, f"charge|{ch.id}", None, str(ch.id), None, None, ch.description)
        )
    for cur, late_lines in (late or {}).items():
        lines[cur].extend(late_lines)
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
        tx = rating.tax(base, to_decimal(rate.rate), rate.inclusive, cur)
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
    plan: Plan | PlanView,
    tz: str,
    sl: list[Slot],
    usage: UsageMap,
    billed: dict[str, dict[str, Any]],
    cat: Catalog,
) -> list[dict[str, Any]]:
    cur = plan.currency
    out: list[dict[str, Any]] = []
    carried: dict[str, Decimal] = {}  # bucket rollover out, by line key, within this rating
    sid = str(sub.id)  # the keys' prefix, made once (str of a UUID is not free)
    for slot in sl:
        for idx, ch in enumerate(plan.charges):
            kind = ch["kind"]
            if kind == "bucket" and _fee_due(ch, slot):
                # the retainer's recurring fee: a fixed line beside the overage
                fee = fee_key(sid, idx, slot.start, slot.end)
                if fee not in billed:
                    out.append(_fixed_line(sub.id, plan, tz, slot, idx, ch, fee, "bucket fee"))
            if not _wanted(ch, slot):
                continue
            key = line_key(sid, idx, slot.start, slot.end)
            if key in billed:
                if kind == "bucket":
                    carried[key] = Decimal(str(billed[key].get("rollover_out", "0")))
                continue
            if kind == "fixed":
                out.append(_fixed_line(sub.id, plan, tz, slot, idx, ch, key, "fixed"))
                continue
            else:
                agg = usage.get((tid, ch["metric"], slot.eff_start, slot.eff_end), {})
                qty = agg.get(cat.aggregation(ch), Decimal(0))
                if kind == "usage":
                    ln = cat.rate_usage(plan, idx, qty)
                elif kind == "time":
                    # the minimum and the round-up apply to each time entry
                    ln = rating.time_minutes(
                        agg.get("entries", []),
                        to_decimal(ch.get("rate", "0")),
                        cur,
                        to_decimal(ch.get("minimum", 0)),
                        to_decimal(ch.get("round_up_to", 1)),
                    )
                else:
                    rollover_in = Decimal(0)
                    if slot.prev_start is not None:
                        prev = line_key(sid, idx, slot.prev_start, slot.start)
                        if prev in carried:
                            rollover_in = carried[prev]
                        elif prev in billed:
                            rollover_in = Decimal(str(billed[prev].get("rollover_out", "0")))
                    ln, carried[key] = rating.bucket(
                        qty,
                        to_decimal(ch.get("included", 0)),
                        rollover_in,
                        to_decimal(ch.get("overage_price", 0)),
                        cur,
                        to_decimal(ch.get("rollover_cap", 0)),
                    )
            desc = f"{plan.code} {kind} {_span(slot.start, slot.end, tz)}"
            out.append(_line(ln, key, sub.id, str(idx), slot.start, slot.end, desc))
    return out


def _fixed_line(
    sub_id: Any,
    plan: Plan | PlanView,
    tz: str,
    slot: Slot,
    idx: int,
    ch: dict[str, Any],
    key: str,
    label: str,
) -> dict[str, Any]:
    """A fixed amount (a fixed charge, or a bucket's fee) for the part of ``slot`` the
    subscription covers, prorated by local day."""
    days = local_days(slot.start, slot.end, tz)
    used = local_days(slot.eff_start, slot.eff_end, tz)
    before = local_days(slot.start, slot.eff_start, tz)
    fields = fixed_fields(str(ch["amount"]), plan.currency, min(used, days), days, before)
    return {
        "line_key": key,
        "subscription_id": sub_id,
        "charge_ref": str(idx),
        "kind": "fixed",
        "description": f"{plan.code} {label} {_span(slot.start, slot.end, tz)}",
        "period_start": slot.start,
        "period_end": slot.end,
        **fields,
        "detail": {"tiers": []},
    }


@lru_cache(maxsize=4096)
def fixed_fields(amount: str, cur: str, used: int, days: int, before: int = 0) -> dict[str, Any]:
    """A fixed charge's line fields for ``used`` of ``days`` days, the first ``before``
    days of the period not covered (pure, so memoised).

    A part that starts into the period costs the charge up to its end less the charge up
    to its start, each rounded once: the parts of any split of a period (plan changes, a
    cancellation's credit) then add up to exactly the charge for the whole period, where
    rounding each part on its own drifts by up to half a minor unit per part."""
    factor = Decimal(1) if used >= days else Decimal(used) / Decimal(days)
    ln = rating.fixed(to_decimal(amount), cur, factor)
    minor = ln.amount_minor
    if before > 0 and factor < 1:
        end = min(before + used, days)
        minor = _prorated_minor(amount, cur, end, days) - _prorated_minor(amount, cur, before, days)
    return {
        "quantity": str(ln.quantity),
        "unit_price": str(ln.unit_price),
        "proration": str(ln.proration),
        "amount_minor": minor,
    }


def _prorated_minor(amount: str, cur: str, used: int, days: int) -> int:
    """The charge for the first ``used`` of ``days`` days, rounded once."""
    if used >= days:
        return rating.fixed(to_decimal(amount), cur).amount_minor
    return rating.fixed(to_decimal(amount), cur, Decimal(used) / Decimal(days)).amount_minor


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
