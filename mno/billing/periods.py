"""Billing periods in a tenant's timezone (zoneinfo), returned as aware UTC bounds."""

from __future__ import annotations

import re
from datetime import UTC, date, datetime, timedelta
from functools import lru_cache
from zoneinfo import ZoneInfo

from mno.errors import BadInput

_PERIOD = re.compile(r"[0-9]{4}-[0-9]{2}")


def parse_period(period: str) -> tuple[int, int]:
    """``YYYY-MM`` exactly (``2026-01``, not ``2026-1``) as (year, month)."""
    if not _PERIOD.fullmatch(period):
        raise BadInput(f"period {period!r}: use YYYY-MM, e.g. 2026-01")
    year, month = int(period[:4]), int(period[5:])
    if not 1 <= month <= 12 or not 2000 <= year <= 2200:
        raise BadInput(f"period {period!r}: use YYYY-MM")
    return year, month


def next_month(year: int, month: int) -> tuple[int, int]:
    return (year + 1, 1) if month == 12 else (year, month + 1)


@lru_cache(maxsize=4096)
def month_bounds(year: int, month: int, tz: str) -> tuple[datetime, datetime]:
    """Local midnight on the 1st to local midnight on the next 1st, in UTC (DST-safe)."""
    zone = ZoneInfo(tz or "UTC")
    ny, nm = next_month(year, month)
    start = datetime(year, month, 1, tzinfo=zone).astimezone(UTC)
    end = datetime(ny, nm, 1, tzinfo=zone).astimezone(UTC)
    return start, end


# The last timezone (UTC-12, e.g. Etc/GMT+12) closes a month 12 hours after UTC does.
LATEST_OFFSET = timedelta(hours=12)


def last_closed_period(now: datetime, grace_hours: int = 0) -> str:
    """The most recent month (YYYY-MM) that has closed in every timezone, ``grace_hours``
    ago or more: what a billing run bills when no period is given, and what the biller
    bills on its own."""
    ref = now - LATEST_OFFSET - timedelta(hours=grace_hours)
    y, m = ref.year, ref.month
    y, m = (y - 1, 12) if m == 1 else (y, m - 1)
    return f"{y:04d}-{m:02d}"


def closes_at(year: int, month: int, tz: str) -> datetime:
    """When month ``year-month`` closes in ``tz`` (local midnight on the next 1st), in UTC."""
    return month_bounds(year, month, tz)[1]


def utc_z(at: datetime) -> str:
    """An instant as ISO 8601 in UTC with ``Z``: ``2026-11-01T00:00:00Z``."""
    return at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@lru_cache(maxsize=65536)
def local_days(start: datetime, end: datetime, tz: str) -> int:
    """Calendar days between two instants as seen in ``tz``."""
    zone = ZoneInfo(tz or "UTC")
    return (end.astimezone(zone).date() - start.astimezone(zone).date()).days


# Plan intervals -------------------------------------------------------------------------
#
# A schedule is anchored on the calendar unit that contains the subscription's start (in
# the tenant's timezone): the day, the ISO week (Monday), the half month (1st or 16th), the
# month, the calendar quarter or the calendar year. Period k covers ``every`` units from
# ``anchor + k * every``; the first period is prorated from the start.

UNITS = ("day", "week", "semimonth", "month", "quarter", "year")
# ``every`` is at most a year's worth of units.
MAX_EVERY = {"day": 366, "week": 52, "semimonth": 24, "month": 12, "quarter": 4, "year": 1}


def check_interval(unit: str, every: int) -> None:
    if unit not in MAX_EVERY:
        raise BadInput(f"interval unit {unit!r}: use one of {', '.join(UNITS)}")
    if not 1 <= every <= MAX_EVERY[unit]:
        raise BadInput(
            f"interval every {every} {unit}: give 1 to {MAX_EVERY[unit]} (at most a year)"
        )


def unit_index(d: date, unit: str) -> int:
    """The number of the calendar unit that contains ``d`` (consecutive integers)."""
    if unit == "day":
        return d.toordinal()
    if unit == "week":
        return (d.toordinal() - 1) // 7  # date(1, 1, 1) is a Monday
    if unit == "semimonth":
        return (d.year * 12 + d.month - 1) * 2 + (0 if d.day < 16 else 1)
    if unit == "month":
        return d.year * 12 + d.month - 1
    if unit == "quarter":
        return d.year * 4 + (d.month - 1) // 3
    if unit == "year":
        return d.year
    raise BadInput(f"interval unit {unit!r}: use one of {', '.join(UNITS)}")


def unit_start(i: int, unit: str) -> date:
    """The first local day of unit number ``i``."""
    if unit == "day":
        return date.fromordinal(i)
    if unit == "week":
        return date.fromordinal(i * 7 + 1)
    if unit == "semimonth":
        m, half = divmod(i, 2)
        return date(m // 12, m % 12 + 1, 16 if half else 1)
    if unit == "month":
        return date(i // 12, i % 12 + 1, 1)
    if unit == "quarter":
        return date(i // 4, (i % 4) * 3 + 1, 1)
    if unit == "year":
        return date(i, 1, 1)
    raise BadInput(f"interval unit {unit!r}: use one of {', '.join(UNITS)}")


@lru_cache(maxsize=65536)
def local_midnight(d: date, tz: str) -> datetime:
    """Midnight starting local day ``d`` in ``tz``, as an aware UTC instant."""
    return datetime(d.year, d.month, d.day, tzinfo=ZoneInfo(tz or "UTC")).astimezone(UTC)


@lru_cache(maxsize=65536)
def schedule(
    anchor: int, unit: str, every: int, lo: date, hi: date
) -> tuple[tuple[int, date, date], ...]:
    """Periods ``(k, start, end)`` (local dates, end exclusive) of the schedule anchored on
    unit number ``anchor`` that end after ``lo`` and start before ``hi``; k >= 0."""
    k = max(0, (unit_index(lo, unit) - anchor) // every - 1)
    out = []
    while True:
        start = unit_start(anchor + k * every, unit)
        if start >= hi:
            break
        end = unit_start(anchor + (k + 1) * every, unit)
        if end > lo:
            out.append((k, start, end))
        k += 1
    return tuple(out)


def month_dates(year: int, month: int) -> tuple[date, date, date]:
    """The 1st of the month, of the next month and of the month after."""
    ny, nm = next_month(year, month)
    nny, nnm = next_month(ny, nm)
    return date(year, month, 1), date(ny, nm, 1), date(nny, nnm, 1)
