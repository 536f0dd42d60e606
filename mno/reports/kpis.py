"""KPI queries, one function per area. Every aggregation runs in the database."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from mno.errors import BadInput
from mno.money import MoneyJson, from_minor, money_json
from mno.reports import mrr as recurring
from mno.reports import sql
from mno.reports.backups import backups_report
from mno.reports.instances import instances_report
from mno.reports.model import Report, Series, Window, fill, month_bounds
from mno.reports.tables import (
    SYSTEM_KEY,
    invoice,
    invoice_month,
    revenue_month,
    sync_change,
    sync_conflict,
    sync_connection,
    sync_run,
    tenant,
    tenant_status_change,
    webhook_attempt,
    webhook_delivery,
    webhook_endpoint,
)

if TYPE_CHECKING:
    from sqlmodel import Session


_dialect = sql.dialect_of
_monthly_counts = sql.monthly_counts


# -- tenants ----------------------------------------------------------------------------


def tenants_report(session: Session, window: Window) -> Report:
    t = tenant

    not_system = t.c.key != SYSTEM_KEY
    by_status_tier = [
        {"status": status, "tier": tier, "count": int(n)}
        for status, tier, n in session.execute(
            sa.select(t.c.status, t.c.tier, sa.func.count())
            .where(not_system)
            .group_by(t.c.status, t.c.tier)
            .order_by(t.c.status, t.c.tier)
        )
    ]
    totals = session.execute(
        sa.select(
            sa.func.count(),
            sa.func.coalesce(sa.func.sum(sa.case((t.c.status == "active", 1), else_=0)), 0),
            sa.func.coalesce(sa.func.sum(sa.case((t.c.in_arrears.is_(True), 1), else_=0)), 0),
        ).where(not_system)
    ).one()
    c = tenant_status_change
    new = _monthly_counts(session, t.c.created_at, window, not_system)
    churned = _monthly_counts(session, c.c.at, window, c.c.to_status == "offboarded")
    reactivated = _monthly_counts(
        session, c.c.at, window, c.c.from_status == "suspended", c.c.to_status == "active"
    )
    months = window.month_keys()
    return Report(
        area="tenants",
        title="Tenants",
        window=window,
        metrics={
            "total": int(totals[0]),
            "active": int(totals[1]),
            "in_arrears": int(totals[2]),
            "new_in_window": sum(new.values()),
            "churned_in_window": sum(churned.values()),
            "reactivated_in_window": sum(reactivated.values()),
        },
        tables={
            "by_status_tier": by_status_tier,
            "monthly": [
                {
                    "month": m,
                    "new": new.get(m, 0),
                    "churned": churned.get(m, 0),
                    "reactivated": reactivated.get(m, 0),
                }
                for m in months
            ],
        },
        series=[
            Series("new tenants", "tenants", fill(window, new)),
            Series("churned tenants", "tenants", fill(window, churned)),
            Series("reactivated tenants", "tenants", fill(window, reactivated)),
        ],
    )


# -- revenue and invoices (billing) ------------------------------------------------------

BILLED = ("issued", "paid")
ISSUED = ("issued", "paid", "void")


def invoice_months(session: Session, window: Window) -> list[Any]:
    """The window's issued invoices grouped by month of issue, currency, status and kind:
    ``(month, currency, status, kind, count, total_minor)`` rows.

    Revenue, invoices issued and sales billed all derive from these few rows. They are
    read from the monthly rollup the store keeps as invoices are written
    (``mno.reports.rollup``), not from the invoices; the result is kept on the session.
    """
    r = invoice_month

    cache: dict[tuple[Any, Any], list[Any]] = session.info.setdefault("reports.invoice_months", {})
    key = (window.start, window.stop)
    if key not in cache:
        months = window.month_keys()
        invoices = sa.func.sum(r.c.invoices)
        cache[key] = [
            tuple(row)
            for row in session.execute(
                sa.select(
                    r.c.month,
                    r.c.currency,
                    r.c.status,
                    r.c.kind,
                    invoices,
                    sa.func.sum(r.c.total_minor),
                )
                .where(r.c.month >= months[0], r.c.month <= months[-1])
                .group_by(r.c.month, r.c.currency, r.c.status, r.c.kind)
                .having(invoices != 0)
                .order_by(r.c.month, r.c.currency, r.c.status, r.c.kind)
            )
        ]
    return cache[key]


def paid_months(session: Session, window: Window) -> dict[str, int]:
    """Invoices paid per month of payment in the window, from the monthly rollup."""
    r = invoice_month

    months = window.month_keys()
    paid = sa.func.sum(r.c.invoices)
    return {
        month: int(n)
        for month, n in session.execute(
            sa.select(r.c.paid_month, paid)
            .where(r.c.status == "paid", r.c.paid_month >= months[0], r.c.paid_month <= months[-1])
            .group_by(r.c.paid_month)
            .having(paid != 0)
        )
    }


def _money(units: int, currency: str) -> MoneyJson:
    return money_json(int(units), currency)


def _major(units: int, currency: str) -> Any:
    return from_minor(int(units), currency)


def _by_value_then_currency(name: str) -> Callable[[dict[str, Any]], tuple[Any, Any]]:
    return lambda row: (row[name], row["revenue"]["currency"])


def revenue_report(session: Session, window: Window, detail: bool = True) -> Report:
    """Revenue from issued and paid invoices (credit notes subtract), by month of issue.

    MRR is the recurring (fixed) revenue of the window's last month that has any, each
    line normalised to a month over its service period (``mno.reports.mrr``: an annual
    1200.00 counts 100.00 in each of its months); ARR is 12 × MRR; the ``mrr_monthly`` table
    gives it per month. ARPA divides the window's revenue by the tenants billed in it. NRR
    compares the last month's revenue from tenants billed in the first month with the
    first month's.
    Revenue by plan and by app sums invoice lines over the window; the summary
    (``detail=False``) shows them for the last billed month (``last_month_by_plan`` and
    ``last_month_by_app``). Monthly revenue, MRR and the lines by plan and app are read
    from the monthly rollups (``mno.reports.rollup``); tenants billed and NRR from the
    invoices, one index probe per tenant.
    """
    by_month = _billed_by_month(session, window)
    currencies = sorted(by_month)
    totals = {c: sum(v.values()) for c, v in by_month.items()}
    tenants_billed = _tenants_billed(session, window, currencies)
    months = window.month_keys()
    last_month = {
        c: max((k for k, v in by_month[c].items() if v), default=None) for c in currencies
    }
    live = _live_lines(window)
    last_plan, last_app = _last_month_lines(session, live, currencies, last_month)
    mrr_by_month = recurring.normalised(session, window)
    mrr_currencies = sorted(set(currencies) | set(mrr_by_month))
    last_mrr = recurring.latest(mrr_by_month)
    mrr = {c: last_mrr[c][1] if c in last_mrr else 0 for c in mrr_currencies}
    tables: dict[str, list[dict[str, Any]]] = {}
    if detail:
        tables.update(_lines_by_plan_and_app(session, live, months))
    else:
        for name, found in (("plan", last_plan), ("app", last_app)):
            tables[f"last_month_by_{name}"] = [
                {name: value, "month": last_month[cur], "revenue": _money(units, cur)}
                for (value, cur), units in sorted(found.items())
            ]
    nrr = _nrr(session, months, by_month, currencies)
    tables["monthly"] = [
        {"month": k, **{c: _money(by_month[c].get(k, 0), c) for c in currencies}} for k in months
    ]
    tables["mrr_monthly"] = [
        {
            "month": k,
            **{c: _money(mrr_by_month.get(c, {}).get(k, 0), c) for c in mrr_currencies},
        }
        for k in months
    ]
    return Report(
        area="revenue",
        title="Revenue",
        window=window,
        metrics={
            "mrr": {c: _money(v, c) for c, v in mrr.items()},
            "arr": {c: _money(v * 12, c) for c, v in mrr.items()},
            "revenue_in_window": {c: _money(v, c) for c, v in totals.items()},
            "arpa": {
                c: _money(totals[c] // max(1, int(tenants_billed.get(c, 0) or 0)), c)
                for c in currencies
            },
            "nrr_pct": nrr,
        },
        tables=tables,
        series=[
            Series(f"revenue {c}", c, [(k, _major(by_month[c].get(k, 0), c)) for k in months])
            for c in currencies
        ]
        + [
            Series(f"mrr {c}", c, [(k, _major(mrr_by_month[c].get(k, 0), c)) for k in months])
            for c in mrr_currencies
            if c in mrr_by_month
        ],
    )


def _billed_by_month(session: Session, window: Window) -> dict[str, dict[str, int]]:
    """Billed revenue in minor units per currency and month (credit notes subtract)."""
    by_month: dict[str, dict[str, int]] = {}
    for month, currency, status, kind, _, units in invoice_months(session, window):
        if status not in BILLED or (window.currency and currency != window.currency):
            continue
        months_of = by_month.setdefault(currency, {})
        months_of[month] = months_of.get(month, 0) + int(units or 0) * (
            -1 if kind == "credit_note" else 1
        )
    return by_month


def _tenants_billed(session: Session, window: Window, currencies: list[str]) -> dict[str, int]:
    """Tenants with a billed invoice in the window, per currency.

    One probe per tenant on an index of the invoices by tenant that answers it alone
    (cheaper than a DISTINCT over a year of invoices). SQLite is told which index to probe:
    it would otherwise scan the status range for every tenant.
    """
    i = invoice
    invoice_from = (
        "billing_invoice AS i INDEXED BY ix_report_invoice_tenant"
        if _dialect(session) == "sqlite"
        else "billing_invoice AS i"
    )
    probe = sa.text(
        "SELECT count(*) FROM tenant WHERE EXISTS (SELECT 1 FROM "
        + invoice_from
        + " WHERE i.tenant_id = tenant.id AND i.status IN ('issued', 'paid')"
        " AND i.issued_at >= :lo AND i.issued_at < :hi AND i.currency = :currency"
        " AND i.kind <> 'credit_note')"
    ).bindparams(
        sa.bindparam("lo", window.start, type_=i.c.issued_at.type),
        sa.bindparam("hi", window.stop, type_=i.c.issued_at.type),
    )
    return {c: int(session.execute(probe, {"currency": c}).scalar_one()) for c in currencies}


def _live_lines(window: Window) -> Any:
    """The rollup rows of billed lines, in the window's currency when it has one."""
    rev = revenue_month
    live = rev.c.lines != 0
    if window.currency:
        live = sa.and_(live, rev.c.currency == window.currency)
    return live


