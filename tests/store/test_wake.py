"""Wake-ups (mno.store.wake) on SQLite and PostgreSQL: a committed notify wakes every
listener, a rolled-back one wakes none, and a PostgreSQL listener whose connection is
killed reconnects by itself."""

from __future__ import annotations

import threading
import time
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
import sqlalchemy as sa

from mno.store import wake
from mno.store.db import session_scope


class Seen:
    def __init__(self) -> None:
        self.events: dict[str, threading.Event] = {}
        self.count: dict[str, int] = {}
        self.lock = threading.Lock()

    def callback(self, name: str) -> Any:
        self.events[name] = threading.Event()

        def hit() -> None:
            with self.lock:
                self.count[name] = self.count.get(name, 0) + 1
            self.events[name].set()

        return hit


def _listener(url: str, seen: Seen, *channels: str, name: str = "mno-test-wake") -> Any:
    listener = wake.Listener(url, name=name)
    for channel in channels:
        listener.subscribe(channel, seen.callback(channel))
    listener.start()
    assert listener.connected.wait(20)
    return listener


def test_a_committed_notify_wakes_every_listener_and_a_rollback_none(store_url):
    a, b = Seen(), Seen()
    first = _listener(store_url, a, "t_one", "t_rolled")
    second = _listener(store_url, b, "t_one", "t_rolled")
    try:
        with pytest.raises(RuntimeError), session_scope(store_url) as s:
            wake.notify(s, "t_rolled")
            raise RuntimeError("rolled back")
        with session_scope(store_url) as s:
            wake.notify(s, "t_one")
            wake.notify(s, "t_one")  # several notifies in one transaction: one wake-up
        assert a.events["t_one"].wait(20) and b.events["t_one"].wait(20)
        # the rolled-back notify was never sent (PostgreSQL delivers in commit order, and
        # SQLite sends only after a commit)
        assert not a.events["t_rolled"].is_set() and not b.events["t_rolled"].is_set()
    finally:
        first.stop()
        second.stop()


def test_a_notify_without_listeners_is_harmless(store_url):
    with session_scope(store_url) as s:
        wake.notify(s, "nobody_listens")
    with pytest.raises(ValueError):
        with session_scope(store_url) as s:
            wake.notify(s, "Bad Channel")


def test_sqlite_sockets_of_dead_listeners_are_removed(sqlite_url):
    seen = Seen()
    listener = _listener(sqlite_url, seen, "t_one")
    directory = wake.wake_dir(sqlite_url)
    assert directory is not None
    stale = directory / "999999-deadbeef.sock"
    import socket

    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(stale))  # bound, then closed: nobody receives on it any more
    try:
        with session_scope(sqlite_url) as s:
            wake.notify(s, "t_one")
        assert seen.events["t_one"].wait(20)
        assert not stale.exists()
    finally:
        listener.stop()
    assert not any(directory.iterdir())  # a stopped listener removes its socket


def _kill_listener(url: str, name: str) -> int:
    with session_scope(url) as s:
        return int(
            s.execute(
                sa.text(
                    "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                    "WHERE application_name = :name"
                ),
                {"name": name},
            ).scalar_one()
        )


def test_a_killed_postgres_listener_reconnects_and_wakes_again(pg_url):
    seen = Seen()
    listener = _listener(pg_url, seen, "t_one", name="mno-test-killed")
    try:
        assert _kill_listener(pg_url, "mno-test-killed") == 1
        deadline = time.monotonic() + 30
        while listener.connects < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert listener.connects == 2  # reconnected by itself
        # a notification may have been lost while it was away: every callback fires once
        assert seen.events["t_one"].wait(20)
        seen.events["t_one"].clear()
        with session_scope(pg_url) as s:
            wake.notify(s, "t_one")
        assert seen.events["t_one"].wait(20)
    finally:
        listener.stop()


# -- the outbox wakes its consumers ------------------------------------------------------


def test_an_outbox_write_wakes_once_per_transaction_and_a_rollback_never(store_url):
    """``emit``/``emit_many`` (deferred to the commit) and ``emit_rows`` (a Core
    connection) each notify the ``outbox`` channel; a rolled-back write wakes nobody."""
    from mno.store import bulk, outbox

    seen = Seen()
    listener = _listener(store_url, seen, outbox.WAKE)
    try:
        with pytest.raises(RuntimeError), session_scope(store_url) as s:
            outbox.emit(s, "tenant.updated", {"i": 0})
            raise RuntimeError("rolled back")
        with session_scope(store_url) as s:  # a write with no event: no wake-up
            wake.notify(s, "t_other")
        with session_scope(store_url) as s:
            # many events in one transaction: one statement each, one wake-up at commit
            for i in range(50):
                outbox.emit(s, "tenant.updated", {"i": i})
            outbox.emit_many(s, [("tenant.updated", {"i": 99}, None)])
        assert seen.events[outbox.WAKE].wait(20)
        seen.events[outbox.WAKE].clear()
        with session_scope(store_url) as s:
            w = bulk.Rows(s.connection())
            stamp = w.time(datetime.now(UTC))
            outbox.emit_rows(
                w,
                ("id", "type", "payload"),
                [(uuid.uuid4().hex, "tenant.updated", '{"i":1}')],
                {"created_at": stamp, "updated_at": stamp},
            )
        assert seen.events[outbox.WAKE].wait(20)
        with session_scope(store_url, write=False) as s:
            events = s.execute(sa.text("SELECT count(*) FROM outbox_event")).scalar_one()
        assert events == 52  # the rolled-back event was never written
    finally:
        listener.stop()
    # one wake-up per committed transaction: the 51-event one and the bulk one (two
    # datagrams on SQLite; on PostgreSQL the server may fold nothing across transactions)
    assert seen.count[outbox.WAKE] == 2


def test_emit_defers_its_notify_to_the_commit(pg_url):
    """On PostgreSQL ``emit`` adds no statement to the transaction's body: the
    ``pg_notify`` runs once, just before the commit."""
    from mno.store import outbox

    statements: list[str] = []

    def record(_conn: Any, _cursor: Any, statement: str, *_: Any) -> None:
        statements.append(statement)

    with session_scope(pg_url) as s:
        engine = s.connection().engine
        sa.event.listen(engine, "before_cursor_execute", record)
        outbox.emit(s, "tenant.updated", {"i": 1})
        outbox.emit(s, "tenant.updated", {"i": 2})
        s.flush()
        assert not any("pg_notify" in q for q in statements)
    sa.event.remove(engine, "before_cursor_execute", record)
    assert sum("pg_notify" in q for q in statements) == 1
