"""Shared parsing of option values: K=V pairs, comma lists and --since times.

``mno.clock`` is imported by ``since()`` alone, so a command's help does not load it.
"""

from __future__ import annotations

from datetime import UTC, datetime

from mno.errors import BadInput
from mno.settings import parse_duration


def pairs(values: list[str] | None, what: str = "value") -> dict[str, str]:
    """``["A=1", "B=2"]`` → ``{"A": "1", "B": "2"}``."""
    result: dict[str, str] = {}
    for item in values or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise BadInput(f"invalid {what} {item!r}", "expected K=V")
        result[key.strip()] = value
    return result


def csv_list(value: str | None) -> list[str]:
    return [part.strip() for part in (value or "").split(",") if part.strip()]


def since(value: str | None) -> datetime | None:
    """``--since``: a duration back from now (``24h``, ``7d``) or an ISO 8601 time."""
    if not value:
        return None
    from mno import clock

    try:
        back = parse_duration(value)
    except BadInput as exc:
        if "out of range" in exc.message:
            raise
    else:
        try:
            return clock.now() - back
        except OverflowError as exc:
            raise BadInput(f"--since {value} reaches back before the year 1") from exc
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError as exc:
        raise BadInput(f"invalid time {value!r}", "use 24h, 7d or an ISO 8601 time") from exc
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