def _last_month_lines(
    session: Session, live: Any, currencies: list[str], last_month: dict[str, str | None]
) -> tuple[dict[tuple[str, str], int], dict[tuple[str, str], int]]:
    """The lines by plan and by app of each currency's last billed month, read from the
    monthly rollup of billed lines."""
    rev = revenue_month
    last_plan: dict[tuple[str, str], int] = {}
    last_app: dict[tuple[str, str], int] = {}
    for key in sorted({k for k in last_month.values() if k}):
        of_month = [c for c in currencies if last_month[c] == key]
        for plan, app_code, currency, units in session.execute(
            sa.select(rev.c.plan_code, rev.c.app_code, rev.c.currency, rev.c.amount_minor).where(
                live, rev.c.month == key, rev.c.currency.in_(of_month)
            )
        ):
            units = int(units or 0)
            last_plan[(plan, currency)] = last_plan.get((plan, currency), 0) + units
            last_app[(app_code, currency)] = last_app.get((app_code, currency), 0) + units
    return last_plan, last_app


def _lines_by_plan_and_app(
    session: Session, live: Any, months: list[str]
) -> dict[str, list[dict[str, Any]]]:
    """Revenue by plan and by app over the window's months (``by_plan``, ``by_app``)."""
    rev = revenue_month
    tables: dict[str, list[dict[str, Any]]] = {}
    months_in = sa.and_(live, rev.c.month >= months[0], rev.c.month <= months[-1])
    for name, col in (("plan", rev.c.plan_code), ("app", rev.c.app_code)):
        rows = [
            {name: value, "revenue": _money(units, cur)}
            for value, cur, units in session.execute(
                sa.select(col, rev.c.currency, sa.func.sum(rev.c.amount_minor))
                .where(months_in)
                .group_by(col, rev.c.currency)
            )
        ]
        rows.sort(key=_by_value_then_currency(name))
        tables[f"by_{name}"] = rows
    return tables


