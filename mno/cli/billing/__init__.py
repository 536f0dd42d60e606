"""Billing command groups, one module each: ``mno billing`` (runs, with the catalogue and
tax treatments under it), ``plan``/``metric``/``coupon``/``tax-rate`` (the catalogue),
``subscription``, ``usage``, ``charge``, ``invoice`` and ``ledger``.

Each module is a thin face over ``mno.billing``: parse, open a session, call one domain
function, render.
"""

from __future__ import annotations

from datetime import datetime

from mno.errors import BadInput


def aware_time(value: str | None) -> datetime | None:
    """``--at``/``--start``/``--expires``: an ISO time that must carry its timezone."""
    if value is None:
        return None
    try:
        at = datetime.fromisoformat(value)
    except ValueError as exc:
        raise BadInput(f"not a time: {value!r}") from exc
    if at.tzinfo is None:
        raise BadInput(f"{value!r}: give a timezone (e.g. Z)")
    return at
