"""Hypothesis properties of rate_tenant (pure) and of whole runs on a real store."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from contextlib import AbstractContextManager
from datetime import UTC, datetime
from decimal import Decimal
from types import SimpleNamespace
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlmodel import col

from mno import clock
from mno.billing import run as billing
from mno.billing import tenant_rating
from mno.billing.periods import month_bounds
from mno.money import minor_units
from mno.store.models.billing import Coupon, Plan, TaxRate

Opener = Callable[..., AbstractContextManager[Any]]

TIERS = [
    {"up_to": "1000", "unit_price": "0"},
    {"up_to": "10000", "unit_price": "0.002"},
    {"up_to": None, "unit_price": "0.001"},
]


def _catalog(currency: str, tax: str, inclusive: bool, coupon: str | None) -> Any:
    plan = Plan(
        id=uuid.uuid4(),
        code="p",
        currency=currency,
        charges=[
            {"kind": "fixed", "amount": "49.99" if currency != "JPY" else "4999"},
            {"kind": "usage", "metric": "m", "model": "graduated", "tiers": TIERS},
        ],
    )
    coupons = (
        {"c": Coupon(code="c", kind="percentage", value=coupon, duration="forever")}
        if coupon
        else {}
    )
    taxes: dict[tuple[str, str | None], TaxRate] = {
        ("FR", None): TaxRate(code="t", country="FR", rate=tax, inclusive=inclusive)
    }
    return tenant_rating.Catalog({plan.id: plan}, coupons, taxes), plan


@given(
    qty=st.integers(0, 10**6),
    currency=st.sampled_from(["EUR", "JPY", "BHD"]),
    tax=st.sampled_from(["0", "5.5", "20"]),
    inclusive=st.booleans(),
    coupon=st.sampled_from([None, "10", "100"]),
    one_off=st.integers(0, 10**5),
)
def test_invoice_identities(
    qty: int, currency: str, tax: str, inclusive: bool, coupon: str | None, one_off: int
) -> None:
    cat, plan = _catalog(currency, tax, inclusive, coupon)
    tid = uuid.uuid4()
    tenant = SimpleNamespace(id=tid, key="t", timezone="Europe/Paris", country="FR", region=None)
    sub = SimpleNamespace(
        id=uuid.uuid4(),
        plan_id=plan.id,
        started_at=datetime(2026, 1, 1, tzinfo=UTC),
        cancel_at=None,
        cycle_limit=None,
        periods_billed=0,
        coupon_code="c" if coupon else None,
        coupon_periods_used=0,
    )
    charges = (
        [SimpleNamespace(id=uuid.uuid4(), amount_minor=one_off, currency=currency, description="x")]
        if one_off
        else []
    )
    start, end = month_bounds(2026, 10, "Europe/Paris")
    usage = {(tid, "m", start, end): {"sum": Decimal(qty)}}
    out = tenant_rating.rate_tenant(tenant, [sub], usage, charges, 2026, 10, cat)
    lines, totals = out[currency]
    assert sum(ln["amount_minor"] for ln in lines) == totals["subtotal_minor"]
    added_tax = 0 if inclusive else totals["tax_minor"]
    expected = (
        totals["subtotal_minor"] - totals["discount_minor"] + added_tax - totals["credit_minor"]
    )
    assert totals["total_minor"] == max(expected, 0) >= 0


@settings(
    max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(split=st.lists(st.integers(1, 5000), min_size=1, max_size=6))
def test_split_of_usage_bills_the_same_and_rerun_changes_nothing(
    sqlite_url: str, split: list[int]
) -> None:
    """The same usage total, in any number of events, gives the same invoice; rerunning the
    period adds nothing."""
    import sqlalchemy as sa

    from mno.billing import documents, subscriptions, usage
    from mno.store.db import session_scope
    from mno.store.models.billing import Invoice
    from mno.store.models.tenancy import Tenant
    from mno.tenancy import tenants
    from tests.billing.conftest import CATALOGUE

    key = f"t{uuid.uuid4().hex[:8]}"
    period = f"20{30 + len(split):02d}-10"
    year = int(period[:4])
    with session_scope(sqlite_url) as s:
        documents.apply_text(s, CATALOGUE)
        for k in (key, key + "x"):
            tenants.create(s, k, country="FR")
            subscriptions.create(s, k, "pro", start=datetime(year, 1, 1, tzinfo=UTC))
        for n, q in enumerate(split):
            usage.record(s, key, "api_calls", Decimal(q), at=datetime(year, 10, 1 + n, tzinfo=UTC))
        usage.record(
            s, key + "x", "api_calls", Decimal(sum(split)), at=datetime(year, 10, 9, tzinfo=UTC)
        )
    with clock.frozen(datetime(year, 11, 2, tzinfo=UTC)):  # October has closed
        billing.run(period, url=sqlite_url, tenant_key=key)
        billing.run(period, url=sqlite_url, tenant_key=key + "x")
        assert billing.run(period, url=sqlite_url, tenant_key=key).invoices == 0
        assert billing.run(period, url=sqlite_url, tenant_key=key + "x").invoices == 0
    with session_scope(sqlite_url, write=False) as s:
        rows = (
            s.execute(
                sa.select(col(Invoice.total_minor))
                .join_from(Invoice, Tenant, col(Invoice.tenant_id) == col(Tenant.id))
                .where(col(Tenant.key).in_([key, key + "x"]), col(Invoice.period) == period)
            )
            .scalars()
            .all()
        )
    assert len(rows) == 2 and rows[0] == rows[1]


def _october_split(amount: int, currency: str, tz: str, cuts: set[tuple[int, int]]) -> list[int]:
    """October split between subscriptions to one plan with a fixed charge of ``amount``
    minor units (each starts where the one before ends, at local day ``d`` hour ``h`` of
    ``cuts``, as plan changes leave it): the run's fixed line of each part for October."""
    from zoneinfo import ZoneInfo

    price = str(Decimal(amount).scaleb(-minor_units(currency)))
    plan = Plan(
        id=uuid.uuid4(),
        code="p",
        currency=currency,
        charges=[{"kind": "fixed", "amount": price, "timing": "advance"}],
    )
    cat = tenant_rating.Catalog({plan.id: plan}, {}, {})
    zone = ZoneInfo(tz)
    month_start = datetime(2026, 10, 1, tzinfo=zone).astimezone(UTC)
    days = dict(sorted(cuts))  # one cut a day at most: the split is by local day
    bounds = [month_start] + [
        datetime(2026, 10, 1 + d, h, tzinfo=zone).astimezone(UTC) for d, h in days.items()
    ]
    ends: list[datetime | None] = [*bounds[1:], None]
    subs = [
        SimpleNamespace(
            id=uuid.uuid4(),
            plan_id=plan.id,
            started_at=start,
            cancel_at=end,
            cycle_limit=None,
            periods_billed=0,
            coupon_code=None,
            coupon_periods_used=0,
        )
        for start, end in zip(bounds, ends, strict=True)
    ]
    tenant = SimpleNamespace(id=uuid.uuid4(), key="t", timezone=tz, country="", region=None)
    out = tenant_rating.rate_tenant(tenant, subs, {}, [], 2026, 10, cat)
    october = [ln["amount_minor"] for ln in out[currency][0] if ln["period_start"] == month_start]
    assert len(october) == len(subs)
    return october