def _nrr(
    session: Session,
    months: list[str],
    by_month: dict[str, dict[str, int]],
    currencies: list[str],
) -> dict[str, Any]:
    """Net revenue retention per currency, in percent (None over a one-month window).

    The last month's revenue of the tenants billed (in that currency) in the first month,
    over the first month's revenue. PostgreSQL: a hash semi-join of the two months' index
    ranges. SQLite: per tenant, in the tenant index's order (CROSS JOIN keeps the tenants
    outside), two probes on an index of the invoices by tenant that answers them alone (it
    is told to use that index); a nested loop driven by the last month's range would probe
    in random order, several times slower.
    """
    i = invoice
    nrr: dict[str, Any] = dict.fromkeys(currencies)
    first, last = months[0], months[-1]
    if first == last:
        return nrr
    first_lo, first_hi = month_bounds(first)
    last_lo, last_hi = month_bounds(last)
    base = {c: by_month[c].get(first, 0) for c in currencies}
    signed = "CASE WHEN l.kind = 'credit_note' THEN -l.total_minor ELSE l.total_minor END"
    last_billed = (
        "l.currency = :currency AND l.status IN ('issued', 'paid')"
        " AND l.issued_at >= :last_lo AND l.issued_at < :last_hi"
    )
    first_billed = (
        "f.currency = :currency AND f.status IN ('issued', 'paid')"
        " AND f.issued_at >= :first_lo AND f.issued_at < :first_hi"
    )
    if _dialect(session) == "postgresql":
        nrr_text = (
            f"SELECT sum({signed}) FROM billing_invoice AS l WHERE {last_billed}"
            " AND EXISTS (SELECT 1 FROM billing_invoice AS f"
            f" WHERE f.tenant_id = l.tenant_id AND {first_billed})"
        )
    else:
        by_tenant = "billing_invoice AS {0} INDEXED BY ix_report_invoice_tenant"
        nrr_text = (
            f"SELECT sum({signed}) FROM tenant CROSS JOIN {by_tenant.format('l')}"
            f" WHERE l.tenant_id = tenant.id AND {last_billed}"
            f" AND EXISTS (SELECT 1 FROM {by_tenant.format('f')}"
            f" WHERE f.tenant_id = tenant.id AND {first_billed})"
        )
    nrr_sql = sa.text(nrr_text).bindparams(
        *(
            sa.bindparam(name, value, type_=i.c.issued_at.type)
            for name, value in (
                ("first_lo", first_lo),
                ("first_hi", first_hi),
                ("last_lo", last_lo),
                ("last_hi", last_hi),
            )
        )
    )
    end = {c: session.execute(nrr_sql, {"currency": c}).scalar_one() for c in currencies if base[c]}
    for currency in currencies:
        if base[currency]:
            nrr[currency] = round(int(end.get(currency) or 0) / base[currency] * 100, 1)
    return nrr


