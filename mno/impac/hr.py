"""HR KPIs over ``employees``: headcount at each month's end, joiners and leavers.

An employee counts on a day D when ``hire_date ≤ D`` and either no ``termination_date``
or ``termination_date > D`` (the termination date is the first day no longer employed).
Headcount is measured on each month's last day (the window's last day for its last
month). A joiner of a month is hired within it, a leaver has their termination date
within it (both limited to the window).
"""

from __future__ import annotations

import uuid
from bisect import bisect_right
from collections import Counter

from sqlmodel import Session

from mno.impac import sql
from mno.impac.model import Query, Result, Series


def headcount(session: Session, tenant_id: uuid.UUID, q: Query) -> Result:
    d = sql.dialect(session)
    rows = sql.run(
        session,
        "SELECT hired, left_on, COUNT(*) AS n "
        f"FROM ({sql.records(d, {'hired': 'hire_date', 'left_on': 'termination_date'})}) r "
        "WHERE hired IS NOT NULL AND hired <= :end GROUP BY hired, left_on",
        tenant_id,
        "employees",
        end=q.window.end.isoformat(),
    )
    hires: Counter[str] = Counter()
    exits: Counter[str] = Counter()
    for row in rows:
        hires[row.hired] += int(row.n)
        if row.left_on:
            exits[row.left_on] += int(row.n)
    hire_days, exit_days = sorted(hires), sorted(exits)
    hire_cum = _cumulative(hire_days, hires)
    exit_cum = _cumulative(exit_days, exits)

    def upto(days: list[str], cum: list[int], day: str) -> int:
        """How many events happened on or before ``day``."""
        at = bisect_right(days, day)
        return cum[at - 1] if at else 0

    start = q.window.start.isoformat()
    counts, joiners, leavers = [], [], []
    for month, last in q.window.month_ends():
        day = last.isoformat()
        counts.append((month, upto(hire_days, hire_cum, day) - upto(exit_days, exit_cum, day)))
        first = max(start, month + "-01")
        before = _day_before(first)
        joiners.append((month, upto(hire_days, hire_cum, day) - upto(hire_days, hire_cum, before)))
        leavers.append((month, upto(exit_days, exit_cum, day) - upto(exit_days, exit_cum, before)))
    return Result(
        [
            Series("headcount", counts, unit="people"),
            Series("joiners", joiners, unit="people"),
            Series("leavers", leavers, unit="people"),
        ],
        {
            "headcount": counts[-1][1] if counts else 0,
            "joiners": sum(n for _, n in joiners),
            "leavers": sum(n for _, n in leavers),
        },
        "month",
    )


def _cumulative(days: list[str], counts: Counter[str]) -> list[int]:
    out, total = [], 0
    for day in days:
        total += counts[day]
        out.append(total)
    return out


def _day_before(day: str) -> str:
    from datetime import date, timedelta

    return (date.fromisoformat(day) - timedelta(days=1)).isoformat()
