"""Claiming work from queue tables, safely across processes and hosts.

A work table has the ``WorkItem`` columns: ``status``, ``lease_owner``, ``lease_until``,
``attempts``, ``next_attempt_at`` and ``last_error``. A row is *claimable* when its status
is one of the ready statuses, it is due, and it holds no live lease. Claiming sets the
lease in one short statement:

- PostgreSQL: ``UPDATE … WHERE id IN (SELECT … FOR UPDATE SKIP LOCKED) RETURNING id``,
  so concurrent claimers never block each other and never take the same row;
- SQLite: the same statement inside ``BEGIN IMMEDIATE`` (the writing session scope),
  which serialises claimers on the database lock.

An expired lease makes the row claimable again, so a crashed process's work is taken
back. Completion is fenced on ``lease_owner``: a process whose lease was taken back
cannot complete the row. Delivery is at least once; handlers must be idempotent.

``acquire_lock()`` gives singleton jobs and run locks a named, expiring lock row;
``take_lock()`` also takes it over at once from a holder that ``holder_is_dead()``: a
process of this host (owner ids are ``host:pid:random``, from ``make_owner()``) that no
longer runs or is an unreaped zombie.
"""

from __future__ import annotations

import os
import random
import socket
import uuid
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, TypeVar, cast

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import CursorResult
from sqlalchemy.exc import IntegrityError

from mno import clock
from mno.store.models.core import LeaseLock
from mno.store.types import new_id, table_of

_Select = TypeVar("_Select", bound="sa.Select[Any] | SelectOfScalar[Any]")

if TYPE_CHECKING:
    from sqlmodel import Session
    from sqlmodel.sql.expression import SelectOfScalar


def make_owner() -> str:
    """A lease owner id unique to this process: ``host:pid:random``."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def _is_zombie(pid: int) -> bool:
    """True when ``pid`` has exited but its parent has not reaped it yet (Linux)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            stat = f.read()
    except OSError:
        return False
    # "pid (comm) S ...": the state follows the last closing parenthesis
    return stat[stat.rfind(b")") + 2 : stat.rfind(b")") + 3] == b"Z"


def holder_is_dead(owner: str) -> bool:
    """True when ``owner`` names a process of this host that no longer runs (gone, or
    a zombie). A holder on another host, or one that cannot be checked, is alive: its
    lease expiry applies."""
    host, _, rest = owner.partition(":")
    pid_s = rest.partition(":")[0]
    if host != socket.gethostname() or not pid_s.isdigit() or int(pid_s) == os.getpid():
        return False
    pid = int(pid_s)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False
    return _is_zombie(pid)


def _rowcount(session: Session, stmt: sa.Executable) -> int:
    """Rows an UPDATE or DELETE matched (typed as a plain ``Result`` by SQLAlchemy)."""
    return cast("CursorResult[Any]", session.execute(stmt)).rowcount or 0


def _status(t: sa.Table) -> Any:
    """The work-status column: ``status``, or the one named by the table's
    ``info["work_status"]`` (for rows whose ``status`` means something else)."""
    return t.c[t.info.get("work_status", "status")]


def claimable(model: Any, ready: Sequence[str] = ("pending",), now: datetime | None = None) -> Any:
    """The WHERE clause for rows that may be claimed now."""
    t = table_of(model)
    now = now or clock.now()
    return sa.and_(
        _status(t).in_(list(ready)),
        t.c.next_attempt_at <= now,
        sa.or_(t.c.lease_until.is_(None), t.c.lease_until < now),
    )


def claim(
    session: Session,
    model: Any,
    owner: str,
    limit: int,
    lease_for: timedelta,
    *,
    ready: Sequence[str] = ("pending",),
    where: Any = None,
    order_by: Any = None,
    returning: Sequence[str] = ("id",),
) -> list[Any]:
    """Lease up to ``limit`` claimable rows to ``owner``; returns the chosen columns.

    Call it in its own short writing session and commit straight after.
    """
    t = table_of(model)
    now = clock.now()
    cond = claimable(model, ready, now)
    if where is not None:
        cond = sa.and_(cond, where)
    pick = sa.select(t.c.id).where(cond)
    pick = pick.order_by(*(order_by if order_by is not None else [t.c.next_attempt_at])).limit(
        limit
    )
    if session.get_bind().dialect.name == "postgresql":
        pick = pick.with_for_update(skip_locked=True)
    stmt = (
        sa.update(t)
        .where(t.c.id.in_(pick.scalar_subquery()))
        .values(lease_owner=owner, lease_until=now + lease_for, attempts=t.c.attempts + 1)
        .returning(*(t.c[name] for name in returning))
    )
    rows = session.execute(stmt).all()
    return [row[0] for row in rows] if len(returning) == 1 else [tuple(r) for r in rows]