def invoices_report(session: Session, window: Window) -> Report:
    """Receivables: outstanding and overdue (issued, unpaid) and days sales outstanding.

    DSO = outstanding ÷ revenue billed in the window × days in the window, per currency.
    """
    i = invoice

    as_of = sa.literal(window.as_of, type_=i.c.issued_at.type)
    open_ = sa.and_(i.c.status == "issued", i.c.kind != "credit_note", i.c.issued_at < as_of)
    if window.currency:
        open_ = sa.and_(open_, i.c.currency == window.currency)
    due = i.c.total_minor - i.c.paid_minor
    overdue = sa.and_(i.c.due_at.is_not(None), i.c.due_at < as_of)
    rows = session.execute(
        sa.select(
            i.c.currency,
            sa.func.count(),
            sa.func.coalesce(sa.func.sum(due), 0),
            sa.func.coalesce(sa.func.sum(sa.case((overdue, 1), else_=0)), 0),
            sa.func.coalesce(sa.func.sum(sa.case((overdue, due), else_=0)), 0),
        )
        .where(open_)
        .group_by(i.c.currency)
        .order_by(i.c.currency)
    ).all()
    billed: dict[str, int] = {}
    issued: dict[str, int] = {}
    for month, currency, status, kind, count, units in invoice_months(session, window):
        if kind == "credit_note":
            continue
        issued[month] = issued.get(month, 0) + int(count)
        if status in BILLED:
            billed[currency] = billed.get(currency, 0) + int(units or 0)
    days = (window.as_of - window.start).days or 1
    per_currency = []
    for currency, count, outstanding, n_overdue, overdue_units in rows:
        sales = int(billed.get(currency) or 0)
        per_currency.append(
            {
                "currency": currency,
                "outstanding_count": int(count),
                "outstanding": _money(outstanding, currency),
                "overdue_count": int(n_overdue),
                "overdue": _money(overdue_units, currency),
                "dso_days": round(int(outstanding) / sales * days, 1) if sales else None,
            }
        )
    paid = paid_months(session, window)
    return Report(
        area="invoices",
        title="Invoices",
        window=window,
        metrics={
            "outstanding_count": sum(r["outstanding_count"] for r in per_currency),
            "overdue_count": sum(r["overdue_count"] for r in per_currency),
            "outstanding": {r["currency"]: r["outstanding"] for r in per_currency},
            "overdue": {r["currency"]: r["overdue"] for r in per_currency},
            "dso_days": {r["currency"]: r["dso_days"] for r in per_currency},
        },
        tables={
            "by_currency": per_currency,
            "monthly": [
                {"month": k, "issued": issued.get(k, 0), "paid": paid.get(k, 0)}
                for k in window.month_keys()
            ],
        },
        series=[
            Series("invoices issued", "invoices", fill(window, issued)),
            Series("invoices paid", "invoices", fill(window, paid)),
        ],
    )


