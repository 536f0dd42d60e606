"""Finance KPIs: revenue, accounts receivable and its aging, DSO, cash collected.

Definitions (over the tenant's live ``invoices`` and ``payments`` records):

- **Revenue** is the ``total_amount`` of customer invoices (``type`` customer or
  missing) whose ``status`` is ``authorised`` or ``paid`` (drafts and void invoices are
  left out; a missing status counts as authorised), by ``transaction_date`` in the
  window, per month or per customer (``organization_id``).
- **Accounts receivable** as of a day is the ``balance`` (the amount still owed) of the
  customer invoices issued on or before that day whose status is ``authorised`` and whose
  balance is not zero. An invoice ages from its ``due_date`` (its ``transaction_date``
  when it has none): ``current`` (not yet due), ``0-30``, ``31-60``, ``61-90`` and
  ``90+`` days past due on the as-of day. The balance is the record's current balance.
- **DSO** (days sales outstanding), the standard way::

      DSO = accounts receivable at the end of the window
            / credit sales in the window × days in the window

  where credit sales are the revenue above (every customer invoice is a sale on credit)
  and both ends of the window count as days. It is given per currency, to one decimal;
  a currency without sales in the window has no DSO (null).
- **Cash collected** is the ``amount`` of ``payments`` by ``transaction_date``, per month.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from decimal import Decimal
from typing import Any

from sqlmodel import Session

from mno.impac import sql
from mno.impac.currency import amount_text, rounded, totals
from mno.impac.model import Query, Result, Series

BUCKETS = ("current", "0-30", "31-60", "61-90", "90+")

_INVOICE = {
    "d": "transaction_date",
    "due": "due_date",
    "cur": "currency",
    "amt": "total_amount",
    "bal": "balance",
    "typ": "type",
    "st": "status",
    "org": "organization_id",
}
_CUSTOMER = "COALESCE(typ, 'customer') = 'customer'"
_ISSUED = "COALESCE(st, 'authorised') IN ('authorised', 'paid')"


def _sales(
    session: Session, tenant_id: uuid.UUID, q: Query, key: str
) -> dict[tuple[Any, str], tuple[Decimal, int]]:
    """Revenue per ``(key, currency)``; ``key`` is a column expression of the inner rows."""
    d = sql.dialect(session)
    rows = sql.run(
        session,
        f"SELECT {key} AS k, cur, SUM({d.amount('amt')}) AS total, COUNT(*) AS n "
        f"FROM ({sql.records(d, _INVOICE)}) r "
        f"WHERE {_CUSTOMER} AND {_ISSUED} AND d >= :start AND d <= :end "
        "GROUP BY k, cur",
        tenant_id,
        "invoices",
        start=q.window.start.isoformat(),
        end=q.window.end.isoformat(),
    )
    return {(row.k, row.cur): (d.value(row.total), int(row.n)) for row in rows}


def revenue(session: Session, tenant_id: uuid.UUID, q: Query) -> Result:
    group_by = q.group_by or "month"
    if group_by == "customer":
        return _revenue_by_customer(session, tenant_id, q)
    found = _sales(session, tenant_id, q, "substr(d, 1, 7)")
    shown = q.view.apply({k: v[0] for k, v in found.items()})
    months = q.window.months()
    series = [
        Series(
            "revenue",
            [(m, amount_text(values.get(m, Decimal(0)), cur)) for m in months],
            currency=cur,
        )
        for cur, values in sorted(shown.items())
    ]
    count = sum(n for (m, cur), (_, n) in found.items() if _shown(q, cur))
    return Result(series, {"revenue": totals(shown), "invoices": count}, group_by)


def _shown(q: Query, currency: str) -> bool:
    return q.view.currency is None or q.view.converting or currency == q.view.currency


def _revenue_by_customer(session: Session, tenant_id: uuid.UUID, q: Query, top: int = 20) -> Result:
    found = _sales(session, tenant_id, q, "COALESCE(org, '')")
    shown = q.view.apply({k: v[0] for k, v in found.items()})
    ids = {k for values in shown.values() for k in values if k}
    named = _names(session, tenant_id, ids)
    series = []
    for cur, values in sorted(shown.items()):
        ranked = sorted(values.items(), key=lambda kv: (-kv[1], kv[0]))
        points = [
            (named.get(k, k or "(no customer)"), amount_text(v, cur)) for k, v in ranked[:top]
        ]
        rest = sum((v for _, v in ranked[top:]), Decimal(0))
        if len(ranked) > top:
            points.append((f"{len(ranked) - top} others", amount_text(rest, cur)))
        series.append(Series("revenue by customer", points, currency=cur))
    customers = len({k for values in shown.values() for k in values})
    return Result(series, {"revenue": totals(shown), "customers": customers}, "customer")


def _names(session: Session, tenant_id: uuid.UUID, ids: set[str]) -> dict[str, str]:
    found = sql.names(session, tenant_id, ids)
    out: dict[str, str] = {}
    for text in ids:
        try:
            key = str(uuid.UUID(str(text)))
        except ValueError:
            continue
        if key in found:
            out[text] = found[key]
    return out


def aging(session: Session, tenant_id: uuid.UUID, q: Query) -> dict[tuple[str, str], Decimal]:
    """Receivables per ``(bucket, currency)`` as of the window's last day."""
    d = sql.dialect(session)
    as_of = q.window.end
    balance = d.amount("COALESCE(bal, amt)")
    rows = sql.run(
        session,
        "SELECT CASE WHEN due > :as_of THEN 'current' "
        "WHEN due >= :d30 THEN '0-30' WHEN due >= :d60 THEN '31-60' "
        "WHEN due >= :d90 THEN '61-90' ELSE '90+' END AS bucket, cur, "
        f"SUM(balance) AS total FROM (SELECT COALESCE(due, d) AS due, cur, {balance} AS balance "
        f"FROM ({sql.records(d, _INVOICE)}) i "
        f"WHERE COALESCE(st, 'authorised') = 'authorised' AND {_CUSTOMER} AND d <= :as_of) r "
        "WHERE balance <> 0 GROUP BY bucket, cur",
        tenant_id,
        "invoices",
        as_of=as_of.isoformat(),
        d30=q.window.shifted(30).isoformat(),
        d60=q.window.shifted(60).isoformat(),
        d90=q.window.shifted(90).isoformat(),
    )
    return {(row.bucket, row.cur): d.value(row.total) for row in rows}