def id_in(session: Session, column: Any, ids: list[Any]) -> Any:
    """``column IN ids``; on PostgreSQL one array parameter (``= ANY(:ids)``) instead of
    one bound parameter per id, which is much cheaper for large batches."""
    if session.get_bind().dialect.name == "postgresql":
        return column == sa.any_(sa.literal(ids, type_=postgresql.ARRAY(column.type)))
    return column.in_(ids)


def complete(
    session: Session,
    model: Any,
    ids: Iterable[Any],
    owner: str,
    *,
    status: str = "done",
    values: dict[str, Any] | None = None,
) -> int:
    """Finish rows this owner holds; returns how many were still ours."""
    t = table_of(model)
    ids = list(ids)
    if not ids:
        return 0
    stmt = (
        sa.update(t)
        .where(id_in(session, t.c.id, ids), t.c.lease_owner == owner)
        .values(
            {_status(t).name: status, "lease_owner": None, "lease_until": None, **(values or {})}
        )
    )
    return _rowcount(session, stmt)


def complete_ids(
    session: Session,
    model: Any,
    ids: Iterable[Any],
    owner: str,
    *,
    status: str = "done",
    values: dict[str, Any] | None = None,
) -> list[Any]:
    """Like ``complete()`` but returns the ids that were still ours, so side effects can
    be written for exactly those rows in the same transaction."""
    t = table_of(model)
    ids = list(ids)
    if not ids:
        return []
    stmt = (
        sa.update(t)
        .where(id_in(session, t.c.id, ids), t.c.lease_owner == owner)
        .values(
            {_status(t).name: status, "lease_owner": None, "lease_until": None, **(values or {})}
        )
        .returning(t.c.id)
    )
    return [row[0] for row in session.execute(stmt)]


def complete_and_claim(
    session: Session,
    model: Any,
    done_ids: Iterable[Any],
    owner: str,
    limit: int,
    lease_for: timedelta,
    *,
    status: str = "done",
    ready: Sequence[str] = ("pending",),
    where: Any = None,
    order_by: Any = None,
    returning: Sequence[str] = ("id",),
) -> tuple[int, list[Any]]:
    """Finish the last batch and lease the next one in the same short transaction: one
    commit per batch instead of two, for workers that loop claim → handle → complete.

    Returns (rows still ours that were completed, the next batch as ``claim()`` returns)."""
    finished = complete(session, model, done_ids, owner, status=status)
    claimed = claim(
        session,
        model,
        owner,
        limit,
        lease_for,
        ready=ready,
        where=where,
        order_by=order_by,
        returning=returning,
    )
    return finished, claimed


def retry(
    session: Session,
    model: Any,
    item_id: Any,
    owner: str,
    delay: timedelta,
    error: str,
    *,
    status: str = "pending",
) -> int:
    """Put a failed row back, due again after ``delay``."""
    t = table_of(model)
    stmt = (
        sa.update(t)
        .where(t.c.id == item_id, t.c.lease_owner == owner)
        .values(
            {
                _status(t).name: status,
                "lease_owner": None,
                "lease_until": None,
                "next_attempt_at": clock.now() + delay,
                "last_error": error[:2000],
            }
        )
    )
    return _rowcount(session, stmt)


def release(session: Session, model: Any, ids: Iterable[Any], owner: str) -> int:
    """Give back claimed rows that were not worked on (a warm stop)."""
    t = table_of(model)
    ids = list(ids)
    if not ids:
        return 0
    stmt = (
        sa.update(t)
        .where(id_in(session, t.c.id, ids), t.c.lease_owner == owner)
        .values(lease_owner=None, lease_until=None, attempts=t.c.attempts - 1)
    )
    return _rowcount(session, stmt)


def take_back_expired(session: Session, model: Any, limit: int = 10_000) -> int:
    """Clear leases that have expired (the rows were claimable already; this tidies)."""
    t = table_of(model)
    now = clock.now()
    pick = sa.select(t.c.id).where(t.c.lease_until < now).limit(limit)
    stmt = (
        sa.update(t)
        .where(t.c.id.in_(pick.scalar_subquery()))
        .values(lease_owner=None, lease_until=None)
    )
    return _rowcount(session, stmt)


