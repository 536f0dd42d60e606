"""Impac KPIs on the books of ``tests/impac/conftest.py`` against hand-computed values,
on SQLite and PostgreSQL."""

from __future__ import annotations

from typing import Any

import pytest

from mno.errors import BadInput
from mno.impac import currency, widgets
from mno.impac.model import Query, Window
from tests.impac.conftest import WINDOW


def widget(
    session: Any,
    name: str,
    group_by: str | None = None,
    cur: str | None = None,
    rates: list[str] | None = None,
    start: str = WINDOW["start"],
    end: str = WINDOW["end"],
) -> dict[str, Any]:
    view = currency.View.of(cur, currency.parse_rates(rates or []))
    with session(write=False) as s:
        return widgets.run(s, "acme", name, Query(Window.of(start, end), view, group_by))


def points(body: dict[str, Any], cur: str | None = None, index: int = 0) -> dict[str, Any]:
    series = [s for s in body["series"] if cur is None or s["currency"] == cur]
    return {p["x"]: p["y"] for p in series[index]["points"]}


def test_revenue_by_month_per_currency(session, books):
    """USD: Jan i1 1000.00; Feb 0 (i7 void); Mar i2 500.50; Apr i3 300.25 + i10 80.10 =
    380.35; May 0 (i6 draft, i9 deleted); Jun i4 200.00 + i5 99.99 = 299.99.
    Total 1000.00 + 500.50 + 380.35 + 299.99 = 2180.84 (i8 supplier, i11 before the
    window). EUR: Feb e2 800.00, May e1 1200.00 = 2000.00. Invoices counted: 6 + 2 = 8."""
    body = widget(session, "revenue")
    assert body["window"] == {"from": "2026-01-01", "to": "2026-06-30"}
    assert points(body, "USD") == {
        "2026-01": "1000.00",
        "2026-02": "0.00",
        "2026-03": "500.50",
        "2026-04": "380.35",
        "2026-05": "0.00",
        "2026-06": "299.99",
    }
    assert points(body, "EUR") == {
        "2026-01": "0.00",
        "2026-02": "800.00",
        "2026-03": "0.00",
        "2026-04": "0.00",
        "2026-05": "1200.00",
        "2026-06": "0.00",
    }
    assert body["totals"] == {"revenue": {"EUR": "2000.00", "USD": "2180.84"}, "invoices": 8}
    assert "rates" not in body


def test_revenue_by_customer(session, books):
    """USD: Alpha i1 1000.00 + i2 500.50 + i5 99.99 + i10 80.10 = 1680.59;
    Beta i3 300.25 + i4 200.00 = 500.25. EUR: Beta 1200.00, Alpha 800.00."""
    body = widget(session, "revenue", "customer")
    assert points(body, "USD") == {"Alpha Ltd": "1680.59", "Beta GmbH": "500.25"}
    assert list(points(body, "EUR")) == ["Beta GmbH", "Alpha Ltd"]
    assert body["totals"]["customers"] == 2


def test_receivables_aging_on_a_fixed_day(session, books):
    """As of 2026-06-30, days past due: i5 not yet due (99.99 current); i4 due 06-10 →
    20 days (200.00 in 0-30); i3 due 05-15 → 46 days (100.25 owed, 31-60); i10 due 04-30
    → 61 days (80.10, 61-90); i2 due 03-20 → 102 days and i11 due 01-14 → 167 days
    (500.50 + 60.00 = 560.50 in 90+). USD total 99.99 + 200.00 + 100.25 + 80.10 + 560.50
    = 1040.84, overdue 940.85. EUR: e1 due 06-09 → 21 days, 1200.00 in 0-30."""
    body = widget(session, "receivables")
    assert points(body, "USD") == {
        "current": "99.99",
        "0-30": "200.00",
        "31-60": "100.25",
        "61-90": "80.10",
        "90+": "560.50",
    }
    assert points(body, "EUR") == {
        "current": "0.00",
        "0-30": "1200.00",
        "31-60": "0.00",
        "61-90": "0.00",
        "90+": "0.00",
    }
    assert body["totals"]["receivables"] == {"EUR": "1200.00", "USD": "1040.84"}
    assert body["totals"]["overdue"] == {"EUR": "1200.00", "USD": "940.85"}


