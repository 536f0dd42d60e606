"""MRR normalises each recurring charge to a month over its service period: an annual
plan counts a twelfth of its price in each of its months, on both stores; the revenue
report and ``mno report`` say the same."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest

from mno import clock
from mno.billing import documents, invoices, subscriptions, usage
from mno.billing import run as billing
from mno.reports import kpis
from mno.reports.model import Window
from mno.reports.mrr import spread
from mno.tenancy import tenants

Opener = Callable[..., AbstractContextManager[Any]]

MIXED = """
kind: Metric
metadata: {name: api_calls}
spec: {aggregation: sum}
---
kind: Plan
metadata: {name: monthly}
spec:
  currency: EUR
  interval: {unit: month, every: 1}
  charges:
    - {kind: fixed, amount: "49.00", timing: advance}
    - {kind: usage, metric: api_calls, model: per_unit, unit_price: "0.01"}
---
kind: Plan
metadata: {name: quarterly}
spec:
  currency: EUR
  interval: {unit: quarter, every: 1}
  charges:
    - {kind: fixed, amount: "300.00", timing: advance}
---
kind: Plan
metadata: {name: annual}
spec:
  currency: EUR
  interval: {unit: year, every: 1}
  charges:
    - {kind: fixed, amount: "1200.00", timing: advance}
"""

JAN_1 = datetime(2026, 1, 1, tzinfo=UTC)


def eur(amount: str) -> dict[str, str]:
    """An amount in the one money shape of JSON and reports."""
    return {"amount": amount, "currency": "EUR"}


def _bill_and_issue(url: str, period: str, now: datetime, session: Opener) -> None:
    clock.set_now(now)
    billing.run(period, url=url)
    with session() as s:
        for inv in invoices.list_invoices(s, period=period):
            if inv.status == "draft":
                invoices.issue(s, str(inv.id))


def _mixed(url: str, session: Opener) -> None:
    """Three tenants from January 1st: ``mo`` monthly (49.00 in advance, and 1000 calls
    at 0.01 in January), ``qu`` quarterly (300.00 in advance), ``an`` annual (1200.00 in
    advance, in Kiritimati: its months are local ones). January to March are billed,
    each run's drafts issued at once."""
    clock.set_now(datetime(2025, 12, 20, tzinfo=UTC))
    with session() as s:
        documents.apply_text(s, MIXED)
        for key, plan, tz in (
            ("mo", "monthly", "UTC"),
            ("qu", "quarterly", "UTC"),
            ("an", "annual", "Pacific/Kiritimati"),
        ):
            tenants.create(s, key, timezone=tz)
            subscriptions.create(s, key, plan, start=JAN_1)
        usage.record(s, "mo", "api_calls", 1000, at=datetime(2026, 1, 10, tzinfo=UTC))
    _bill_and_issue(url, "2026-01", datetime(2026, 2, 1, 2, tzinfo=UTC), session)
    _bill_and_issue(url, "2026-02", datetime(2026, 3, 1, 2, tzinfo=UTC), session)
    _bill_and_issue(url, "2026-03", datetime(2026, 4, 1, 2, tzinfo=UTC), session)


