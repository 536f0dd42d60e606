"""Hypothesis properties of whole billing runs on a real store (SQLite, and PostgreSQL with
fewer examples), over random catalogues: a fixed charge, a usage charge (per unit,
graduated, volume or package), a bucket, a coupon, a tax rate (or none), prepaid credits
and usage.

- Every issued invoice adds up to the minor unit: subtotal = the sum of its lines, tax as
  the money rule computes it on the subtotal after discount, total = subtotal - discount +
  tax (when not inclusive) - the credits applied, which are what the credit covered.
- Running a closed period again changes nothing: no invoice, line, ledger entry, credit,
  audit row or event of the tenant is added or changed, and no table grows but by the
  rerun's own run row and its ``billing.run_finished`` event.
- Credit notes booked on such an invoice (with credits applied) never give back more than
  it billed, and crediting all of it gives back exactly its subtotal, tax and total.
"""

from __future__ import annotations

import itertools
import uuid
from datetime import UTC, datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

import pycountry
import sqlalchemy as sa
import yaml
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from sqlmodel import col

from mno import clock
from mno.billing import credit_notes, documents, invoices, ledger, subscriptions, usage
from mno.billing import run as billing
from mno.billing.issuing import issue_drafts
from mno.errors import Conflict
from mno.money import minor_units
from mno.store.db import session_scope
from mno.store.models.billing import CreditGrant, Invoice, InvoiceLine, LedgerEntry
from mno.store.models.core import AuditEntry, Event
from mno.tenancy import tenants

PERIOD = "2026-10"
CLOSED = datetime(2026, 11, 3, tzinfo=UTC)  # October has closed in every timezone
# one country per example, so that each example's tax rate is the only one of its country
COUNTRIES = itertools.cycle(sorted(c.alpha_2 for c in pycountry.countries))


def _money(cur: str, lo: int, hi: int) -> st.SearchStrategy[str]:
    """An amount in ``cur`` between ``lo`` and ``hi`` minor units, as a decimal string."""
    mu = minor_units(cur)
    return st.integers(lo, hi).map(lambda n: str(Decimal(n).scaleb(-mu)))


@st.composite
def catalogues(draw: st.DrawFn) -> dict[str, Any]:
    """A plan (its charges), a coupon, a tax rate, credits, usage and a start."""
    cur = draw(st.sampled_from(["EUR", "JPY", "BHD"]))
    charges: list[dict[str, Any]] = []
    if draw(st.booleans()):
        charges.append(
            {
                "kind": "fixed",
                "amount": draw(_money(cur, 0, 10**6)),
                "timing": draw(st.sampled_from(["advance", "arrears"])),
            }
        )
    model = draw(st.sampled_from([None, "per_unit", "graduated", "volume", "package"]))
    price = st.sampled_from(["0", "0.001", "0.0125", "0.5", "1", "3.333"])
    if model == "per_unit":
        charges.append({"kind": "usage", "metric": "units", "unit_price": draw(price)})
    elif model in ("graduated", "volume"):
        bounds = sorted(draw(st.sets(st.integers(1, 5000), min_size=0, max_size=3)))
        tiers: list[dict[str, Any]] = [
            {"up_to": b, "unit_price": draw(price), "flat_fee": draw(_money(cur, 0, 500))}
            for b in bounds
        ]
        tiers.append({"up_to": None, "unit_price": draw(price)})
        charges.append({"kind": "usage", "metric": "units", "model": model, "tiers": tiers})
    elif model == "package":
        charges.append(
            {
                "kind": "usage",
                "metric": "units",
                "model": "package",
                "package_size": str(draw(st.integers(1, 500))),
                "package_price": draw(_money(cur, 0, 10**4)),
                "free_units": str(draw(st.integers(0, 100))),
            }
        )
    if draw(st.booleans()):
        charges.append(
            {
                "kind": "bucket",
                "metric": "hours",
                "amount": draw(_money(cur, 0, 10**5)),
                "timing": draw(st.sampled_from(["advance", "arrears"])),
                "included": str(draw(st.integers(0, 20))),
                "rollover_cap": str(draw(st.integers(0, 10))),
                "overage_price": draw(_money(cur, 0, 10**4)),
            }
        )
    coupon = draw(
        st.one_of(
            st.none(),
            st.builds(
                lambda v, d: {"kind": "percentage", "value": v, "duration": d},
                st.sampled_from(["0", "10", "12.5", "33.33", "100"]),
                st.sampled_from(["once", "forever"]),
            ),
            st.builds(
                lambda v, d: {"kind": "fixed", "value": v, "currency": cur, "duration": d},
                _money(cur, 1, 10**5),
                st.sampled_from(["once", "forever"]),
            ),
        )
    )
    rates = st.builds(
        lambda r, i: {"rate": r, "inclusive": i},
        st.sampled_from(["0", "5.5", "7.7", "19", "20", "21"]),
        st.booleans(),
    )
    tax = draw(st.one_of(st.none(), rates, rates))  # taxed two times out of three
    events = draw(
        st.lists(
            st.tuples(
                st.sampled_from(["units", "hours"]),
                st.one_of(st.integers(0, 3000), st.decimals("0", "50", places=2)),
                st.integers(0, 31 * 24 - 1),  # hour of October (UTC)
            ),
            max_size=8,
        )
    )
    return {
        "currency": cur,
        "charges": charges,
        "coupon": coupon,
        "tax": tax,
        "credits": draw(st.lists(st.integers(1, 10**5), max_size=2)),
        "events": events,
        # from the start of September (two full periods billed) to late October
        "start_hours": draw(st.integers(0, 60 * 24)),
        "timezone": draw(st.sampled_from(["UTC", "Europe/Paris", "Pacific/Auckland"])),
    }