def test_aging_bucket_edges(session, books):
    """As of 2026-05-31: i4 and i5 are not issued yet; i3 (due 05-15, 16 days) 0-30; i10
    (due 04-30, 31 days) 31-60; i2 (due 03-20, 72 days) 61-90; i11 (due 01-14, 137 days)
    90+; i6 is a draft. Exactly 30 days (due 05-01) would be 0-30: i9 (deleted) is not
    counted. As of 2026-04-30, i10 is due that day: 0 days past due, so 0-30."""
    body = widget(session, "receivables", end="2026-05-31")
    assert points(body, "USD") == {
        "current": "0.00",
        "0-30": "100.25",
        "31-60": "80.10",
        "61-90": "500.50",
        "90+": "60.00",
    }
    early = widget(session, "receivables", end="2026-04-30")
    assert points(early, "USD")["0-30"] == "80.10"  # i10, due that very day
    assert points(early, "USD")["current"] == "100.25"  # i3, due 05-15


def test_dso_the_standard_way(session, books):
    """DSO = receivables at the window's end / credit sales in the window × days.
    USD: 1040.84 / 2180.84 × 181 = 86.385… → 86.4. EUR: 1200.00 / 2000.00 × 181 = 108.6."""
    body = widget(session, "dso")
    assert body["totals"]["dso"] == {"EUR": "108.6", "USD": "86.4"}
    assert body["totals"]["days"] == 181
    assert body["totals"]["credit_sales"] == {"EUR": "2000.00", "USD": "2180.84"}


def test_cash_collected(session, books):
    """USD: Feb 1000.00, May 200.00 (the 2025-12-20 payment is before the window) =
    1200.00; EUR: Mar 800.00."""
    body = widget(session, "cash")
    assert points(body, "USD")["2026-02"] == "1000.00"
    assert points(body, "USD")["2026-05"] == "200.00"
    assert body["totals"] == {"cash_collected": {"EUR": "800.00", "USD": "1200.00"}, "payments": 3}


def test_pipeline_and_weighted_pipeline(session, books):
    """Open USD: prospecting 1000.00, proposal 2500.50, negotiation 333.33 = 3833.83;
    weighted 1000.00×10% + 2500.50×40% + 333.33×75% = 100 + 1000.20 + 249.9975 =
    1350.1975 → 1350.20. EUR: proposal 1000.00, weighted 500.00. 4 open."""
    body = widget(session, "pipeline")
    assert points(body, "USD") == {
        "prospecting": "1000.00",
        "qualification": "0.00",
        "proposal": "2500.50",
        "negotiation": "333.33",
    }
    assert body["totals"] == {
        "pipeline": {"EUR": "1000.00", "USD": "3833.83"},
        "weighted_pipeline": {"EUR": "500.00", "USD": "1350.20"},
        "open_opportunities": 4,
    }


def test_win_rate(session, books):
    """Closed in the window: won o5 (03-15) and o6 (05-02), lost o7 (04-20); o8 and o9
    closed outside. 2 / (2 + 1) = 0.6667; won amount 5000.00 + 700.00 = 5700.00 USD."""
    body = widget(session, "win-rate")
    assert body["totals"] == {
        "won": 2,
        "lost": 1,
        "win_rate": "0.6667",
        "won_amount": {"USD": "5700.00"},
    }
    assert points(body)["2026-03"] == "1.0000"
    assert points(body)["2026-04"] == "0.0000"
    assert points(body)["2026-01"] is None