def depth(session: Session, model: Any, ready: Sequence[str] = ("pending",)) -> tuple[int, int]:
    """(items due now, items leased) for a work table."""
    t = table_of(model)
    now = clock.now()
    due = session.execute(
        sa.select(sa.func.count()).select_from(t).where(claimable(model, ready, now))
    ).scalar_one()
    leased = session.execute(
        sa.select(sa.func.count()).select_from(t).where(t.c.lease_until >= now)
    ).scalar_one()
    return int(due), int(leased)


def backoff(
    attempts: int,
    base: timedelta = timedelta(seconds=5),
    cap: timedelta = timedelta(hours=1),
    jitter: float = 0.2,
    rng: random.Random | None = None,
) -> timedelta:
    """Exponential backoff with ±``jitter`` proportional jitter."""
    seconds = min(cap.total_seconds(), base.total_seconds() * (2 ** max(0, attempts - 1)))
    factor = 1 + (rng or random).uniform(-jitter, jitter)
    return timedelta(seconds=seconds * factor)


# -- named locks ------------------------------------------------------------------


def acquire_lock(session: Session, name: str, owner: str, ttl: timedelta) -> bool:
    """Take or renew the lock ``name`` for ``owner``; False when another live owner has it."""
    t = table_of(LeaseLock)
    now = clock.now()
    updated = _rowcount(
        session,
        sa.update(t)
        .where(t.c.name == name, sa.or_(t.c.owner == owner, t.c.until < now))
        .values(owner=owner, until=now + ttl, updated_at=now),
    )
    if updated:
        return True
    try:
        with session.begin_nested():
            session.execute(
                sa.insert(t).values(
                    id=new_id(),
                    name=name,
                    owner=owner,
                    until=now + ttl,
                    created_at=now,
                    updated_at=now,
                )
            )
    except IntegrityError:
        return False
    return True


def take_lock(session: Session, name: str, owner: str, ttl: timedelta) -> bool:
    """``acquire_lock``, and when a holder of this host is dead (``holder_is_dead``),
    take the lock over from it at once instead of waiting for its expiry."""
    if acquire_lock(session, name, owner, ttl):
        return True
    holder = lock_holder(session, name)
    if holder is None or not holder_is_dead(holder[0]):
        return False
    t = table_of(LeaseLock)
    now = clock.now()
    taken = _rowcount(
        session,
        sa.update(t)
        .where(t.c.name == name, t.c.owner == holder[0])
        .values(owner=owner, until=now + ttl, updated_at=now),
    )
    return bool(taken)


def release_lock(session: Session, name: str, owner: str) -> bool:
    t = table_of(LeaseLock)
    return bool(_rowcount(session, sa.delete(t).where(t.c.name == name, t.c.owner == owner)))


def lock_holder(session: Session, name: str) -> tuple[str, datetime] | None:
    t = table_of(LeaseLock)
    row = session.execute(
        sa.select(t.c.owner, t.c.until).where(t.c.name == name, t.c.until >= clock.now())
    ).first()
    return (row[0], row[1]) if row else None


# -- row and advisory locks -------------------------------------------------------------


def _postgres(session: Session) -> bool:
    return session.get_bind().dialect.name == "postgresql"


def for_update(session: Session, stmt: _Select) -> _Select:
    """``stmt`` with ``FOR UPDATE`` on PostgreSQL; on SQLite the writing transaction
    already holds the database lock (``BEGIN IMMEDIATE``), so it is left as it is."""
    return cast(_Select, stmt.with_for_update()) if _postgres(session) else stmt


def lock_rows(session: Session, stmt: sa.Select[Any]) -> bool:
    """Hold the rows ``stmt`` selects until the transaction ends (PostgreSQL; see
    ``for_update``), e.g. a tenant's row to serialise writers of its ledger. True when a
    lock was taken (rows read before it may be stale: refresh them)."""
    if _postgres(session):
        session.execute(stmt.with_for_update())
        return True
    return False


def advisory_lock(session: Session, name: str, *, shared: bool = False) -> None:
    """A lock on ``name`` held until the transaction ends (PostgreSQL's transaction-scoped
    advisory lock; SQLite writers are serialised already). ``shared`` locks do not wait
    for each other, only for the exclusive one."""
    if _postgres(session):
        fn = "pg_advisory_xact_lock_shared" if shared else "pg_advisory_xact_lock"
        session.execute(sa.text(f"SELECT {fn}(hashtext(:name))"), {"name": name})
