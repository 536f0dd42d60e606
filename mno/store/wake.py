"""Wake-ups: a writer tells the agents that work is waiting, so that they need not wait
for their next interval.

``notify(session, channel)`` is called in the writing transaction and takes effect only
if it commits:

- PostgreSQL: ``pg_notify('mno_wake_<channel>', '')``, which the server delivers at
  commit (and drops on rollback) to every connection listening on the channel, on any
  host;
- SQLite: after the commit, one datagram naming the channel to each listener's Unix
  socket in the wake-up directory beside the database file (``<file>.wake/``, or a short
  directory under the temporary directory when that path is too long for a socket name).
  It reaches the processes of one host; an in-memory database has no wake-ups.

``notify(..., at_commit=True)`` defers the ``pg_notify`` to just before the commit (the
outbox's hot path); ``notify_connection(conn, channel)`` does the same job for a writer
that holds a Core connection (``store.bulk.Rows``).

``Listener(db_url)`` is one per agent process: ``subscribe(channel, callback)`` then
``start()`` runs a daemon thread that calls the channel's callbacks on every wake-up.
On PostgreSQL it holds one connection (``LISTEN``), pings it when idle and reconnects
with backoff after any error (a restarted server, a killed connection); after each
reconnect it calls every callback once, since a notification may have been lost while
it was away. A wake-up is a hint only: the agents keep their interval as the safety net,
so a lost one delays work by at most one interval.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import re
import socket
import tempfile
import threading
import time
import uuid
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy import event

if TYPE_CHECKING:
    from sqlmodel import Session

log = logging.getLogger("mno.store.wake")
PREFIX = "mno_wake_"
_CHANNEL = re.compile(r"^[a-z][a-z0-9_]{0,39}$")
_SOCKET_MAX = 100  # sun_path holds 108 bytes; leave room for the file name's growth
_PENDING = "mno_wake_pending"
_AT_COMMIT = "mno_wake_at_commit"


def check_channel(channel: str) -> str:
    if not _CHANNEL.match(channel):
        raise ValueError(f"invalid wake-up channel {channel!r} (a-z, 0-9, _)")
    return channel


# -- writers ----------------------------------------------------------------------------


def notify(session: Session, channel: str, *, at_commit: bool = False) -> None:
    """Wake the listeners of ``channel`` once this transaction commits (once per channel
    and transaction, however often it is called).

    With ``at_commit`` the PostgreSQL ``pg_notify`` runs just before the commit instead
    of now, so a caller on a hot path (``outbox.emit``) adds no statement and no early
    flush to the transaction's body."""
    check_channel(channel)
    bind = session.get_bind()
    postgres = bind.dialect.name == "postgresql"
    directory = None
    if not postgres:
        url = bind.engine.url if isinstance(bind, sa.Connection) else bind.url
        directory = wake_dir(url.render_as_string(hide_password=False))
        if directory is None:
            return
    pending: set[str] | None = session.info.get(_PENDING)
    if pending is None:
        pending = session.info[_PENDING] = set()

        def after_commit(_session: Any) -> None:
            channels = session.info.pop(_PENDING, set())
            if directory is not None:
                for name in sorted(channels):
                    send_local(directory, name)

        def after_rollback(*_: Any) -> None:
            session.info.pop(_PENDING, None)
            session.info.pop(_AT_COMMIT, None)

        event.listen(session, "after_commit", after_commit, once=True)
        event.listen(session, "after_rollback", after_rollback, once=True)
    if channel in pending:
        return
    pending.add(channel)
    if not postgres:
        return
    if not at_commit:
        session.execute(sa.select(sa.func.pg_notify(PREFIX + channel, "")))
        return
    later: set[str] | None = session.info.get(_AT_COMMIT)
    if later is None:
        later = session.info[_AT_COMMIT] = set()

        def before_commit(_session: Any) -> None:
            for name in sorted(session.info.pop(_AT_COMMIT, set())):
                session.execute(sa.select(sa.func.pg_notify(PREFIX + name, "")))

        event.listen(session, "before_commit", before_commit, once=True)
    later.add(channel)


_conn_pending: weakref.WeakKeyDictionary[sa.Connection, set[str]] = weakref.WeakKeyDictionary()


def notify_connection(conn: sa.Connection, channel: str) -> None:
    """``notify`` for a writer that holds a Core connection (``store.bulk.Rows``): on
    PostgreSQL one ``pg_notify`` in its transaction (the server folds repeats into one
    notification); on SQLite one datagram per channel when the connection commits."""
    check_channel(channel)
    if conn.dialect.name == "postgresql":
        pending = _conn_pending.setdefault(conn, set())
        if channel not in pending:  # cleared at commit/rollback below
            pending.add(channel)
            _on_end(conn, None)
            conn.execute(sa.select(sa.func.pg_notify(PREFIX + channel, "")))
        return
    directory = wake_dir(conn.engine.url.render_as_string(hide_password=False))
    if directory is None:
        return
    pending = _conn_pending.setdefault(conn, set())
    if channel not in pending:
        pending.add(channel)
        _on_end(conn, directory)


def _on_end(conn: sa.Connection, directory: Path | None) -> None:
    """At the connection's commit send the pending channels (SQLite); at its end forget
    them."""
    if getattr(conn, "_mno_wake_hooked", False):
        return
    conn._mno_wake_hooked = True  # type: ignore[attr-defined]

    def on_commit(c: sa.Connection) -> None:
        channels = _conn_pending.pop(c, set())
        if directory is not None:
            for name in sorted(channels):
                send_local(directory, name)

    def on_rollback(c: sa.Connection) -> None:
        _conn_pending.pop(c, None)

    event.listen(conn, "commit", on_commit)
    event.listen(conn, "rollback", on_rollback)


