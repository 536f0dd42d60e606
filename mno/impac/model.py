"""The shape of every widget: a query window in, series and totals out.

A widget answers as JSON (the API, ``mno report tenant -o json``)::

    {"widget": "revenue", "tenant": "acme",
     "window": {"from": "2026-01-01", "to": "2026-12-31"},
     "currency": "USD" | null,
     "group_by": "month",
     "series": [{"name": "revenue", "currency": "USD", "unit": "USD",
                 "points": [{"x": "2026-01", "y": "1200.00"}, ...]}],
     "totals": {"revenue": {"USD": "5400.00"}, "invoices": 12},
     "rates": {"EUR:USD": "1.08"}}        # only when amounts were converted

Money is a decimal string; a money total is a map ``{currency: amount}``, with one
entry per currency unless a rate table converted them into one.
"""

from __future__ import annotations

import calendar
import re
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

from mno import clock
from mno.errors import BadInput
from mno.impac.currency import View

_DATE = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$")


def parse_date(text: str, what: str) -> date:
    if not _DATE.match(text or ""):
        raise BadInput(f"invalid {what} {text!r}", "use YYYY-MM-DD, e.g. 2026-03-31")
    try:
        return date.fromisoformat(text)
    except ValueError as exc:
        raise BadInput(f"invalid {what} {text!r}", "use YYYY-MM-DD, e.g. 2026-03-31") from exc


def month_end(day: date) -> date:
    return day.replace(day=calendar.monthrange(day.year, day.month)[1])


@dataclass(frozen=True)
class Window:
    """The days a widget covers, both ends included (default: the last 12 months to today)."""

    start: date
    end: date

    @classmethod
    def of(cls, start: str | None = None, end: str | None = None) -> Window:
        stop = parse_date(end, "to date") if end else clock.now().date()
        if start:
            first = parse_date(start, "from date")
        else:
            year, month = stop.year, stop.month - 11
            while month <= 0:
                year, month = year - 1, month + 12
            first = date(year, month, 1)
        if first > stop:
            raise BadInput(f"the window starts ({first}) after it ends ({stop})")
        if (stop - first).days > 3660:
            raise BadInput("the window is longer than ten years", "narrow --from/--to")
        return cls(first, stop)

    @property
    def days(self) -> int:
        return (self.end - self.start).days + 1

    def months(self) -> list[str]:
        keys: list[str] = []
        year, month = self.start.year, self.start.month
        while (year, month) <= (self.end.year, self.end.month):
            keys.append(f"{year:04d}-{month:02d}")
            year, month = (year + 1, 1) if month == 12 else (year, month + 1)
        return keys

    def month_ends(self) -> list[tuple[str, date]]:
        """Each month of the window with the day it is measured at (its last day, or the
        window's end for the last month)."""
        return [(m, min(month_end(date.fromisoformat(m + "-01")), self.end)) for m in self.months()]

    def as_json(self) -> dict[str, str]:
        return {"from": self.start.isoformat(), "to": self.end.isoformat()}

    def shifted(self, days: int) -> date:
        return self.end - timedelta(days=days)


@dataclass
class Query:
    window: Window
    view: View = field(default_factory=View)
    group_by: str | None = None


@dataclass
class Series:
    name: str
    points: list[tuple[str, Any]]
    currency: str | None = None
    unit: str = ""

    def as_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "currency": self.currency,
            "unit": self.unit or (self.currency or ""),
            "points": [{"x": x, "y": y} for x, y in self.points],
        }


@dataclass
class Result:
    """What a widget function returns; ``Widget.answer`` adds the request's context."""

    series: list[Series]
    totals: dict[str, Any]
    group_by: str | None = None
    notes: list[str] = field(default_factory=list)


def answer(name: str, tenant: str, query: Query, result: Result) -> dict[str, Any]:
    body: dict[str, Any] = {
        "widget": name,
        "tenant": tenant,
        "window": query.window.as_json(),
        "currency": query.view.currency,
        "group_by": result.group_by,
        "series": [s.as_json() for s in result.series],
        "totals": result.totals,
    }
    rates = query.view.rates_json()
    if rates is not None:
        body["rates"] = rates
    if result.notes:
        body["notes"] = result.notes
    return body
