"""The one clock. Domain code asks ``clock.now()``; tests can freeze or move it."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

_frozen: datetime | None = None


def now() -> datetime:
    """The current time, timezone-aware UTC."""
    return _frozen if _frozen is not None else datetime.now(UTC)


def set_now(value: datetime | None) -> None:
    """Freeze the clock at ``value`` (None releases it)."""
    global _frozen
    if value is not None and value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    _frozen = value


def advance(delta: timedelta) -> datetime:
    """Move a frozen clock forward."""
    global _frozen
    _frozen = (_frozen or datetime.now(UTC)) + delta
    return _frozen


@contextmanager
def frozen(at: datetime) -> Iterator[None]:
    previous = _frozen
    set_now(at)
    try:
        yield
    finally:
        set_now(previous)
