"""Plan intervals other than monthly: periods in the tenant's timezone, arrears and advance,
and which run bills which period. Golden amounts are computed by hand in the comments."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from contextlib import AbstractContextManager
from datetime import UTC, date, datetime
from decimal import Decimal
from types import SimpleNamespace
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mno import clock
from mno.billing import documents, invoices, subscriptions, usage
from mno.billing import run as billing
from mno.billing.periods import local_midnight
from mno.errors import BadInput
from mno.store.models.billing import Plan
from mno.tenancy import tenants

Opener = Callable[..., AbstractContextManager[Any]]

PLANS = """
kind: Plan
metadata: {name: weekly}
spec:
  currency: USD
  interval: {unit: week, every: 1}
  charges:
    - {kind: fixed, amount: "7.00", timing: advance}
    - {kind: usage, metric: api_calls, model: per_unit, unit_price: "0.10"}
---
kind: Plan
metadata: {name: quarterly}
spec:
  currency: NZD
  interval: {unit: quarter, every: 1}
  charges:
    - {kind: fixed, amount: "90.00", timing: arrears}
"""


def _sub(start: datetime, **kw: Any) -> Any:
    return SimpleNamespace(
        id=uuid.uuid4(), started_at=start, cancel_at=None, cycle_limit=None, **kw
    )


def _plan(unit: str, every: int = 1) -> Plan:
    return Plan(code="p", currency="USD", interval_unit=unit, interval_every=every, charges=[])


def _days(sl: list[billing.Slot], tz: str, what: str) -> list[tuple[str, str]]:
    from zoneinfo import ZoneInfo

    z = ZoneInfo(tz)
    return [
        (f"{x.start.astimezone(z):%m-%d}", f"{x.end.astimezone(z):%m-%d}")
        for x in sl
        if getattr(x, what)
    ]


def test_weekly_periods_of_the_october_and_november_runs() -> None:
    # started Wednesday 2026-10-14 in New York: weeks run Monday to Monday from Oct 12
    tz = "America/New_York"
    sub = _sub(local_midnight(date(2026, 10, 14), tz))
    october = billing.slots(sub, _plan("week"), tz, 2026, 10)
    # arrears: the weeks that ended in October
    assert _days(october, tz, "arrears") == [("10-12", "10-19"), ("10-19", "10-26")]
    # advance: every week started before November (the run covers the start), and the
    # weeks that start in November
    assert _days(october, tz, "advance") == [
        ("10-12", "10-19"),
        ("10-19", "10-26"),
        ("10-26", "11-02"),
        ("11-02", "11-09"),
        ("11-09", "11-16"),
        ("11-16", "11-23"),
        ("11-23", "11-30"),
        ("11-30", "12-07"),
    ]
    november = billing.slots(sub, _plan("week"), tz, 2026, 11)
    assert _days(november, tz, "arrears") == [
        ("10-26", "11-02"),
        ("11-02", "11-09"),
        ("11-09", "11-16"),
        ("11-16", "11-23"),
        ("11-23", "11-30"),
    ]
    assert _days(november, tz, "advance") == [
        ("12-07", "12-14"),
        ("12-14", "12-21"),
        ("12-21", "12-28"),
        ("12-28", "01-04"),
    ]
    # the week across the end of DST (Nov 1) is 7 local days, 169 hours
    dst = next(x for x in october if x.k == 2)
    assert (dst.end - dst.start).total_seconds() == 169 * 3600


def test_semimonth_day_quarter_and_year_bounds() -> None:
    sub = _sub(datetime(2026, 10, 1, tzinfo=UTC))
    semi = billing.slots(sub, _plan("semimonth"), "UTC", 2026, 10)
    assert _days(semi, "UTC", "advance") == [
        ("10-01", "10-16"),
        ("10-16", "11-01"),
        ("11-01", "11-16"),
        ("11-16", "12-01"),
    ]
    assert _days(semi, "UTC", "arrears") == [("10-01", "10-16"), ("10-16", "11-01")]
    # every 10 days from the start's day: Oct 1, 11, 21, 31, Nov 10, 20, 30
    days = billing.slots(sub, _plan("day", 10), "UTC", 2026, 10)
    assert _days(days, "UTC", "arrears") == [
        ("10-01", "10-11"),
        ("10-11", "10-21"),
        ("10-21", "10-31"),
    ]
    assert _days(days, "UTC", "advance")[-1] == ("11-30", "12-10")
    # a quarter closes with December; a year with December too
    assert _days(billing.slots(sub, _plan("quarter"), "UTC", 2026, 11), "UTC", "arrears") == []
    dec = billing.slots(sub, _plan("quarter"), "UTC", 2026, 12)
    assert _days(dec, "UTC", "arrears") == [("10-01", "01-01")]
    assert _days(dec, "UTC", "advance") == [("01-01", "04-01")]
    year = billing.slots(sub, _plan("year"), "UTC", 2026, 12)
    assert [(x.start.year, x.end.year, x.arrears, x.advance) for x in year] == [
        (2026, 2027, True, False),
        (2027, 2028, False, True),
    ]
    # a cycle limit of 2 stops after the second period
    capped = _sub(
        datetime(2026, 10, 1, tzinfo=UTC),
    )
    capped.cycle_limit = 2
    assert [x.k for x in billing.slots(capped, _plan("semimonth"), "UTC", 2026, 10)] == [0, 1]


def test_interval_is_at_most_a_year() -> None:
    for unit, every in (("month", 13), ("week", 53), ("day", 367), ("year", 2), ("quarter", 5)):
        doc = (
            f"kind: Plan\nmetadata: {{name: x}}\nspec:\n  currency: EUR\n"
            f"  interval: {{unit: {unit}, every: {every}}}\n"
        )
        with pytest.raises(BadInput, match="at most"):
            documents.parse(doc)
    documents.parse(
        "kind: Plan\nmetadata: {name: x}\nspec:\n  currency: EUR\n"
        "  interval: {unit: day, every: 366}\n"
    )


@pytest.fixture
def interval_plans(session: Opener, catalogue: None) -> None:
    with session() as s:
        documents.apply_text(s, PLANS)


def test_weekly_plan_billed_by_monthly_runs(
    store_url: str, session: Opener, interval_plans: None
) -> None:
    clock.set_now(datetime(2026, 10, 14, tzinfo=UTC))
    tz = "America/New_York"
    with session() as s:
        tenants.create(s, "weekly", timezone=tz)
        subscriptions.create(s, "weekly", "weekly", start=local_midnight(date(2026, 10, 14), tz))
        for qty, at in (
            (10, datetime(2026, 10, 15, 12, tzinfo=UTC)),  # week of Oct 12
            (20, datetime(2026, 10, 20, 12, tzinfo=UTC)),  # week of Oct 19
            # 2026-11-02T04:30Z is Nov 1, 23:30 EST: still the week of Oct 26
            (40, datetime(2026, 11, 2, 4, 30, tzinfo=UTC)),
        ):
            usage.record(s, "weekly", "api_calls", Decimal(qty), at=at)
    clock.set_now(datetime(2026, 11, 3, tzinfo=UTC))
    billing.run("2026-10", url=store_url)
    with session(write=False) as s:
        inv = invoices.list_invoices(s, "weekly")[0]
        lines = invoices.lines(s, inv)
        # advance: 5 of 7 days of the first week = 5.00, then 7 weeks at 7.00 = 49.00;
        # usage of the two weeks that ended in October: 10 and 20 calls at 0.10 = 3.00
        assert inv.subtotal_minor == 500 + 4900 + 300
        assert sorted(ln.amount_minor for ln in lines if ln.kind == "fixed") == [500] + [700] * 7
        assert sorted(ln.amount_minor for ln in lines if ln.kind == "usage") == [100, 200]
    assert billing.run("2026-10", url=store_url).invoices == 0
    clock.set_now(datetime(2026, 12, 2, tzinfo=UTC))
    billing.run("2026-11", url=store_url)
    with session(write=False) as s:
        nov = invoices.list_invoices(s, "weekly", period="2026-11")[0]
        lines = invoices.lines(s, nov)
        # five weeks ended in November (40 calls in the first = 4.00); four December weeks
        # in advance at 7.00 = 28.00
        assert nov.subtotal_minor == 400 + 2800
        assert len([ln for ln in lines if ln.kind == "usage"]) == 5
        assert len([ln for ln in lines if ln.kind == "fixed"]) == 4


def test_quarterly_arrears_prorated_across_auckland_dst(
    store_url: str, session: Opener, interval_plans: None
) -> None:
    clock.set_now(datetime(2026, 8, 20, tzinfo=UTC))
    tz = "Pacific/Auckland"
    with session() as s:
        tenants.create(s, "kiwi", timezone=tz)
        # 2026-08-16 local: the quarter Jul 1 - Oct 1 has 92 days, 46 of them covered
        subscriptions.create(s, "kiwi", "quarterly", start=local_midnight(date(2026, 8, 16), tz))
    clock.set_now(datetime(2026, 10, 2, tzinfo=UTC))
    billing.run("2026-09", url=store_url)
    clock.set_now(datetime(2026, 11, 2, tzinfo=UTC))
    assert billing.run("2026-10", url=store_url).invoices == 0
    clock.set_now(datetime(2027, 1, 2, tzinfo=UTC))
    billing.run("2026-12", url=store_url)
    with session(write=False) as s:
        sep = invoices.list_invoices(s, "kiwi", period="2026-09")[0]
        assert sep.subtotal_minor == 4500  # 90.00 * 46 / 92
        dec = invoices.list_invoices(s, "kiwi", period="2026-12")[0]
        assert dec.subtotal_minor == 9000
        (line,) = invoices.lines(s, dec)
        # the quarter spans Auckland's DST start (Sep 27) yet is billed whole
        assert line.proration == "1"


@settings(max_examples=60, deadline=None)
@given(
    unit=st.sampled_from(["day", "week", "semimonth", "month", "quarter", "year"]),
    every=st.integers(1, 4),
    day=st.integers(0, 400),
    hour=st.integers(0, 23),
    tz=st.sampled_from(["UTC", "America/New_York", "Pacific/Auckland", "Asia/Kolkata"]),
)
def test_consecutive_runs_bill_each_period_once(
    unit: str, every: int, day: int, hour: int, tz: str
) -> None:
    """Over consecutive monthly runs, each period's arrears are billed by exactly one run,
    and every period that has begun by the last run's next month is billed in advance (a
    period two runs both offer is deduplicated by its line key)."""
    from datetime import timedelta

    from mno.billing.periods import MAX_EVERY, unit_index, unit_start

    every = min(every, MAX_EVERY[unit])
    start = datetime(2026, 1, 1, tzinfo=UTC) + timedelta(days=day, hours=hour)
    sub = _sub(start)
    plan = _plan(unit, every)
    # from December 2025: the start (in the tenant's timezone) may still fall in it
    months = [(2025 + (m - 1) // 12, (m - 1) % 12 + 1) for m in range(12, 42)]
    arrears: list[tuple[datetime, datetime]] = []
    advance: set[tuple[datetime, datetime]] = set()
    for y, m in months:
        for x in billing.slots(sub, plan, tz, y, m):
            if x.arrears:
                arrears.append((x.start, x.end))
            if x.advance:
                advance.add((x.start, x.end))
    first_ms = local_midnight(date(2025, 12, 1), tz)
    last_me = local_midnight(date(2028, 6, 1), tz)
    last_nme = local_midnight(date(2028, 7, 1), tz)
    from zoneinfo import ZoneInfo

    anchor = unit_index(start.astimezone(ZoneInfo(tz)).date(), unit)
    periods = []
    k = 0
    while True:
        ps = local_midnight(unit_start(anchor + k * every, unit), tz)
        pe = local_midnight(unit_start(anchor + (k + 1) * every, unit), tz)
        if ps >= last_nme:
            break
        periods.append((ps, pe))
        k += 1
    assert len(arrears) == len(set(arrears))
    assert sorted(arrears) == [p for p in periods if first_ms < p[1] <= last_me]
    assert advance == set(periods)
