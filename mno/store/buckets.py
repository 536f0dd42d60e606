"""Token buckets kept in the store, so a rate limit holds across processes and hosts.

A bucket is a row with ``tokens`` and ``refilled_at`` (plus ``id``, ``created_at`` and
``updated_at``), keyed by one unique column. ``take`` refills it for the time elapsed
(``rate`` tokens a second, at most ``capacity``) and takes up to ``want`` whole tokens, in
the caller's transaction with the row locked (``FOR UPDATE`` on PostgreSQL; SQLite writers
are serialised already). A missing bucket is created full. The webhook dispatcher keeps
one per endpoint, the hub API one per app key.
"""

from __future__ import annotations

import math
import uuid
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from mno import clock

if TYPE_CHECKING:
    from sqlmodel import Session


def take(
    session: Session,
    table: Any,
    key_column: str,
    key: Any,
    *,
    rate: float,
    capacity: float,
    want: int,
) -> tuple[int, float]:
    """(whole tokens taken, tokens left) from the bucket of ``key``."""
    now = clock.now()
    column = table.c[key_column]
    stmt = sa.select(table.c.tokens, table.c.refilled_at).where(column == key)
    if session.get_bind().dialect.name == "postgresql":
        stmt = stmt.with_for_update()
    row = session.execute(stmt).first()
    if row is None:
        try:
            with session.begin_nested():
                session.execute(
                    sa.insert(table).values(
                        {
                            "id": uuid.uuid4(),
                            key_column: key,
                            "tokens": capacity,
                            "refilled_at": now,
                            "created_at": now,
                            "updated_at": now,
                        }
                    )
                )
        except IntegrityError:  # another process created it first
            pass
        row = session.execute(stmt).first()
    assert row is not None
    elapsed = max(0.0, (now - row.refilled_at).total_seconds())
    tokens = min(capacity, row.tokens + elapsed * rate)
    got = max(0, min(want, math.floor(tokens)))
    left = tokens - got
    session.execute(
        sa.update(table).where(column == key).values(tokens=left, refilled_at=now, updated_at=now)
    )
    return int(got), left
