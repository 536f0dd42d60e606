"""Billing periods in a tenant's timezone (zoneinfo), returned as aware UTC bounds."""

from __future__ import annotations

from datetime import UTC, datetime
from functools import lru_cache
from zoneinfo import ZoneInfo

from mno.errors import BadInput


def parse_period(period: str) -> tuple[int, int]:
    try:
        y, m = period.split("-")
        year, month = int(y), int(m)
    except ValueError as exc:
        raise BadInput(f"period {period!r}: use YYYY-MM") from exc
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


@lru_cache(maxsize=65536)
def local_days(start: datetime, end: datetime, tz: str) -> int:
    """Calendar days between two instants as seen in ``tz``."""
    zone = ZoneInfo(tz or "UTC")
    return (end.astimezone(zone).date() - start.astimezone(zone).date()).days
