"""Named outbox consumer cursors: how far each consumer has read the outbox (by ``seq``).

A cursor's value is the ``seq`` through which its consumer has read *everything*: every
event with ``seq <= cursor`` is done with (a consumer that tracks late-committing gaps
advances to just below its lowest open gap). Advance it in the transaction that records
what was read. The housekeeper prunes only events at or below the lowest cursor of all
registered consumers; with none registered, age alone decides.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import sqlalchemy as sa

from mno import clock
from mno.store.models.agents import ConsumerCursor
from mno.store.types import table_of

if TYPE_CHECKING:
    from sqlmodel import Session


def get(session: Session, name: str, *, for_update: bool = False) -> int:
    """The cursor's position (0 when the consumer never read); creates the row."""
    t = table_of(ConsumerCursor)
    stmt = sa.select(t.c.seq).where(t.c.name == name)
    if for_update and session.get_bind().dialect.name == "postgresql":
        stmt = stmt.with_for_update()
    seq = session.execute(stmt).scalar_one_or_none()
    if seq is None:
        session.add(ConsumerCursor(name=name, seq=0))
        session.flush()
        return 0
    return int(seq)


def advance(session: Session, name: str, seq: int) -> None:
    """Move the cursor forward to ``seq`` (never backwards)."""
    t = table_of(ConsumerCursor)
    get(session, name)
    session.execute(
        sa.update(t).where(t.c.name == name, t.c.seq < seq).values(seq=seq, updated_at=clock.now())
    )


def minimum(session: Session) -> int | None:
    """The lowest position of all consumers; None when no consumer is registered."""
    t = table_of(ConsumerCursor)
    value = session.execute(sa.select(sa.func.min(t.c.seq))).scalar_one_or_none()
    return None if value is None else int(value)
