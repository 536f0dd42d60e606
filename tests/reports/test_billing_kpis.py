"""Revenue and invoice KPIs against values computed by hand, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime

from mno import clock
from mno.reports import kpis
from mno.reports.model import Window
from mno.store.models.billing import Invoice, InvoiceLine, Plan, Subscription
from mno.tenancy import tenants


def _at(month: int, day: int) -> datetime:
    return datetime(2026, month, day, 12, tzinfo=UTC)


def seed(session) -> None:
    clock.set_now(_at(9, 1))
    with session() as s:
        t1, _ = tenants.create(s, "one", currency="EUR")
        t2, _ = tenants.create(s, "two", currency="EUR")
        t3, _ = tenants.create(s, "three", currency="USD")
        pro = Plan(code="pro", currency="EUR")
        basic = Plan(code="basic", currency="USD")
        s.add_all([pro, basic])
        s.flush()
        s1 = Subscription(
            tenant_id=t1.id, plan_id=pro.id, plan_code="pro", app_code="crm", started_at=_at(9, 1)
        )
        s2 = Subscription(tenant_id=t2.id, plan_id=pro.id, plan_code="pro", started_at=_at(9, 1))
        s3 = Subscription(
            tenant_id=t3.id, plan_id=basic.id, plan_code="basic", started_at=_at(9, 1)
        )
        s.add_all([s1, s2, s3])
        s.flush()

        def invoice(
            tenant,
            currency,
            status,
            issued,
            lines,
            *,
            kind="period",
            due=None,
            paid=None,
            total=None,
        ):
            inv = Invoice(
                tenant_id=tenant.id,
                period=f"2026-{issued.month:02d}",
                kind=kind,
                status=status,
                currency=currency,
                issued_at=issued if status != "draft" else None,
                due_at=due,
                paid_at=paid,
                total_minor=total if total is not None else sum(a for _, _, a in lines),
                paid_minor=0,
            )
            s.add(inv)
            s.flush()
            for n, (sub, line_kind, amount) in enumerate(lines):
                s.add(
                    InvoiceLine(
                        invoice_id=inv.id,
                        line_key=f"{inv.id}-{n}",
                        kind=line_kind,
                        subscription_id=sub.id,
                        amount_minor=amount,
                    )
                )

        # October: one paid 100.00 (80 fixed + 20 usage), two issued 50.00, overdue by Nov 20
        invoice(
            t1,
            "EUR",
            "paid",
            _at(10, 2),
            [(s1, "fixed", 8000), (s1, "usage", 2000)],
            paid=_at(10, 15),
        )
        invoice(t2, "EUR", "issued", _at(10, 2), [(s2, "fixed", 5000)], due=_at(10, 31))
        # November: one issued 120.00 (due in December), three paid 10.00 USD,
        # a 10.00 credit note for two, and a draft that counts nowhere
        invoice(
            t1,
            "EUR",
            "issued",
            _at(11, 2),
            [(s1, "fixed", 8000), (s1, "usage", 4000)],
            due=_at(12, 5),
        )
        invoice(t3, "USD", "paid", _at(11, 2), [(s3, "fixed", 1000)], paid=_at(11, 10))
        invoice(t2, "EUR", "issued", _at(11, 5), [], kind="credit_note", total=1000)
        invoice(t2, "EUR", "draft", _at(11, 6), [(s2, "fixed", 99900)])
    clock.set_now(_at(11, 20))


def test_revenue_by_hand(session):
    seed(session)
    with session(write=False) as s:
        report = kpis.revenue_report(s, Window.ending("2026-11", 2))
    assert report.metrics == {
        "mrr": {
            "EUR": {"amount": "80.00", "currency": "EUR"},
            "USD": {"amount": "10.00", "currency": "USD"},
        },
        "arr": {
            "EUR": {"amount": "960.00", "currency": "EUR"},
            "USD": {"amount": "120.00", "currency": "USD"},
        },
        "revenue_in_window": {
            "EUR": {"amount": "260.00", "currency": "EUR"},
            "USD": {"amount": "10.00", "currency": "USD"},
        },  # 150 + (120 - 10)
        "arpa": {
            "EUR": {"amount": "130.00", "currency": "EUR"},
            "USD": {"amount": "10.00", "currency": "USD"},
        },
        "nrr_pct": {"EUR": 73.3, "USD": None},  # 110 of 150 from October's tenants
    }
    assert report.tables["monthly"] == [
        {
            "month": "2026-10",
            "EUR": {"amount": "150.00", "currency": "EUR"},
            "USD": {"amount": "0.00", "currency": "USD"},
        },
        {
            "month": "2026-11",
            "EUR": {"amount": "110.00", "currency": "EUR"},
            "USD": {"amount": "10.00", "currency": "USD"},
        },
    ]
    assert report.tables["by_plan"] == [
        {"plan": "basic", "revenue": {"amount": "10.00", "currency": "USD"}},
        {"plan": "pro", "revenue": {"amount": "270.00", "currency": "EUR"}},
    ]
    assert report.tables["by_app"] == [
        {"app": "-", "revenue": {"amount": "50.00", "currency": "EUR"}},
        {"app": "-", "revenue": {"amount": "10.00", "currency": "USD"}},
        {"app": "crm", "revenue": {"amount": "220.00", "currency": "EUR"}},
    ]


def test_summary_revenue_reads_the_last_month_lines(session):
    seed(session)
    window = Window.ending("2026-11", 2)
    with session(write=False) as s:
        detail = kpis.revenue_report(s, window)
        summary = next(r for r in kpis.summary(s, window) if r.area == "revenue")
    assert summary.metrics == detail.metrics
    assert summary.tables["monthly"] == detail.tables["monthly"]
    # November's billed lines: t1's 80 fixed + 40 usage (pro, crm) and t3's 10 (basic);
    # the credit note has no lines and the draft is not billed
    assert summary.tables["last_month_by_plan"] == [
        {"plan": "basic", "month": "2026-11", "revenue": {"amount": "10.00", "currency": "USD"}},
        {"plan": "pro", "month": "2026-11", "revenue": {"amount": "120.00", "currency": "EUR"}},
    ]
    assert summary.tables["last_month_by_app"] == [
        {"app": "-", "month": "2026-11", "revenue": {"amount": "10.00", "currency": "USD"}},
        {"app": "crm", "month": "2026-11", "revenue": {"amount": "120.00", "currency": "EUR"}},
    ]
    assert "by_plan" not in summary.tables


def test_invoices_by_hand(session):
    seed(session)
    with session(write=False) as s:
        report = kpis.invoices_report(s, Window.ending("2026-11", 2))
    assert report.tables["by_currency"] == [
        {
            "currency": "EUR",
            "outstanding_count": 2,
            "outstanding": {"amount": "170.00", "currency": "EUR"},
            "overdue_count": 1,
            "overdue": {"amount": "50.00", "currency": "EUR"},
            "dso_days": 31.5,  # 170 / 270 billed × 50 days
        }
    ]
    assert report.metrics["outstanding_count"] == 2 and report.metrics["overdue_count"] == 1
    assert report.tables["monthly"] == [
        {"month": "2026-10", "issued": 2, "paid": 1},
        {"month": "2026-11", "issued": 2, "paid": 1},
    ]