def receivables(session: Session, tenant_id: uuid.UUID, q: Query) -> Result:
    shown = q.view.apply(aging(session, tenant_id, q))
    series = [
        Series(
            "receivables by age",
            [(b, amount_text(values.get(b, Decimal(0)), cur)) for b in BUCKETS],
            currency=cur,
        )
        for cur, values in sorted(shown.items())
    ]
    overdue = {
        cur: amount_text(sum((v for b, v in values.items() if b != "current"), Decimal(0)), cur)
        for cur, values in sorted(shown.items())
    }
    return Result(
        series,
        {"receivables": totals(shown), "overdue": overdue, "as_of": q.window.end.isoformat()},
        "age",
    )


def dso(session: Session, tenant_id: uuid.UUID, q: Query) -> Result:
    owed = q.view.apply(aging(session, tenant_id, q))
    sales = q.view.apply({k: v[0] for k, v in _sales(session, tenant_id, q, "'all'").items()})
    days = q.window.days
    ar_total = {cur: sum(v.values(), Decimal(0)) for cur, v in owed.items()}
    sales_total = {cur: sum(v.values(), Decimal(0)) for cur, v in sales.items()}
    figures: dict[str, str | None] = {}
    for cur in sorted(set(ar_total) | set(sales_total)):
        credit = sales_total.get(cur, Decimal(0))
        figures[cur] = (
            str(rounded(ar_total.get(cur, Decimal(0)) / credit * days)) if credit > 0 else None
        )
    series = [
        Series("dso", [(q.window.end.isoformat(), value)], currency=cur, unit="days")
        for cur, value in figures.items()
    ]
    return Result(
        series,
        {
            "dso": figures,
            "receivables": totals(owed),
            "credit_sales": totals(sales),
            "days": days,
            "formula": "receivables at the window's end / credit sales in the window × days",
        },
        None,
    )


def cash(session: Session, tenant_id: uuid.UUID, q: Query) -> Result:
    d = sql.dialect(session)
    rows = sql.run(
        session,
        f"SELECT substr(d, 1, 7) AS m, cur, SUM({d.amount('amt')}) AS total, COUNT(*) AS n "
        f"FROM ({sql.records(d, {'d': 'transaction_date', 'cur': 'currency', 'amt': 'amount'})}) r "
        "WHERE d >= :start AND d <= :end GROUP BY m, cur",
        tenant_id,
        "payments",
        start=q.window.start.isoformat(),
        end=q.window.end.isoformat(),
    )
    counts: dict[str, int] = defaultdict(int)
    for row in rows:
        counts[row.cur] += int(row.n)
    shown = q.view.apply({(row.m, row.cur): d.value(row.total) for row in rows})
    series = [
        Series(
            "cash collected",
            [(m, amount_text(values.get(m, Decimal(0)), cur)) for m in q.window.months()],
            currency=cur,
        )
        for cur, values in sorted(shown.items())
    ]
    payments = sum(n for cur, n in counts.items() if _shown(q, cur))
    return Result(series, {"cash_collected": totals(shown), "payments": payments}, "month")
