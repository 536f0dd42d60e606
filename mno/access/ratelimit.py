"""Per-key token buckets kept in the store, so a rate limit holds across API processes.

Each app key has one ``access_rate_bucket`` row: its tokens and when they were last
refilled. ``take`` refills the bucket for the time elapsed (``rate`` tokens a second, at
most ``burst``) and takes up to ``want`` whole tokens, in the caller's transaction with
the row locked (``mno.store.buckets``).

An API process takes a small chunk of tokens at a time and spends them locally (see
``mno.api.auth``), so the row is touched once per chunk rather than once per request, and
the sum over all processes never exceeds ``burst`` plus ``rate`` per second.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from mno.store import buckets
from mno.store.models.access import RateBucket
from mno.store.types import table_of

if TYPE_CHECKING:
    from sqlmodel import Session


@dataclass(frozen=True)
class Taken:
    tokens: int  # whole tokens taken (0 when the bucket is empty)
    left: float  # tokens left in the bucket after taking
    retry_after: float  # seconds until one token is there again (0 when some were taken)


def take(session: Session, key_id: str, rate: float, burst: float, want: int) -> Taken:
    """Take up to ``want`` whole tokens from ``key_id``'s bucket (created full)."""
    if rate <= 0 or burst < 1 or want < 1:
        raise ValueError("rate > 0, burst >= 1 and want >= 1")
    got, left = buckets.take(
        session,
        table_of(RateBucket),
        "key_id",
        key_id,
        rate=rate,
        capacity=burst,
        want=want,
    )
    retry = 0.0 if got else (1 - left) / rate
    return Taken(got, left, retry)
