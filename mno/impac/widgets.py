"""The widget registry: each KPI by name, and the whole tenant report.

``run(session, tenant, name, query)`` answers one widget in the documented JSON shape
(``mno.impac.model``); ``report(session, tenant, query)`` answers them all.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from sqlmodel import Session

from mno.errors import BadInput, NotFound
from mno.impac import finance, hr, sales
from mno.impac.currency import View
from mno.impac.model import Query, Result, answer
from mno.store.models.tenancy import Tenant
from mno.tenancy import tenants


@dataclass(frozen=True)
class Widget:
    name: str
    area: str
    title: str
    description: str
    compute: Callable[[Session, uuid.UUID, Query], Result]
    group_by: tuple[str, ...] = ()

    def as_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "area": self.area,
            "title": self.title,
            "description": self.description,
            "group_by": list(self.group_by),
        }


WIDGETS: dict[str, Widget] = {
    w.name: w
    for w in (
        Widget(
            "revenue",
            "finance",
            "Revenue",
            "Customer invoices (authorised or paid) by month or by customer.",
            finance.revenue,
            ("month", "customer"),
        ),
        Widget(
            "receivables",
            "finance",
            "Accounts receivable",
            "Balance of authorised customer invoices on the window's last day, by days "
            "past due: current, 0-30, 31-60, 61-90, 90+.",
            finance.receivables,
            ("age",),
        ),
        Widget(
            "dso",
            "finance",
            "Days sales outstanding",
            "Receivables at the window's end / credit sales in the window × days in it.",
            finance.dso,
        ),
        Widget(
            "cash",
            "finance",
            "Cash collected",
            "Payments received, by month.",
            finance.cash,
            ("month",),
        ),
        Widget(
            "pipeline",
            "sales",
            "Pipeline",
            "Open opportunities by stage, and the pipeline weighted by probability.",
            sales.pipeline,
            ("stage",),
        ),
        Widget(
            "win-rate",
            "sales",
            "Win rate",
            "Won / (won + lost) over the opportunities closed in the window, by month.",
            sales.win_rate,
            ("month",),
        ),
        Widget(
            "headcount",
            "hr",
            "Headcount",
            "Employees at each month's end, joiners and leavers per month.",
            hr.headcount,
            ("month",),
        ),
    )
}


def catalogue() -> list[dict[str, Any]]:
    return [w.as_json() for w in WIDGETS.values()]


def get(name: str) -> Widget:
    widget = WIDGETS.get(name)
    if widget is None:
        raise NotFound(f"no widget {name!r}", f"one of: {', '.join(WIDGETS)}")
    return widget


def run(session: Session, tenant: Tenant | str, name: str, query: Query) -> dict[str, Any]:
    widget = get(name)
    if query.group_by is not None and query.group_by not in widget.group_by:
        raise BadInput(
            f"{name} cannot be grouped by {query.group_by!r}",
            f"one of: {', '.join(widget.group_by) or 'none (leave group_by out)'}",
        )
    row = tenants.get(session, tenant) if isinstance(tenant, str) else tenant
    return answer(widget.name, row.key, query, widget.compute(session, row.id, query))


def report(session: Session, tenant: Tenant | str, query: Query) -> dict[str, Any]:
    """Every widget over the same window (revenue once by month, once by customer)."""
    row = tenants.get(session, tenant) if isinstance(tenant, str) else tenant
    out: list[dict[str, Any]] = []
    for widget in WIDGETS.values():
        groups: tuple[str | None, ...] = (None,)
        if widget.name == "revenue":
            groups = ("month", "customer")
        for group in groups:
            # each widget states the rates it used; the report, all of them
            view = View(query.view.currency, query.view.rates)
            q = Query(query.window, view, group)
            out.append(answer(widget.name, row.key, q, widget.compute(session, row.id, q)))
            query.view.used.update(view.used)
    body: dict[str, Any] = {
        "tenant": row.key,
        "name": row.name,
        "window": query.window.as_json(),
        "currency": query.view.currency,
        "widgets": out,
    }
    rates = query.view.rates_json()
    if rates is not None:
        body["rates"] = rates
    return body
