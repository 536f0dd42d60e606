"""Retention of sync history: finished pushes and old runs (the housekeeper calls these).

- ``prune_pushes`` deletes pushes that reached an end (``done``, ``skipped``, ``failed``)
  before the cutoff. A pending push, leased or not, is never deleted.
- ``prune_runs`` deletes runs that finished before the cutoff, with their change rows,
  conflicts and record errors. A run that is still running, that a pending push was
  queued by, or that is its connection's latest run or latest successful run is kept,
  so the reports' "last success" and every retained run's rollback keep what they read.
  Rollback of a run reads only that run's change rows and later ones, and runs go
  oldest first, so pruning never takes a row a retained run's rollback needs; a pruned
  run can no longer be rolled back.

Both work in batches of ``limit`` rows in the caller's transaction and return how many
rows they deleted, so the caller commits between batches and stops when a batch is short.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any, cast

import sqlalchemy as sa
from sqlalchemy.engine import CursorResult

from mno.store.models.sync import SyncChange, SyncConflict, SyncPush, SyncRecordError, SyncRun
from mno.store.types import table_of

if TYPE_CHECKING:
    from sqlmodel import Session

FINISHED_PUSH = ("done", "skipped", "failed")


def _delete(session: Session, stmt: sa.Delete) -> int:
    """Run a DELETE and return the rows it removed."""
    # a DML statement's result is a CursorResult, which Session.execute does not declare
    return cast("CursorResult[Any]", session.execute(stmt)).rowcount or 0


def prune_pushes(session: Session, before: datetime, limit: int) -> int:
    """Delete up to ``limit`` pushes that finished before ``before``."""
    p = table_of(SyncPush)
    pick = (
        sa.select(p.c.id)
        .where(p.c.status.in_(FINISHED_PUSH), p.c.updated_at < before)
        .limit(limit)
        .scalar_subquery()
    )
    return _delete(session, sa.delete(p).where(p.c.id.in_(pick)))


def prunable_runs(before: datetime) -> sa.Select[tuple[object]]:
    """The ids of the runs ``prune_runs`` may delete, oldest first."""
    r = table_of(SyncRun)
    p = table_of(SyncPush)
    later = r.alias("later")
    newer = sa.exists().where(
        later.c.connection_id == r.c.connection_id, later.c.started_at > r.c.started_at
    )
    newer_success = sa.exists().where(
        later.c.connection_id == r.c.connection_id,
        later.c.status == "success",
        later.c.started_at > r.c.started_at,
    )
    pending = sa.exists().where(p.c.run_id == r.c.id, p.c.status == "pending")
    return (
        sa.select(r.c.id)
        .where(r.c.status != "running", r.c.finished_at < before)
        .where(r.c.connection_id.is_not(None), newer)
        .where(sa.or_(r.c.status != "success", newer_success))
        .where(~pending)
        .order_by(r.c.started_at)
    )


def prune_runs(session: Session, before: datetime, limit: int) -> int:
    """One batch: up to ``limit`` change rows of prunable runs, their conflicts, then
    the prunable runs left without change rows. Returns the rows deleted."""
    r = table_of(SyncRun)
    c = table_of(SyncChange)
    f = table_of(SyncConflict)
    runs = [row[0] for row in session.execute(prunable_runs(before).limit(limit))]
    if not runs:
        return 0
    pick = sa.select(c.c.seq).where(c.c.run_id.in_(runs)).limit(limit).scalar_subquery()
    deleted = _delete(session, sa.delete(c).where(c.c.seq.in_(pick)))
    deleted += _delete(session, sa.delete(f).where(f.c.run_id.in_(runs)))
    e = table_of(SyncRecordError)
    deleted += _delete(session, sa.delete(e).where(e.c.run_id.in_(runs)))
    emptied = sa.select(c.c.run_id).where(c.c.run_id.in_(runs)).distinct()
    deleted += _delete(session, sa.delete(r).where(r.c.id.in_(runs), r.c.id.not_in(emptied)))
    return deleted
