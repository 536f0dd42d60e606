"""Per-key token buckets kept in the store, so a rate limit holds across API processes.

Each app key has one ``access_rate_bucket`` row: its tokens and when they were last
refilled. ``take`` refills the bucket for the time elapsed (``rate`` tokens a second, at
most ``burst``) and takes up to ``want`` whole tokens, in the caller's transaction with
the row locked (``FOR UPDATE`` on PostgreSQL; SQLite writers are serialised already).

An API process takes a small chunk of tokens at a time and spends them locally (see
``mno.api.auth``), so the row is touched once per chunk rather than once per request, and
the sum over all processes never exceeds ``burst`` plus ``rate`` per second.
"""

from __future__ import annotations

import math
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING

import sqlalchemy as sa

from mno import clock
from mno.store.models.access import RateBucket

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
    t = RateBucket.__table__  # type: ignore[attr-defined]
    now = clock.now()
    stmt = sa.select(t.c.tokens, t.c.refilled_at).where(t.c.key_id == key_id)
    if session.get_bind().dialect.name == "postgresql":
        stmt = stmt.with_for_update()
    row = session.execute(stmt).first()
    if row is None:
        from sqlalchemy.exc import IntegrityError

        try:
            with session.begin_nested():
                session.execute(
                    sa.insert(t).values(
                        id=uuid.uuid4(),
                        key_id=key_id,
                        tokens=burst,
                        refilled_at=now,
                        created_at=now,
                        updated_at=now,
                    )
                )
        except IntegrityError:  # another process created it first
            pass
        row = session.execute(stmt).first()
    assert row is not None
    elapsed = max(0.0, (now - row.refilled_at).total_seconds())
    tokens = min(burst, row.tokens + elapsed * rate)
    got = max(0, min(want, math.floor(tokens)))
    left = tokens - got
    session.execute(
        sa.update(t)
        .where(t.c.key_id == key_id)
        .values(tokens=left, refilled_at=now, updated_at=now)
    )
    retry = 0.0 if got else (1 - left) / rate
    return Taken(got, left, retry)
