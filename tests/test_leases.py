"""Leases: claiming work rows once, fencing, expiry, retry and named locks."""

from __future__ import annotations

import threading
from datetime import timedelta

import sqlalchemy as sa

from mno import clock
from mno.store import leases
from mno.store.models.core import LeaseLock
from mno.store.models.tenancy import Tenant


def test_named_lock_is_exclusive_until_expiry(session):
    with session() as s:
        assert leases.acquire_lock(s, "biller", "host-a", timedelta(seconds=30))
    with session() as s:
        assert not leases.acquire_lock(s, "biller", "host-b", timedelta(seconds=30))
        assert leases.lock_holder(s, "biller")[0] == "host-a"
    with session() as s:  # the owner renews
        assert leases.acquire_lock(s, "biller", "host-a", timedelta(seconds=30))
    clock.set_now(clock.now() + timedelta(seconds=31))
    with session() as s:  # expired: another host takes it
        assert leases.acquire_lock(s, "biller", "host-b", timedelta(seconds=30))
    with session() as s:
        assert not leases.release_lock(s, "biller", "host-a")
        assert leases.release_lock(s, "biller", "host-b")
        assert s.execute(sa.select(sa.func.count()).select_from(LeaseLock)).scalar_one() == 0


def test_concurrent_lock_has_one_winner(store_url):
    from mno.store.db import session_scope

    with session_scope(store_url) as s:  # create the schema first
        s.execute(sa.select(Tenant.id)).all()
    winners: list[str] = []
    barrier = threading.Barrier(4)

    def contend(owner: str) -> None:
        barrier.wait()
        with session_scope(store_url) as s:
            if leases.acquire_lock(s, "run:2026-10", owner, timedelta(minutes=5)):
                winners.append(owner)

    threads = [threading.Thread(target=contend, args=(f"w{i}",)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(winners) == 1


def test_backoff_bounds():
    import random

    rng = random.Random(7)
    for attempt in range(1, 12):
        delay = leases.backoff(attempt, timedelta(seconds=5), timedelta(hours=1), 0.2, rng)
        base = min(3600, 5 * 2 ** (attempt - 1))
        assert base * 0.8 <= delay.total_seconds() <= base * 1.2


def test_take_lock_takes_over_from_a_dead_or_zombie_holder(session) -> None:
    """A lock held by a process of this host that is gone, or exited but not reaped
    (a zombie), is taken over at once; a live holder keeps it until it expires."""
    import socket
    import subprocess
    import time

    ttl = timedelta(minutes=5)
    live = subprocess.Popen(["sleep", "30"])
    zombie = subprocess.Popen(["true"])
    time.sleep(0.3)  # exited, not yet waited for: a zombie
    try:
        for name, pid, taken in (("live", live.pid, False), ("zombie", zombie.pid, True)):
            holder = f"{socket.gethostname()}:{pid}:test"
            with session() as s:
                assert leases.acquire_lock(s, name, holder, ttl)
            with session() as s:
                assert leases.take_lock(s, name, leases.make_owner(), ttl) is taken
                assert leases.acquire_lock(s, name, leases.make_owner(), ttl) is False
    finally:
        live.kill()
        live.wait()
        zombie.wait()


def test_row_and_advisory_locks_hold_until_the_transaction_ends(store_url: str) -> None:
    """On PostgreSQL a second transaction waits for the first's row lock and advisory
    lock; on SQLite the statements are left as they are (the writer holds the database)."""
    import time

    from mno.store.db import session_scope

    with session_scope(store_url) as s:
        s.execute(sa.select(Tenant.id)).all()  # the schema exists
        stmt = leases.for_update(s, sa.select(LeaseLock.id))
        assert ("FOR UPDATE" in str(stmt)) is store_url.startswith("postgresql")
    if not store_url.startswith("postgresql"):
        return
    order: list[str] = []
    held = threading.Event()

    def first() -> None:
        with session_scope(store_url) as s:
            leases.advisory_lock(s, "test.lock")
            held.set()
            time.sleep(0.3)
            order.append("first done")

    t = threading.Thread(target=first)
    t.start()
    held.wait(5)
    with session_scope(store_url) as s:
        leases.advisory_lock(s, "test.lock")
        order.append("second locked")
    t.join()
    assert order == ["first done", "second locked"]
