"""Instances waiting for room (``pending_capacity``) and the capacity signals.

The store side of ``mno.nex.capacity``, kept apart so that host changes and status
changes (``mno.nex.hosts``, ``mno.nex.status``) can make waiting instances due without
importing the engines' side. A signal (``nex_capacity_signal``) remembers whether a
condition holds, so each event is emitted once per transition.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlmodel import Session, select

from mno import clock
from mno.store import leases, wake
from mno.store.models.nex import Instance
from mno.store.models.nex_capacity import CapacitySignal
from mno.store.types import table_of

WAITING = "pending_capacity"  # the status of an instance waiting for room
WAKE = "nex_instance"  # the provisioner's wake-up channel (mno.nex.instances.WAKE)
EXHAUSTED = "exhausted"


def get_signal(session: Session, name: str) -> CapacitySignal | None:
    return session.exec(select(CapacitySignal).where(CapacitySignal.name == name)).first()


def lock_signal(session: Session, name: str) -> CapacitySignal:
    """The signal row (created when missing), held for this transaction so two processes
    do not both see the same transition (an advisory lock on PostgreSQL; SQLite writers
    are serialised already)."""
    leases.advisory_lock(session, f"mno.nex.capacity.{name}")
    row = get_signal(session, name)
    if row is None:
        row = CapacitySignal(name=name)
        session.add(row)
        session.flush()
    else:
        session.refresh(row)
    return row


def turn(session: Session, name: str, on: bool, detail: dict[str, Any] | None = None) -> bool:
    """Set the signal ``name``; True when it was off and is now on (a transition)."""
    row = lock_signal(session, name)
    if bool(row.active) == on:
        return False
    row.active = on
    row.since = clock.now()
    row.detail = detail or {}
    row.touch()
    session.add(row)
    session.flush()
    return on


def waiting_count(session: Session) -> int:
    """How many instances wait for room."""
    t = table_of(Instance)
    query = sa.select(sa.func.count()).select_from(t).where(t.c.status == WAITING)
    return int(session.execute(query).scalar_one())


def left_waiting(session: Session) -> None:
    """An instance that waited was placed: the exhausted signal ends once none waits."""
    if not waiting_count(session):
        turn(session, EXHAUSTED, False)


def room_appeared(session: Session, wake_up: bool = True) -> int:
    """Make the instances waiting for room due now and wake the provisioner (a host was
    added or changed, an instance ended; ``wake_up=False`` from the provisioner's own
    pass); returns how many wait."""
    t = table_of(Instance)
    if not waiting_count(session):
        return 0
    count = session.execute(  # type: ignore[attr-defined]
        sa.update(t)
        .where(t.c.status == WAITING)  # one being tried now is tried again after it
        .values(next_attempt_at=clock.now())
    ).rowcount
    if count and wake_up:
        wake.notify(session, WAKE)
    return waiting_count(session)