def wake_dir(db_url: str) -> Path | None:
    """The directory of the Unix sockets of a SQLite store's listeners (None: in memory)."""
    url = sa.engine.make_url(db_url)
    database = url.database
    if not database or database == ":memory:" or database.startswith("file::memory"):
        return None
    path = Path(database).resolve()
    beside = path.with_name(path.name + ".wake")
    if len(str(beside)) + 30 <= _SOCKET_MAX:
        return beside
    digest = hashlib.sha256(str(path).encode()).hexdigest()[:16]
    return Path(tempfile.gettempdir()) / f"mno-wake-{digest}"


def send_local(directory: Path, channel: str) -> int:
    """Send ``channel`` to every listener socket in ``directory``; remove dead ones.
    Returns how many listeners it reached."""
    try:
        names = [p for p in directory.iterdir() if p.suffix == ".sock"]
    except FileNotFoundError:
        return 0
    reached = 0
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.setblocking(False)
        for path in names:
            try:
                sock.sendto(channel.encode(), str(path))
                reached += 1
            except (ConnectionRefusedError, FileNotFoundError):  # its process is gone
                with contextlib.suppress(FileNotFoundError):
                    path.unlink()
            except (BlockingIOError, OSError):  # a full queue: that listener is awake anyway
                reached += 1
    return reached


# -- listeners --------------------------------------------------------------------------


class Listener:
    """One per process: calls the callbacks of a channel when a writer notifies it."""

    def __init__(
        self,
        db_url: str,
        *,
        name: str = "mno-agents",
        ping_every: float = 30.0,
        backoff_max: float = 30.0,
    ) -> None:
        self.db_url = db_url
        self.name = name
        self.ping_every = ping_every
        self.backoff_max = backoff_max
        self.callbacks: dict[str, list[Callable[[], None]]] = {}
        self.connected = threading.Event()
        self.connects = 0  # how many times it (re)connected, for tests and metrics
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._conn: Any = None
        self._sock: socket.socket | None = None
        self.postgres = sa.engine.make_url(db_url).get_backend_name() == "postgresql"

    def subscribe(self, channel: str, callback: Callable[[], None]) -> None:
        self.callbacks.setdefault(check_channel(channel), []).append(callback)

    def start(self) -> Listener:
        if self.postgres:
            target = self._run_postgres
        elif wake_dir(self.db_url) is not None:
            self._bind()
            target = self._run_local
        else:
            return self
        self._thread = threading.Thread(target=target, name="mno-wake", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._sock is not None:
            path = self._sock.getsockname()
            self._sock.close()
            with contextlib.suppress(OSError, TypeError):
                os.unlink(path)
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _fire(self, channel: str | None = None) -> None:
        targets = (
            [cb for cbs in self.callbacks.values() for cb in cbs]
            if channel is None
            else self.callbacks.get(channel, [])
        )
        for cb in targets:
            try:
                cb()
            except Exception:  # a callback's failure never stops the listener
                log.exception("wake-up callback failed")

    # SQLite: a Unix datagram socket beside the database ---------------------------

    def _bind(self) -> None:
        directory = wake_dir(self.db_url)
        assert directory is not None
        directory.mkdir(parents=True, exist_ok=True)
        path = directory / f"{os.getpid()}-{uuid.uuid4().hex[:8]}.sock"
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.bind(str(path))
        sock.settimeout(0.5)
        self._sock = sock
        self.connects += 1
        self.connected.set()

    def _run_local(self) -> None:
        assert self._sock is not None
        while not self._stop.is_set():
            try:
                data = self._sock.recv(256)
            except TimeoutError:
                continue
            except OSError:  # closed by stop()
                return
            self._fire(data.decode(errors="replace"))

    # PostgreSQL: LISTEN on one connection ---------------------------------------

    def _connect(self) -> Any:
        import psycopg

        url = sa.engine.make_url(self.db_url).set(drivername="postgresql")
        conn = psycopg.connect(
            url.render_as_string(hide_password=False),
            autocommit=True,
            application_name=self.name,
            connect_timeout=10,
        )
        for channel in self.callbacks:
            conn.execute(f'LISTEN "{PREFIX}{channel}"')
        return conn

    def _run_postgres(self) -> None:
        failures = 0
        while not self._stop.is_set():
            try:
                self._conn = self._connect()
            except Exception as exc:  # the store is down: retried with backoff
                failures += 1
                delay = min(self.backoff_max, 0.25 * 2 ** min(failures, 8))
                log.warning("wake-up listener cannot connect (%s); retrying in %.1fs", exc, delay)
                self._stop.wait(delay)
                continue
            self.connects += 1
            self.connected.set()
            if failures or self.connects > 1:
                self._fire()  # a notification may have been missed while away
            failures = 0
            try:
                self._listen(self._conn)
            except Exception as exc:  # a killed connection or a restarted server
                if not self._stop.is_set():
                    log.warning("wake-up listener lost its connection (%s); reconnecting", exc)
                    failures = 1
                    self._stop.wait(0.25)
            finally:
                self.connected.clear()
                with contextlib.suppress(Exception):
                    self._conn.close()
                self._conn = None

    def _listen(self, conn: Any) -> None:
        idle_since = time.monotonic()
        while not self._stop.is_set():
            got = False
            for note in conn.notifies(timeout=0.5):
                got = True
                channel = note.channel.removeprefix(PREFIX)
                self._fire(channel)
            if got:
                idle_since = time.monotonic()
            elif time.monotonic() - idle_since > self.ping_every:
                conn.execute("SELECT 1")  # finds a half-open connection
                idle_since = time.monotonic()