# -- sync -------------------------------------------------------------------------------

RECOVERY_FAILURES = 3


def sync_report(session: Session, window: Window) -> Report:
    dialect = _dialect(session)
    c = sync_connection
    r = sync_run
    last_ok = (
        sa.select(r.c.connection_id, sa.func.max(r.c.finished_at).label("at"))
        .where(r.c.status == "success")
        .group_by(r.c.connection_id)
        .subquery()
    )
    health = sa.case(
        (c.c.paused.is_(True), "paused"),
        (c.c.consecutive_failures >= RECOVERY_FAILURES, "recovery"),
        (c.c.consecutive_failures > 0, "failing"),
        (last_ok.c.at.is_(None), "never_synced"),
        else_="healthy",
    ).label("health")
    t = tenant
    as_of = window.as_of
    age = sql.seconds_between(last_ok.c.at, sa.literal(as_of, type_=c.c.created_at.type), dialect)
    rows = session.execute(
        sa.select(c.c.name, t.c.key, health, last_ok.c.at, age.label("age"))
        .select_from(
            c.join(t, t.c.id == c.c.tenant_id).outerjoin(last_ok, last_ok.c.connection_id == c.c.id)
        )
        .order_by(c.c.name)
    ).all()
    by_health: dict[str, int] = {}
    for row in rows:
        by_health[row.health] = by_health.get(row.health, 0) + 1
    connections = [
        {
            "connection": row.name,
            "tenant": row.key,
            "health": row.health,
            "last_success": row.at,
            "last_success_age_h": round(float(row.age) / 3600, 1) if row.age is not None else None,
        }
        for row in rows
    ]
    ch = sync_change
    changes = _monthly_counts(session, ch.c.created_at, window)
    d = sql.day(ch.c.created_at, dialect).label("d")
    recent_start = max(window.start, as_of - timedelta(days=30))
    per_day = [
        {"day": day_key, "changes": int(n)}
        for day_key, n in session.execute(
            sa.select(d, sa.func.count())
            .where(ch.c.created_at >= recent_start, ch.c.created_at < window.stop)
            .group_by(d)
            .order_by(d)
        )
    ]
    cf = sync_conflict
    conflicts = _monthly_counts(session, cf.c.created_at, window)
    ages = [row.age for row in rows if row.age is not None]
    return Report(
        area="sync",
        title="Sync",
        window=window,
        metrics={
            "connections": len(rows),
            "by_health": dict(sorted(by_health.items())),
            "oldest_last_success_h": round(max(ages) / 3600, 1) if ages else None,
            "changes_in_window": sum(changes.values()),
            "conflicts_in_window": sum(conflicts.values()),
        },
        tables={
            "connections": connections,
            "changes_per_day": per_day,
            "monthly": [
                {"month": m, "changes": changes.get(m, 0), "conflicts": conflicts.get(m, 0)}
                for m in window.month_keys()
            ],
        },
        series=[
            Series("records changed", "records", fill(window, changes)),
            Series("sync conflicts", "conflicts", fill(window, conflicts)),
        ],
    )


# -- webhooks ---------------------------------------------------------------------------