@settings(max_examples=300, deadline=None)
@given(
    amount=st.integers(1, 10**6),
    currency=st.sampled_from(["EUR", "JPY", "BHD"]),
    tz=st.sampled_from(["UTC", "Europe/Paris", "America/New_York", "Pacific/Auckland"]),
    cuts=st.sets(st.tuples(st.integers(1, 30), st.integers(0, 23)), max_size=10),
)
def test_proration_over_any_split_of_a_period_sums_to_the_full_charge(
    amount: int, currency: str, tz: str, cuts: set[tuple[int, int]]
) -> None:
    """The parts of October add up to the charge for the whole month, within one minor
    unit."""
    assert abs(sum(_october_split(amount, currency, tz, cuts)) - amount) <= 1


def test_proration_of_eleven_parts_does_not_drift() -> None:
    """Regression: 1.00 a month over October's 31 days in parts of 3 days and a last day.
    Rounded part by part, each 3-day part cost 0.10 (9.68 cents) and the month 1.03; each
    part now costs the charge up to its end less the charge up to its start."""
    parts = _october_split(100, "EUR", "Europe/Paris", {(d, 0) for d in range(3, 31, 3)})
    assert parts == [10, 9, 10, 10, 9, 10, 10, 9, 10, 10, 3]
    assert sum(parts) == 100
