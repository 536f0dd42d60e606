"""The monthly rollups equal the invoices they summarise after every kind of billing write,
on SQLite and PostgreSQL: runs, issue (with credits), partial and full payments, void with
its credit note, a voided draft, a second run, bulk SQL updates and deletes, a rebuild."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from contextlib import AbstractContextManager
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import sqlalchemy as sa

from mno import clock
from mno.billing import credit_notes, documents, invoices, ledger, subscriptions, usage
from mno.billing import run as billing
from mno.reports import rollup
from mno.store.models.billing import Invoice, InvoiceLine, Subscription
from mno.store.models.reports import ReportInvoiceMonth, ReportRevenueMonth
from mno.tenancy import tenants
from tests.billing.conftest import CATALOGUE

Opener = Callable[..., AbstractContextManager[Any]]

USD_PLAN = """
kind: Plan
metadata: {name: basic}
spec:
  currency: USD
  charges:
    - {kind: fixed, amount: "10.00", timing: advance}
"""


def _at(y: int, m: int, d: int) -> datetime:
    return datetime(y, m, d, 12, tzinfo=UTC)


def expected(s: Any) -> tuple[dict[tuple[str, ...], tuple[int, int]], ...]:
    """Both rollups computed here, in Python, from every invoice, line and subscription."""
    subs = {sub.id: sub for sub in s.execute(sa.select(Subscription)).scalars()}
    by_id = {}
    inv_rows: Counter[tuple[str, ...]] = Counter()
    inv_totals: Counter[tuple[str, ...]] = Counter()
    for inv in s.execute(sa.select(Invoice)).scalars():
        by_id[inv.id] = inv
        if inv.status in ("issued", "paid", "void"):
            paid = inv.paid_at.strftime("%Y-%m") if inv.status == "paid" and inv.paid_at else ""
            issued = inv.issued_at.strftime("%Y-%m") if inv.issued_at else ""
            key = (issued, inv.currency, inv.status, inv.kind, paid)
            inv_rows[key] += 1
            inv_totals[key] += inv.total_minor
    rev_rows: Counter[tuple[str, ...]] = Counter()
    rev_totals: Counter[tuple[str, ...]] = Counter()
    for ln in s.execute(sa.select(InvoiceLine)).scalars():
        inv = by_id[ln.invoice_id]
        if inv.status not in ("issued", "paid") or inv.issued_at is None:
            continue
        sub = subs.get(ln.subscription_id)
        key = (
            inv.issued_at.strftime("%Y-%m"),
            inv.currency,
            sub.plan_code if sub else "-",
            (sub.app_code or "-") if sub else "-",
            ln.kind,
        )
        rev_rows[key] += 1
        rev_totals[key] += ln.amount_minor * (-1 if inv.kind == "credit_note" else 1)
    return (
        {k: (n, inv_totals[k]) for k, n in inv_rows.items()},
        {k: (n, rev_totals[k]) for k, n in rev_rows.items()},
    )


def stored(s: Any) -> tuple[dict[tuple[str, ...], tuple[int, int]], ...]:
    """Both rollups as the store holds them (keys whose counts fell to zero left out)."""
    inv = {
        (r.month, r.currency, r.status, r.kind, r.paid_month): (r.invoices, r.total_minor)
        for r in s.execute(sa.select(ReportInvoiceMonth)).scalars()
        if r.invoices or r.total_minor
    }
    rev = {
        (r.month, r.currency, r.plan_code, r.app_code, r.line_kind): (r.lines, r.amount_minor)
        for r in s.execute(sa.select(ReportRevenueMonth)).scalars()
        if r.lines or r.amount_minor
    }
    return inv, rev


def by_issue(
    issued: dict[tuple[str, ...], tuple[int, int]],
) -> dict[tuple[str, ...], tuple[int, int]]:
    """The invoice rollup without its month of payment."""
    out: dict[tuple[str, ...], tuple[int, int]] = {}
    for key, (n, total) in issued.items():
        was = out.get(key[:4], (0, 0))
        out[key[:4]] = (was[0] + n, was[1] + total)
    return out


def check(session: Opener) -> tuple[dict[tuple[str, ...], tuple[int, int]], ...]:
    with session(write=False) as s:
        want = expected(s)
        assert stored(s) == want
    return want


def test_rollups_follow_every_billing_write(store_url: str, session: Opener) -> None:
    clock.set_now(_at(2026, 10, 20))
    with session() as s:
        documents.apply_text(s, CATALOGUE)
        documents.apply_text(s, USD_PLAN)
        for key, country in (("fra", "FR"), ("deu", "DE"), ("crd", "DE"), ("oops", "DE")):
            tenants.create(s, key, country=country)
            subscriptions.create(s, key, "pro", start=_at(2026, 9, 1), app_code="crm")
        tenants.create(s, "usd", country="US", currency="USD")
        subscriptions.create(s, "usd", "basic", start=_at(2026, 9, 1))
        usage.record(s, "deu", "api_calls", Decimal(5000), at=_at(2026, 10, 5))
        ledger.add_credit(s, "crd", 1000, "EUR")
    clock.set_now(_at(2026, 11, 2))  # October has closed
    assert billing.run("2026-10", url=store_url).invoices == 5
    assert check(session) == ({}, {})  # drafts count nowhere

    with session() as s:
        ids = {key: invoices.list_invoices(s, key)[0].id for key in ("fra", "deu", "crd", "usd")}
        for inv_id in ids.values():
            invoices.issue(s, str(inv_id))
        oops = invoices.list_invoices(s, "oops")[0]
        credit_notes.void(s, str(oops.id), reason="draft billed by mistake")
    issued, revenue = check(session)
    # 49.00 + VAT 9.80; 49.00 + 8.00 usage; 49.00 less 10.00 credit; 10.00 USD
    assert by_issue(issued) == {
        ("2026-11", "EUR", "issued", "period"): (3, 5880 + 5700 + 3900),
        ("2026-11", "USD", "issued", "period"): (1, 1000),
        ("", "EUR", "void", "period"): (1, 4900),  # the voided draft, never issued
    }
    assert revenue[("2026-11", "EUR", "pro", "crm", "fixed")] == (3, 3 * 4900)
    assert revenue[("2026-11", "EUR", "pro", "crm", "usage")][1] == 800

    with session() as s:
        invoices.pay(s, str(ids["deu"]), 2000)  # partly: still issued
        invoices.pay(s, str(ids["usd"]))
        # books a credit note (positive), void like the invoice: neither is billed
        credit_notes.void(s, str(ids["fra"]), reason="wrong country")
    issued, _ = check(session)
    assert issued[("2026-11", "EUR", "void", "period", "")] == (1, 5880)
    assert issued[("2026-11", "EUR", "void", "credit_note", "")] == (1, 5880)
    assert issued[("2026-11", "USD", "paid", "period", "2026-11")] == (1, 1000)
    with session() as s:
        invoices.pay(s, str(ids["deu"]))  # the rest: paid
        ledger.add_credit(s, "crd", 99900, "EUR")  # the next invoice is paid by credit
    check(session)

    clock.set_now(_at(2026, 12, 1))  # November has closed
    assert billing.run("2026-11", url=store_url).invoices == 5  # "oops" is billed again
    with session() as s:
        for inv in invoices.list_invoices(s, status="draft"):
            invoices.issue(s, str(inv.id))
    issued, _ = check(session)
    assert issued[("2026-12", "EUR", "paid", "period", "2026-12")] == (1, 0)

    # set-based writes: many invoices in one statement each
    with session() as s:
        t = Invoice.__table__
        s.execute(
            t.update()
            .where(t.c.status == "issued", t.c.kind == "period")
            .values(status="paid", paid_minor=t.c.total_minor)
        )
        s.execute(
            t.update()
            .where(t.c.currency == "USD")
            .values(issued_at=sa.literal(_at(2026, 12, 31), t.c.issued_at.type))
        )
    issued, revenue = check(session)
    assert ("2026-11", "USD", "paid", "period") not in by_issue(issued)
    assert by_issue(issued)[("2026-12", "USD", "paid", "period")] == (2, 2000)
    assert issued[("2026-12", "USD", "paid", "period", "")] == (1, 1000)  # no payment time
    with session() as s:
        ln = InvoiceLine.__table__
        t = Invoice.__table__
        s.execute(
            ln.update().where(ln.c.kind == "fixed").values(amount_minor=ln.c.amount_minor + 1)
        )
        usd = sa.select(t.c.id).where(t.c.currency == "USD").scalar_subquery()
        s.execute(ln.delete().where(ln.c.invoice_id.in_(usd)))
        s.execute(t.delete().where(t.c.currency == "USD"))
    issued, revenue = check(session)
    assert not any(key[1] == "USD" for key in issued) and revenue

    # a rebuild from scratch finds what the triggers kept
    with session() as s:
        s.execute(sa.delete(ReportInvoiceMonth))
        s.execute(sa.delete(ReportRevenueMonth))
        assert stored(s) == ({}, {})
        counts = rollup.rebuild(s)
        assert counts == {"report_invoice_month": len(issued), "report_revenue_month": len(revenue)}
    assert check(session) == (issued, revenue)


def test_install_backfills_invoices_written_before_it(store_url: str, session: Opener) -> None:
    """The migration's backfill: invoices written while the triggers are away are summed
    when they are installed."""
    from mno.store import db

    clock.set_now(_at(2026, 10, 2))
    with session() as s:
        t, _ = tenants.create(s, "early")
        dialect = s.get_bind().dialect.name
        for stmt in rollup.drop_sql(dialect):
            s.connection().exec_driver_sql(stmt)
        for n, status in enumerate(("paid", "issued", "void", "draft")):
            inv = Invoice(
                tenant_id=t.id,
                period=f"2026-0{n + 1}",
                status=status,
                currency="EUR",
                total_minor=100 * (n + 1),
                issued_at=_at(2026, 9 + n % 2, 3) if status != "draft" else None,
                paid_at=_at(2026, 10, 1) if status == "paid" else None,
            )
            s.add(inv)
            s.flush()
            s.add(InvoiceLine(invoice_id=inv.id, line_key=f"k{n}", kind="fixed", amount_minor=7))
        s.flush()
        assert stored(s) == ({}, {})
    with db.get_engine(store_url).begin() as conn:
        rollup.install(conn)
    issued, revenue = check(session)
    assert issued == {
        ("2026-09", "EUR", "paid", "period", "2026-10"): (1, 100),
        ("2026-10", "EUR", "issued", "period", ""): (1, 200),
        ("2026-09", "EUR", "void", "period", ""): (1, 300),
    }
    assert revenue == {
        ("2026-09", "EUR", "-", "-", "fixed"): (1, 7),
        ("2026-10", "EUR", "-", "-", "fixed"): (1, 7),
    }
    with session() as s:  # and the triggers are back
        inv = s.execute(sa.select(Invoice).where(Invoice.status == "draft")).scalar_one()
        inv.status, inv.issued_at = "issued", _at(2026, 10, 9)
        s.add(inv)
    assert check(session)[0][("2026-10", "EUR", "issued", "period", "")] == (2, 600)


def test_rebuild_command_recomputes_stale_rollups(session: Opener, cli: Any) -> None:
    from tests.reports.test_billing_kpis import seed

    seed(session)
    with session() as s:
        s.execute(sa.delete(ReportInvoiceMonth))
        s.execute(sa.delete(ReportRevenueMonth))
    args = ("report", "revenue", "--period", "2026-11", "--months", "2", "-o", "json")
    assert cli.json(*args)["metrics"]["revenue_in_window"] == {}
    # invoices: October's paid and issued, November's issued, paid (USD) and credit note;
    # lines: pro/crm fixed and usage in both months, pro/- fixed in October, basic in November
    assert cli.json("report", "rebuild", "-o", "json") == {
        "report_invoice_month": 5,
        "report_revenue_month": 6,
    }
    assert cli.json(*args)["metrics"]["revenue_in_window"] == {
        "EUR": {"amount": "260.00", "currency": "EUR"},
        "USD": {"amount": "10.00", "currency": "USD"},
    }
    assert [e["action"] for e in cli.json("audit", "list", "--action", "report.*")] == [
        "report.rebuild"
    ]
    assert cli("report", "rebuild").exit_code == 0