def webhooks_report(session: Session, window: Window) -> Report:
    """Webhook deliveries in the window: outcomes, attempt success, latencies, endpoints."""
    d = webhook_delivery
    dialect = _dialect(session)
    in_window = sa.and_(
        d.c.channel == "webhook", d.c.created_at >= window.start, d.c.created_at < window.stop
    )
    by_status = _deliveries_by_status(session, in_window)
    finished = by_status.get("succeeded", 0) + by_status.get("exhausted", 0)
    attempts, attempt_latency = _attempt_figures(session, window)
    delivery_latency = sql.percentiles(
        session,
        sa.select(sql.seconds_between(d.c.event_at, d.c.done_at, dialect).label("v")).where(
            in_window, d.c.status == "succeeded", d.c.done_at.is_not(None)
        ),
    )
    endpoints, disabled = _endpoint_counts(session)
    monthly = _deliveries_by_month(session, in_window, dialect)
    succeeded = {k: v.get("succeeded", 0) for k, v in monthly.items()}
    exhausted = {k: v.get("exhausted", 0) for k, v in monthly.items()}
    return Report(
        area="webhooks",
        title="Webhooks",
        window=window,
        metrics={
            "deliveries": sum(by_status.values()),
            "success_rate_pct": round(by_status.get("succeeded", 0) / finished * 100, 2)
            if finished
            else None,
            "attempt_success_pct": round(int(attempts[1]) / int(attempts[0]) * 100, 2)
            if attempts[0]
            else None,
            "attempt_latency_ms_p50": _pct(attempt_latency[50]),
            "attempt_latency_ms_p95": _pct(attempt_latency[95]),
            "delivery_latency_s_p50": _pct(delivery_latency[50]),
            "delivery_latency_s_p95": _pct(delivery_latency[95]),
            "exhausted": by_status.get("exhausted", 0),
            "pending": by_status.get("pending", 0),
            "endpoints": int(endpoints),
            "disabled_endpoints": int(disabled),
        },
        tables={
            "by_status": [{"status": k, "count": v} for k, v in sorted(by_status.items())],
            "monthly": [
                {"month": k, "succeeded": succeeded.get(k, 0), "exhausted": exhausted.get(k, 0)}
                for k in window.month_keys()
            ],
        },
        series=[
            Series("deliveries succeeded", "deliveries", fill(window, succeeded)),
            Series("deliveries exhausted", "deliveries", fill(window, exhausted)),
        ],
    )


def _pct(value: float | None) -> float | None:
    return None if value is None else round(value, 1)


def _deliveries_by_status(session: Session, in_window: Any) -> dict[str, int]:
    d = webhook_delivery
    return {
        status: int(n)
        for status, n in session.execute(
            sa.select(d.c.status, sa.func.count()).where(in_window).group_by(d.c.status)
        )
    }


def _attempt_figures(session: Session, window: Window) -> tuple[Any, dict[int, float | None]]:
    """The window's attempts (count, 2xx count) and their latency percentiles."""
    a = webhook_attempt
    attempts = session.execute(
        sa.select(
            sa.func.count(),
            sa.func.coalesce(
                sa.func.sum(sa.case((a.c.status_code.between(200, 299), 1), else_=0)), 0
            ),
        ).where(a.c.at >= window.start, a.c.at < window.stop)
    ).one()
    latency = sql.percentiles(
        session,
        sa.select(a.c.latency_ms.label("v")).where(a.c.at >= window.start, a.c.at < window.stop),
    )
    return attempts, latency


def _endpoint_counts(session: Session) -> tuple[int, int]:
    """All endpoints and the disabled ones."""
    e = webhook_endpoint
    disabled = session.execute(
        sa.select(sa.func.count()).select_from(e).where(e.c.enabled.is_(False))
    ).scalar_one()
    endpoints = session.execute(sa.select(sa.func.count()).select_from(e)).scalar_one()
    return int(endpoints), int(disabled)


def _deliveries_by_month(
    session: Session, in_window: Any, dialect: str
) -> dict[str, dict[str, int]]:
    """Deliveries per month of creation and status."""
    d = webhook_delivery
    m = sql.month(d.c.created_at, dialect).label("m")
    monthly: dict[str, dict[str, int]] = {}
    for month, status, n in session.execute(
        sa.select(m, d.c.status, sa.func.count()).where(in_window).group_by(m, d.c.status)
    ):
        monthly.setdefault(month, {})[status] = int(n)
    return monthly


AREAS: dict[str, Callable[[Session, Window], Report]] = {
    "revenue": revenue_report,
    "tenants": tenants_report,
    "invoices": invoices_report,
    "instances": instances_report,
    "backups": backups_report,
    "webhooks": webhooks_report,
    "sync": sync_report,
}


def report(session: Session, area: str, window: Window) -> Report:
    if area not in AREAS:
        raise BadInput(f"unknown report {area!r}", f"one of: {', '.join(AREAS)}")
    return AREAS[area](session, window)


def summary(session: Session, window: Window) -> list[Report]:
    """Every area at a glance; revenue by plan and app covers the last billed month."""
    return [
        revenue_report(session, window, detail=False)
        if fn is revenue_report
        else fn(session, window)
        for fn in AREAS.values()
    ]
