"""Monthly recurring revenue, normalised to a month over each charge's service period.

A recurring line (a fixed charge, a bucket's fee or a bundle, on an issued or paid invoice) counts
in every month of the part of its period the subscription covers, not in the month its
invoice was issued: an annual plan of 1200.00 adds 100.00 to each of its twelve months, a
quarterly one of 300.00 100.00 to each of its three, a month billed in advance counts in
that month. Each month gets the line's amount times its share of the period, measured
in months of the tenant's timezone (a month fully covered counts 1, a part of one its
days over the month's days): a period of whole months splits evenly, a week falls in the
month(s) it lies in. A line without a period (a manual invoice's) counts in its month of
issue. Credit notes subtract; their lines (``credit``) are not recurring.

The lines are summed per currency, timezone and service period (a few rows: the periods
of most subscriptions coincide), read from a rollup the store keeps up to date as invoices,
lines, subscriptions and tenants change (``mno.reports.mrr_rollup``); spreading those sums
over months is Python's.
Each month's total is rounded once, half up, to the currency's minor unit.
"""

from __future__ import annotations

from collections import defaultdict
from datetime import date, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

import sqlalchemy as sa

from mno.reports import sql
from mno.reports.model import Window
from mno.reports.tables import invoice, invoice_line, mrr_period, subscription, tenant

if TYPE_CHECKING:
    from collections.abc import Iterable

    from sqlmodel import Session

BILLED = ("issued", "paid")
RECURRING = ("fixed", "bundle")  # line kinds that recur every period
# the service periods read for a window: local months reach a day past UTC's either side
_REACH = timedelta(days=1)
# and the invoices that may bill them: a period is at most a year long and is billed
# within its year (in advance, or in arrears after it)
_ISSUED_REACH = timedelta(days=400)


def _next(d: date) -> date:
    return date(d.year + 1, 1, 1) if d.month == 12 else date(d.year, d.month + 1, 1)


def spread(amount: int, start: datetime, end: datetime, tz: str | None) -> dict[str, Decimal]:
    """``amount`` (minor units) over the months of ``[start, end)`` in ``tz``, each month
    getting its share of the period in months (unrounded)."""
    zone = ZoneInfo(tz or "UTC")
    first, last = start.astimezone(zone).date(), end.astimezone(zone).date()
    if last <= first:
        return {f"{first.year:04d}-{first.month:02d}": Decimal(amount)}
    shares: dict[str, Decimal] = {}
    d = first
    while d < last:
        month = date(d.year, d.month, 1)
        after = _next(month)
        upto = min(after, last)
        shares[f"{d.year:04d}-{d.month:02d}"] = Decimal((upto - d).days) / (after - month).days
        d = upto
    total = sum(shares.values(), Decimal(0))
    return {k: Decimal(amount) * v / total for k, v in shares.items()}


def normalised(session: Session, window: Window) -> dict[str, dict[str, int]]:
    """Per currency, per month of the window: the normalised MRR in minor units (months
    without any left out), read from the rollup the store keeps (``mno.reports.mrr_rollup``).

    The rollup's rows are finer than the groups ``normalised_from_lines()`` sums (they also
    key the day of issue and the line's own period, which the window filters on), so the
    same filters and one GROUP BY give the same sums per currency, timezone and period, in
    the same order: the same figures, from a few rows instead of every line."""
    r = mrr_period
    where: list[Any] = []
    if window.currency:
        where.append(r.c.currency == window.currency)
    lo, hi = window.start - _REACH, window.stop + _REACH
    # the window's edges are midnights (UTC): a bound on the day of issue is exact
    first = (window.start - _ISSUED_REACH).date().isoformat()
    after = (window.stop + _ISSUED_REACH).date().isoformat()
    amount = sa.func.sum(r.c.amount_minor)
    periods = (
        sa.select(r.c.currency, r.c.timezone, r.c.start_at, r.c.end_at, amount)
        .where(
            *where,
            r.c.dated == 1,
            r.c.issued_on >= first,
            r.c.issued_on < after,
            r.c.period_start < hi,
            r.c.period_end > lo,
        )
        .group_by(r.c.currency, r.c.timezone, r.c.start_at, r.c.end_at)
        .order_by(r.c.currency, r.c.timezone, r.c.start_at, r.c.end_at)
    )
    month = sa.func.substr(r.c.issued_on, 1, 7)
    undated = (
        sa.select(r.c.currency, month, amount)
        .where(
            *where,
            r.c.dated == 0,
            r.c.issued_on >= window.start.date().isoformat(),
            r.c.issued_on < window.stop.date().isoformat(),
        )
        .group_by(r.c.currency, month)
        .order_by(r.c.currency, month)
    )
    return _spread_all(window, session.execute(periods), session.execute(undated))