def test_headcount_joiners_leavers(session, books):
    """Month ends: Jan 31 h1, h2, h3 (hired 01-31) = 3 (h7 left 01-01); Feb 28 h1, h3 = 2
    (h2 left 02-15); Mar 31 2 (h4 left 03-31); Apr 2; May 2; Jun 30 h1, h3, h5 = 3.
    Joiners Jan h3, Mar h4, Jun h5; leavers Jan h7, Feb h2, Mar h4."""
    body = widget(session, "headcount")
    assert points(body, index=0) == {
        "2026-01": 3,
        "2026-02": 2,
        "2026-03": 2,
        "2026-04": 2,
        "2026-05": 2,
        "2026-06": 3,
    }
    assert points(body, index=1) == {
        "2026-01": 1,
        "2026-02": 0,
        "2026-03": 1,
        "2026-04": 0,
        "2026-05": 0,
        "2026-06": 1,
    }
    assert points(body, index=2) == {
        "2026-01": 1,
        "2026-02": 1,
        "2026-03": 1,
        "2026-04": 0,
        "2026-05": 0,
        "2026-06": 0,
    }
    assert body["totals"] == {"headcount": 3, "joiners": 3, "leavers": 3}


def test_currencies_are_never_added_without_a_rate(session, books):
    """--currency USD alone: only USD amounts (2180.84). With EUR:USD = 1.08: 2180.84 +
    2000.00 × 1.08 = 4340.84, and the answer states the rate. With the inverse pair
    USD:EUR = 0.8: 2180.84 + 2000.00 / 0.8 = 4680.84."""
    only = widget(session, "revenue", cur="USD")
    assert only["totals"]["revenue"] == {"USD": "2180.84"}
    assert [s["currency"] for s in only["series"]] == ["USD"]
    assert "rates" not in only
    converted = widget(session, "revenue", cur="USD", rates=["EUR:USD=1.08"])
    assert converted["totals"]["revenue"] == {"USD": "4340.84"}
    assert converted["rates"] == {"EUR:USD": "1.08"}
    assert points(converted, "USD")["2026-05"] == "1296.00"
    inverse = widget(session, "revenue", cur="USD", rates=["USD:EUR=0.8"])
    assert inverse["totals"]["revenue"] == {"USD": "4680.84"}
    assert inverse["rates"] == {"USD:EUR": "0.8"}
    with pytest.raises(BadInput, match="no rate from [A-Z]{3} to GBP"):
        widget(session, "revenue", cur="GBP", rates=["EUR:USD=1.08"])


def test_bad_queries_are_refused(session, books):
    with pytest.raises(BadInput):
        widget(session, "revenue", group_by="stage")
    with pytest.raises(BadInput):
        widget(session, "revenue", start="2026-07-01", end="2026-06-30")
    with pytest.raises(BadInput):
        Window.of("2026-02-30", None)
    with pytest.raises(BadInput):
        currency.parse_rate("EUR-USD=1")


def test_values_that_are_not_plain_decimals_are_left_out(session, books):
    """A record synced with a malformed amount (``12,50``, ``abc``, ``1.2.3``) or
    probability (``high``) is left out of the sums on both stores, never an error:
    USD revenue stays 2180.84 while the invoice count grows by 3; the pipeline adds the
    well-formed 10.00 of o10 with no weight (its probability is not a number)."""
    from tests.impac.conftest import insert_records

    bad = [
        ("invoices", {"type": "customer", "transaction_date": "2026-03-01", "currency": "USD",
                      "total_amount": amount, "balance": amount, "status": "authorised"})
        for amount in ("12,50", "abc", "1.2.3")
    ]  # fmt: skip
    bad.append(("opportunities", {"name": "o10", "stage": "proposal", "amount": "10.00",
                                  "currency": "USD", "probability": "high"}))  # fmt: skip
    insert_records(session, "acme", bad)
    body = widget(session, "revenue")
    assert body["totals"] == {"revenue": {"EUR": "2000.00", "USD": "2180.84"}, "invoices": 11}
    assert widget(session, "receivables")["totals"]["receivables"]["USD"] == "1040.84"
    pipeline = widget(session, "pipeline")["totals"]
    assert pipeline["pipeline"]["USD"] == "3843.83"
    assert pipeline["weighted_pipeline"]["USD"] == "1350.20"
