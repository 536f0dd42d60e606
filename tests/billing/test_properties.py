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

from mno import clock
from mno.billing import run as billing
from mno.billing.periods import month_bounds
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
    taxes = {("FR", None): TaxRate(code="t", country="FR", rate=tax, inclusive=inclusive)}
    return billing.Catalog({plan.id: plan}, coupons, taxes), plan


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
    out = billing.rate_tenant(tenant, [sub], usage, charges, 2026, 10, cat)
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
                sa.select(Invoice.total_minor)
                .join_from(Invoice, tenants.Tenant, Invoice.tenant_id == tenants.Tenant.id)
                .where(tenants.Tenant.key.in_([key, key + "x"]), Invoice.period == period)
            )
            .scalars()
            .all()
        )
    assert len(rows) == 2 and rows[0] == rows[1]
