"""The dispatcher under ``mno agents run`` wakes on new outbox events: a committed event
reaches its endpoint without waiting for the interval (PostgreSQL NOTIFY, SQLite local
sockets), two dispatchers both wake and each event is still sent once, and a lost
wake-up (a killed listener connection, removed sockets) is covered by the interval.

The dispatchers run with a 60 s interval where a test shows a wake-up: an event sent well
before that can only have been woken for (the pass at start-up is over before it is
written)."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa

from mno.store import wake
from mno.store.db import session_scope
from tests.processes import stop as _stop
from tests.processes import wait_until as _wait

from .conftest import Receiver
from .test_delivery import add_endpoint, emit, statuses

pytestmark = pytest.mark.slow


def _start(url: str, tmp_path: Path, interval: str, n: int = 0) -> subprocess.Popen[str]:
    cfg = tmp_path / f"agents-{interval}.yaml"
    cfg.write_text(
        "heartbeat: 1s\n"
        "agents:\n"
        "  dispatcher:\n"
        f"    interval: {interval}\n"
        "    batch_size: 100\n"
        "    concurrency: 8\n"
        "    lease: 60s\n"
    )
    return subprocess.Popen(
        [sys.executable, "-m", "mno", "agents", "run", "-f", str(cfg), "--only", "dispatcher"],
        env=dict(os.environ, MNO_DB_URL=url, NO_COLOR="1"),
        stdout=(tmp_path / f"dispatcher-{n}.log").open("w"),
        stderr=subprocess.STDOUT,
        text=True,
    )


def _passes_since(url: str, since: datetime) -> Counter[str]:
    """How many dispatcher passes each process started after ``since``."""
    with session_scope(url, write=False) as s:
        rows = s.execute(
            sa.text("SELECT owner, started_at FROM agent_tick WHERE agent = 'dispatcher'")
        ).all()
    out: Counter[str] = Counter()
    for owner, started in rows:
        if isinstance(started, str):
            started = datetime.fromisoformat(started)
        if started.tzinfo is None:
            started = started.replace(tzinfo=UTC)
        if started > since:
            out[owner] += 1
    return out


def _ready(url: str, procs: int) -> datetime:
    """Wait until every process has run its start-up pass; the time after it."""
    assert _wait(lambda: len(_passes_since(url, datetime(2000, 1, 1, tzinfo=UTC))) >= procs, 90)
    time.sleep(0.5)  # the start-up passes are recorded when they end
    return datetime.now(UTC)


def _listeners(pg_url: str) -> list[int]:
    with session_scope(pg_url, write=False) as s:
        return list(
            s.execute(
                sa.text(
                    "SELECT pid FROM pg_stat_activity WHERE application_name LIKE 'mno-agents %'"
                )
            ).scalars()
        )


def test_a_committed_event_wakes_the_dispatcher(
    store_url: str, receiver: Receiver, tmp_path: Path
) -> None:
    add_endpoint(store_url, receiver.url, events="tenant.*")
    proc = _start(store_url, tmp_path, "60s")
    try:
        since = _ready(store_url, 1)
        emit(store_url, 3)
        # 60 s interval: only the wake-up can have started a pass this early
        assert _wait(lambda: len(receiver.requests) >= 3, 45), statuses(store_url)
        assert _wait(lambda: bool(_passes_since(store_url, since)), 30)  # recorded at its end
    finally:
        _stop(proc)
    assert len(set(receiver.ids())) == 3


@pytest.mark.parametrize("store_url", ["postgres"], indirect=True)
def test_two_dispatchers_both_wake_and_each_event_is_sent_once(
    store_url: str, receiver: Receiver, tmp_path: Path
) -> None:
    total = 300
    add_endpoint(store_url, receiver.url, events="tenant.*")
    procs = [_start(store_url, tmp_path, "60s", n) for n in (1, 2)]
    try:
        since = _ready(store_url, 2)
        emit(store_url, total)
        assert _wait(lambda: statuses(store_url).get("succeeded", 0) >= total, 45), statuses(
            store_url
        )
        assert _wait(lambda: len(_passes_since(store_url, since)) == 2, 30)  # both woke
    finally:
        _stop(*procs)
    ids = Counter(receiver.ids())
    assert len(ids) == total and sum(ids.values()) == total  # each sent once


@pytest.mark.parametrize("store_url", ["postgres"], indirect=True)
def test_a_killed_listener_connection_delays_delivery_by_one_interval_at_most(
    store_url: str, receiver: Receiver, tmp_path: Path
) -> None:
    add_endpoint(store_url, receiver.url, events="tenant.*")
    proc = _start(store_url, tmp_path, "5s")
    try:
        assert _wait(lambda: len(_listeners(store_url)) == 1, 60)
        (before,) = _listeners(store_url)
        with session_scope(store_url) as s:
            s.execute(sa.text("SELECT pg_terminate_backend(:pid)"), {"pid": before})
        emit(store_url, 1)  # its notification may be lost
        assert _wait(lambda: len(receiver.requests) >= 1, 55), statuses(store_url)
        # the listener came back on a new connection, and wakes the dispatcher again
        assert _wait(lambda: _listeners(store_url) not in ([], [before]), 30)
        assert len(_listeners(store_url)) == 1
        emit(store_url, 1)
        assert _wait(lambda: len(receiver.requests) >= 2, 55), statuses(store_url)
    finally:
        _stop(proc)


def test_sqlite_falls_back_to_the_interval_without_its_wake_up(
    sqlite_url: str, receiver: Receiver, tmp_path: Path
) -> None:
    """The wake-up datagram cannot reach the dispatcher (its socket is gone): the event
    is still sent, by the next interval's pass."""
    add_endpoint(sqlite_url, receiver.url, events="tenant.*")
    proc = _start(sqlite_url, tmp_path, "2s")
    try:
        directory = wake.wake_dir(sqlite_url)
        assert directory is not None
        assert _wait(lambda: any(directory.glob("*.sock")), 60)
        for sock in directory.glob("*.sock"):
            sock.unlink()
        emit(sqlite_url, 1)
        assert _wait(lambda: len(receiver.requests) >= 1, 55), statuses(sqlite_url)
    finally:
        _stop(proc)