def _seed(url: str, c: dict[str, Any]) -> str:
    """The example's catalogue, one tenant subscribed to it with its usage and credits;
    the tenant's key."""
    tag = uuid.uuid4().hex[:8]
    key, plan, country = f"t{tag}", f"p{tag}", next(COUNTRIES)
    docs: list[dict[str, Any]] = [
        {"kind": "Metric", "metadata": {"name": m}, "spec": {"aggregation": "sum"}}
        for m in ("units", "hours")
    ]
    docs.append(
        {
            "kind": "Plan",
            "metadata": {"name": plan},
            "spec": {"currency": c["currency"], "charges": c["charges"]},
        }
    )
    if c["coupon"]:
        docs.append({"kind": "Coupon", "metadata": {"name": plan}, "spec": c["coupon"]})
    if c["tax"]:
        spec = {"country": country, **c["tax"]}
        docs.append({"kind": "TaxRate", "metadata": {"name": f"vat-{tag}"}, "spec": spec})
    start = datetime(2026, 9, 1, tzinfo=UTC) + timedelta(hours=c["start_hours"])
    with clock.frozen(datetime(2026, 8, 1, tzinfo=UTC)), session_scope(url) as s:
        documents.apply_text(s, yaml.safe_dump_all(docs))
        tenants.create(s, key, country=country, timezone=c["timezone"], currency=c["currency"])
        subscriptions.create(s, key, plan, start=start, coupon=plan if c["coupon"] else None)
        for amount in c["credits"]:
            ledger.add_credit(s, key, amount, c["currency"])
        for metric, qty, hour in c["events"]:
            at = datetime(2026, 10, 1, tzinfo=UTC) + timedelta(hours=hour)
            usage.record(s, key, metric, Decimal(qty), at=at)
    return key