def test_mrr_is_normalised_over_the_service_period(
    store_url: str, session: Opener, cli: Any
) -> None:
    """By hand. Invoices issued on the 1st after each run:

    February 1st (January's run): mo January 49.00 + February 49.00 + January's usage
    10.00; qu the first quarter 300.00; an the year 2026 1200.00: revenue 1608.00.
    March 1st: mo March 49.00 (February's usage is 0.00): 49.00.
    April 1st: mo April 49.00; qu the second quarter 300.00: 349.00.

    Normalised MRR, each month January to April: mo 49.00 (a month each), qu 300.00 / 3 =
    100.00, an 1200.00 / 12 = 100.00; usage is not recurring: 249.00 a month, ARR
    2988.00. By month of issue the fixed lines would have said 1598.00 for February and
    349.00 for April.
    """
    _mixed(store_url, session)
    window = Window.ending("2026-04", 4)
    with session(write=False) as s:
        report = kpis.revenue_report(s, window)
        summary = next(r for r in kpis.summary(s, window) if r.area == "revenue")
    assert report.metrics["mrr"] == {"EUR": eur("249.00")}
    assert report.metrics["arr"] == {"EUR": eur("2988.00")}
    assert report.tables["mrr_monthly"] == [
        {"month": m, "EUR": eur("249.00")} for m in ("2026-01", "2026-02", "2026-03", "2026-04")
    ]
    assert report.tables["monthly"] == [
        {"month": "2026-01", "EUR": eur("0.00")},
        {"month": "2026-02", "EUR": eur("1608.00")},
        {"month": "2026-03", "EUR": eur("49.00")},
        {"month": "2026-04", "EUR": eur("349.00")},
    ]
    # a window that ends in February: the annual invoice still counts a twelfth
    with session(write=False) as s:
        february = kpis.revenue_report(s, Window.ending("2026-02", 1))
    assert february.metrics["mrr"] == {"EUR": eur("249.00")}
    # the summary and `mno report` agree with the report
    assert summary.metrics == report.metrics
    assert summary.tables["mrr_monthly"] == report.tables["mrr_monthly"]
    args = ("--period", "2026-04", "--months", "4")
    shown = cli.json("report", "revenue", *args)
    assert shown["metrics"] == report.as_dict()["metrics"]
    assert shown["tables"]["mrr_monthly"] == report.tables["mrr_monthly"]
    whole = cli.json("report", "summary", *args)
    (revenue,) = [r for r in whole["reports"] if r["area"] == "revenue"]
    assert revenue["metrics"] == report.as_dict()["metrics"]


def test_a_prorated_first_year_spreads_over_the_months_it_covers(
    store_url: str, session: Opener
) -> None:
    """An annual plan from July 1st (UTC): the year's first period is prorated to 184 of
    365 days, 1200.00 x 184 / 365 = 604.93, over July to December: 100.82 a month
    (604.93 / 6 = 100.821...), nothing before July."""
    clock.set_now(datetime(2026, 6, 20, tzinfo=UTC))
    with session() as s:
        documents.apply_text(s, MIXED)
        tenants.create(s, "late")
        subscriptions.create(s, "late", "annual", start=datetime(2026, 7, 1, tzinfo=UTC))
    _bill_and_issue(store_url, "2026-07", datetime(2026, 8, 1, 2, tzinfo=UTC), session)
    with session(write=False) as s:
        (inv,) = invoices.list_invoices(s, "late")
        assert inv.total_minor == 60493
        report = kpis.revenue_report(s, Window.ending("2026-12", 12))
    by_month = {row["month"]: row["EUR"] for row in report.tables["mrr_monthly"]}
    assert [by_month[f"2026-{m:02d}"] for m in range(1, 7)] == [eur("0.00")] * 6
    assert [by_month[f"2026-{m:02d}"] for m in range(7, 13)] == [eur("100.82")] * 6
    assert report.metrics["mrr"] == {"EUR": eur("100.82")}


@pytest.mark.parametrize(
    ("start", "end", "tz", "expected"),
    [
        # a year of local months splits evenly
        ("2026-01-01T00:00:00+00:00", "2027-01-01T00:00:00+00:00", "UTC", {"2026-01": "100"}),
        # a week across a month's end: by days over each month's days
        ("2026-03-30T00:00:00+00:00", "2026-04-06T00:00:00+00:00", "UTC", {"2026-03": "335"}),
    ],
)
def test_spread(start: str, end: str, tz: str, expected: dict[str, str]) -> None:
    parts = spread(1200, datetime.fromisoformat(start), datetime.fromisoformat(end), tz)
    assert sum(parts.values()) == Decimal(1200)
    for month, value in expected.items():
        assert parts[month].quantize(Decimal(1)) == Decimal(value)