def normalised_from_lines(session: Session, window: Window) -> dict[str, dict[str, int]]:
    """``normalised()`` computed from every billed line in reach of the window: the
    reference the rollup is checked against (and what it would read without one)."""
    lo, hi = window.start - _REACH, window.stop + _REACH
    i, ln, s, t = invoice, invoice_line, subscription, tenant
    sign = sa.case((i.c.kind == "credit_note", -1), else_=1)
    begins = sa.func.coalesce(s.c.trial_ends_at, s.c.started_at)
    start = sa.case((begins > ln.c.period_start, begins), else_=ln.c.period_start)
    end = sa.case((s.c.cancel_at < ln.c.period_end, s.c.cancel_at), else_=ln.c.period_end)
    where: list[Any] = [
        i.c.status.in_(BILLED),
        i.c.issued_at.is_not(None),
        ln.c.kind.in_(RECURRING),
    ]
    if window.currency:
        where.append(i.c.currency == window.currency)
    joined = ln.join(i, i.c.id == ln.c.invoice_id)
    amount = sa.func.sum(ln.c.amount_minor * sign)
    periods = (
        sa.select(i.c.currency, t.c.timezone, start, end, amount)
        .select_from(
            joined.join(t, t.c.id == i.c.tenant_id).outerjoin(s, s.c.id == ln.c.subscription_id)
        )
        .where(
            *where,
            i.c.issued_at >= window.start - _ISSUED_REACH,
            i.c.issued_at < window.stop + _ISSUED_REACH,
            ln.c.period_start < hi,
            ln.c.period_end > lo,
        )
        .group_by(i.c.currency, t.c.timezone, start, end)
        .order_by(i.c.currency, t.c.timezone, start, end)
    )
    issued = sql.month(i.c.issued_at, sql.dialect_of(session)).label("m")
    undated = (
        sa.select(i.c.currency, issued, amount)
        .select_from(joined)
        .where(
            *where,
            ln.c.period_start.is_(None),
            i.c.issued_at >= window.start,
            i.c.issued_at < window.stop,
        )
        .group_by(i.c.currency, issued)
        .order_by(i.c.currency, issued)
    )
    return _spread_all(window, session.execute(periods), session.execute(undated))


def _spread_all(
    window: Window, periods: Iterable[Any], undated: Iterable[Any]
) -> dict[str, dict[str, int]]:
    """Each period's sum spread over its months, each month-of-issue sum added to its
    month; per currency the window's months, each rounded once, half up."""
    months = window.month_keys()
    totals: dict[str, dict[str, Decimal]] = defaultdict(lambda: defaultdict(Decimal))
    for currency, tz, a, b, units in periods:
        for month, part in spread(int(units or 0), a, b, tz).items():
            totals[currency][month] += part
    for currency, month, units in undated:
        totals[currency][month] += Decimal(int(units or 0))
    out: dict[str, dict[str, int]] = {}
    for currency, by_month in sorted(totals.items()):
        kept = {
            m: int(v.quantize(Decimal(1), rounding=ROUND_HALF_UP))
            for m, v in by_month.items()
            if m in months
        }
        kept = {m: v for m, v in sorted(kept.items()) if v}
        if kept:
            out[currency] = kept
    return out


def latest(by_month: dict[str, dict[str, int]]) -> dict[str, tuple[str, int]]:
    """Per currency: the window's last month with recurring revenue and its MRR."""
    return {c: max(months.items()) for c, months in by_month.items() if months}