def _rows(url: str, key: str) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of the tenant in the tables a run or an issue writes."""
    with session_scope(url, write=False) as s:
        tid = tenants.get(s, key).id
        inv_ids = sa.select(col(Invoice.id)).where(col(Invoice.tenant_id) == tid)
        queries: dict[str, Any] = {
            "invoices": sa.select(Invoice).where(col(Invoice.tenant_id) == tid),
            "lines": sa.select(InvoiceLine).where(col(InvoiceLine.invoice_id).in_(inv_ids)),
            "ledger": sa.select(LedgerEntry).where(col(LedgerEntry.tenant_id) == tid),
            "credits": sa.select(CreditGrant).where(col(CreditGrant.tenant_id) == tid),
            "audit": sa.select(AuditEntry).where(col(AuditEntry.tenant_id) == tid),
            "events": sa.select(Event).where(col(Event.tenant_id) == tid),
        }
        return {
            name: sorted(
                (tuple(sorted(row.model_dump().items(), key=str)) for row in s.scalars(q)),
                key=repr,
            )
            for name, q in queries.items()
        }


def _sizes(url: str) -> dict[str, int]:
    """The number of rows of every table."""
    from sqlmodel import SQLModel

    from mno.store.models import load_all

    load_all()
    with session_scope(url, write=False) as s:
        return {
            t.name: int(s.execute(sa.select(sa.func.count()).select_from(t)).scalar_one())
            for t in SQLModel.metadata.sorted_tables
        }


def _round(amount: Decimal, cur: str) -> int:
    q = Decimal(1).scaleb(-minor_units(cur))
    return int(amount.quantize(q, rounding=ROUND_HALF_UP).scaleb(minor_units(cur)))


def _check_invoice(inv: Invoice, lines: list[InvoiceLine], c: dict[str, Any]) -> None:
    """The invoice adds up, to the minor unit."""
    cur, mu = inv.currency, minor_units(inv.currency)
    assert inv.subtotal_minor == sum(ln.amount_minor for ln in lines)
    assert 0 <= inv.discount_minor <= max(inv.subtotal_minor, 0)
    base = Decimal(inv.subtotal_minor - inv.discount_minor).scaleb(-mu)
    added = 0
    if c["tax"]:
        rate = Decimal(c["tax"]["rate"])
        if c["tax"]["inclusive"]:
            expected = _round(base - base / (1 + rate / 100), cur)
        else:
            expected = added = _round(base * rate / 100, cur)
        assert inv.tax_minor == expected
    else:
        assert inv.tax_minor == 0
    gross = inv.subtotal_minor - inv.discount_minor + added
    assert inv.total_minor == gross - inv.credit_minor
    assert 0 <= inv.credit_minor <= min(sum(c["credits"]), gross)
    assert inv.total_minor >= 0


def _bill_and_check(url: str, c: dict[str, Any]) -> str:
    """Bill October, issue, check each invoice and that a rerun changes nothing; the key."""
    key = _seed(url, c)
    with clock.frozen(CLOSED):
        first = billing.run(PERIOD, url=url, tenant_key=key)
        assert not first.failed
        issue_drafts(period=PERIOD, url=url)
        before, sizes = _rows(url, key), _sizes(url)
        assert len(before["invoices"]) == first.invoices
        again = billing.run(PERIOD, url=url, tenant_key=key)
        issue_drafts(period=PERIOD, url=url)
    assert (again.invoices, again.lines, again.failed) == (0, 0, [])
    assert _rows(url, key) == before
    # the rerun only records itself: its run row and its billing.run_finished event
    grown = {t: n - sizes[t] for t, n in _sizes(url).items() if n != sizes[t]}
    assert grown == {"billing_run": 1, "outbox_event": 1}
    with session_scope(url, write=False) as s:
        applied = 0
        for inv in invoices.list_invoices(s, key, period=PERIOD):
            assert inv.status in ("issued", "paid")
            _check_invoice(inv, invoices.lines(s, inv), c)
            applied += inv.credit_minor
        # the credits cover the invoices as far as they go
        gross = sum(
            inv.total_minor + inv.credit_minor
            for inv in invoices.list_invoices(s, key, period=PERIOD)
        )
        assert applied == min(sum(c["credits"]), gross)
        for inv in invoices.list_invoices(s, key, period=PERIOD):
            event(f"lines: {len(invoices.lines(s, inv))}")
            event("credit applied" if inv.credit_minor else "no credit applied")
            event("discounted" if inv.discount_minor else "no discount")
            event("taxed" if inv.tax_minor else "no tax")
    return key


def _credit_notes(url: str, key: str, amounts: list[int]) -> None:
    """Book credit notes of ``amounts`` (minor units, before tax), then all that is left,
    on each invoice of the period: never more than the invoice, all of it in the end."""
    with session_scope(url, write=False) as s:
        ids = [str(inv.id) for inv in invoices.list_invoices(s, key, period=PERIOD)]
    for inv_id in ids:
        for amount in [*amounts, None]:
            with clock.frozen(CLOSED + timedelta(days=1)):
                try:
                    with session_scope(url) as s:
                        inv = invoices.get(s, inv_id)
                        value = (
                            None
                            if amount is None
                            else Decimal(amount).scaleb(-minor_units(inv.currency))
                        )
                        credit_notes.credit(s, inv_id, reason="property", amount=value)
                except Conflict:
                    pass
            with session_scope(url, write=False) as s:
                inv = invoices.get(s, inv_id)
                notes = credit_notes.notes_of(s, inv)
                gross = inv.total_minor + inv.credit_minor
                assert sum(n.total_minor for n in notes) <= gross
                assert sum(n.subtotal_minor for n in notes) <= inv.subtotal_minor
                assert sum(n.tax_minor for n in notes) <= inv.tax_minor
                assert sum(n.discount_minor for n in notes) <= inv.discount_minor
                assert all(n.total_minor >= 0 for n in notes)
        if inv.subtotal_minor > 0 and gross > 0:
            assert sum(n.subtotal_minor for n in notes) == inv.subtotal_minor
            assert sum(n.total_minor for n in notes) == gross
            assert sum(n.tax_minor for n in notes) == inv.tax_minor


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(c=catalogues(), notes=st.lists(st.integers(1, 10**5), max_size=3))
def test_sqlite_runs_add_up_rerun_nothing_credit_notes_bounded(
    sqlite_url: str, c: dict[str, Any], notes: list[int]
) -> None:
    key = _bill_and_check(sqlite_url, c)
    _credit_notes(sqlite_url, key, notes)


@settings(
    max_examples=6, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(c=catalogues(), notes=st.lists(st.integers(1, 10**5), max_size=2))
def test_postgres_runs_add_up_rerun_nothing_credit_notes_bounded(
    pg_url: str, c: dict[str, Any], notes: list[int]
) -> None:
    key = _bill_and_check(pg_url, c)
    _credit_notes(pg_url, key, notes)
