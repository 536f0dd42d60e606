"""The shape every report has: metrics, tables and monthly series over a window."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any

from mno import clock
from mno.errors import BadInput


@dataclass(frozen=True)
class Window:
    """The months a report covers: ``months`` calendar months ending with ``end`` (YYYY-MM)."""

    end: str
    months: int = 12
    currency: str | None = None

    @classmethod
    def ending(cls, period: str | None, months: int = 12, currency: str | None = None) -> Window:
        if period is None:
            now = clock.now()
            period = f"{now.year:04d}-{now.month:02d}"
        if not re.fullmatch(r"[0-9]{4}-(0[1-9]|1[0-2])", period) or not (
            1900 <= int(period[:4]) <= 9998  # the window's months stay in datetime's range
        ):
            raise BadInput(f"invalid period {period!r}", "use YYYY-MM, e.g. 2026-10")
        if not 1 <= months <= 120:
            raise BadInput("--months must be between 1 and 120")
        return cls(period, months, currency.upper() if currency else None)

    def month_keys(self) -> list[str]:
        year, month = (int(p) for p in self.end.split("-"))
        keys = []
        for _ in range(self.months):
            keys.append(f"{year:04d}-{month:02d}")
            month -= 1
            if month == 0:
                year, month = year - 1, 12
        return list(reversed(keys))

    @property
    def start(self) -> datetime:
        first = self.month_keys()[0]
        return datetime.strptime(first + "-01", "%Y-%m-%d").replace(tzinfo=UTC)

    @property
    def stop(self) -> datetime:
        """The first instant after the window."""
        year, month = (int(p) for p in self.end.split("-"))
        year, month = (year + 1, 1) if month == 12 else (year, month + 1)
        return datetime(year, month, 1, tzinfo=UTC)

    @property
    def as_of(self) -> datetime:
        """Point-in-time KPIs are measured at the end of the window, or now if sooner."""
        return min(self.stop, clock.now())


@dataclass
class Series:
    """A month-by-month series with a unit, e.g. revenue in EUR or tenants."""

    name: str
    unit: str
    points: list[tuple[str, float | int | str]]

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "unit": self.unit,
            "points": [{"month": m, "value": v} for m, v in self.points],
        }


@dataclass
class Report:
    area: str
    title: str
    window: Window
    metrics: dict[str, Any] = field(default_factory=dict)
    tables: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    series: list[Series] = field(default_factory=list)
    available: bool = True
    note: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "area": self.area,
            "title": self.title,
            "period": {"end": self.window.end, "months": self.window.months},
            "available": self.available,
            "note": self.note,
            "metrics": self.metrics,
            "tables": self.tables,
            "series": [s.as_dict() for s in self.series],
        }


def fill(window: Window, rows: dict[str, Any], default: Any = 0) -> list[tuple[str, Any]]:
    return [(m, rows.get(m, default)) for m in window.month_keys()]


def month_start(key: str) -> date:
    return datetime.strptime(key + "-01", "%Y-%m-%d").date()


def month_bounds(key: str) -> tuple[datetime, datetime]:
    """The first instant of month ``key`` (YYYY-MM) and of the month after, in UTC."""
    year, month = (int(part) for part in key.split("-"))
    after = (year + 1, 1) if month == 12 else (year, month + 1)
    return datetime(year, month, 1, tzinfo=UTC), datetime(*after, 1, tzinfo=UTC)
