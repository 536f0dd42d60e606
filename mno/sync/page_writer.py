"""How a pull pass's pages reach the database fast. ``pull`` says what a page transaction
does; this module decides where and when it runs, and frames it:

- ``Prefetch`` fetches (and maps) the pages of a pass ahead of the writer, on a thread
  of its own, up to ``AHEAD_PAGES`` of them; on SQLite the writer takes the pages that
  are ready with the one it writes, in one transaction (``PageWriter.groups``).
- ``PageWriter`` writes the pages of a pass in order. SQLite: each on the calling thread,
  with a ``Backfill`` thread copying the write-ahead log into the database beside it.
  PostgreSQL: up to ``IN_FLIGHT`` pages side by side on writer threads, each thread on a
  connection held for the pass (``HeldConnections``); a page commits only after the page
  before it (its ``wait_turn``), so the cursor never passes a page that is not stored.
- ``writing_pages()``: the interpreter's thread switches and garbage collection tuned
  while pages are written.
- ``open_page()`` and ``close_page()``: the statements that open and close a page
  transaction (run lock renewal, the connection's row held, the cursor checkpoint and
  the run's counts), on PostgreSQL in one statement at the close.
- ``checkpoint_wal()``: SQLite's write-ahead log copied back after a large run.

The page transaction is a ``PageCommit``: called with a session factory and a
``wait_turn`` callable, it writes the page's rows, calls ``wait_turn()`` before its
checkpoint, and commits.
"""

from __future__ import annotations

import gc
import json
import sqlite3
import sys
import threading
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import AbstractContextManager, contextmanager
from datetime import datetime
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar

from sqlmodel import Session

from mno import clock, settings
from mno.errors import Conflict
from mno.store.db import get_engine, is_sqlite
from mno.store.models.core import LeaseLock
from mno.store.models.sync import SyncCursor, SyncRun
from mno.store.types import table_of
from mno.sync.runlock import LOCK_TTL, hold_connection, lock_name

if TYPE_CHECKING:
    import sqlalchemy as sa

    from mno.sync.pages import Ctx, Pulled

Scope = Callable[[], AbstractContextManager["Session"]]

# PostgreSQL: pages written at once, on as many connections. The database server does
# most of a page's work; with pages side by side it works while this process prepares
# the next page and waits for its turn to commit.
IN_FLIGHT = 4
# pages fetched and mapped ahead of the writer; a crash fetches them again, since the
# cursor checkpoint only moves with a committed page
AHEAD_PAGES = 4
# SQLite: the pages already fetched when the writer takes one are written with it in one
# transaction, up to this many records (see PageWriter.groups)
GROUP_RECORDS = 2000
QUICK_SWITCH = 0.0001  # seconds
YOUNG_OBJECTS = 50_000  # allocations between collections of the youngest generation


P = TypeVar("P")
Position = dict[str, Any]


class Prefetch(Generic[P]):
    """The pages of a pass, fetched in order by ``fetch(position) -> (page, next
    position or None)`` on a thread of its own, from ``position`` on, up to ``ahead``
    pages ahead of the writer. ``take()`` gives them in order; ``close()`` (always, in
    a ``finally``) stops the thread and waits for its request in flight."""

    def __init__(
        self,
        fetch: Callable[[Position], tuple[P, Position | None]],
        position: Position,
        ahead: int = AHEAD_PAGES,
    ) -> None:
        self.cond = threading.Condition()
        self.pages: deque[tuple[P, Position | None]] = deque()
        self.ahead = ahead
        self.done = False  # the listing ended, or a fetch failed (``error``)
        self.error: BaseException | None = None
        self.stopped = False
        self.thread = threading.Thread(
            target=self._run, args=(fetch, position), name="mno-sync-fetch", daemon=True
        )
        self.thread.start()

    def _run(self, fetch: Callable[[Position], tuple[P, Position | None]], pos: Position) -> None:
        try:
            nxt: Position | None = pos
            while nxt is not None:
                page, nxt = fetch(nxt)
                with self.cond:
                    while len(self.pages) >= self.ahead and not self.stopped:
                        self.cond.wait()
                    if self.stopped:
                        return
                    self.pages.append((page, nxt))
                    self.cond.notify_all()
        except BaseException as exc:  # raised to the writer by take(), in its place
            with self.cond:
                self.error = exc
        finally:
            with self.cond:
                self.done = True
                self.cond.notify_all()

    def take(self) -> tuple[P, Position | None] | None:
        """The next page and the position after it; None after the last page. A failed
        fetch raises its error here, after the pages fetched before it."""
        with self.cond:
            while not self.pages and not self.done:
                self.cond.wait()
            if self.pages:
                self.cond.notify_all()
                return self.pages.popleft()
            if self.error is not None:
                raise self.error
            return None

    def ready(self) -> tuple[P, Position | None] | None:
        """The next page if it is fetched already (it stays next), else None."""
        with self.cond:
            return self.pages[0] if self.pages else None

    def close(self) -> None:
        with self.cond:
            self.stopped = True
            self.cond.notify_all()
        self.thread.join()


class PageCommit(Protocol):
    """One page's transaction, opened with ``scope``; it calls ``wait_turn()`` after
    writing the page's rows and before its checkpoint."""

    def __call__(self, scope: Scope, wait_turn: Callable[[], object]) -> None: ...


def _your_turn() -> None:
    """The turn of a page that has no page before it in flight."""


class PageWriter:
    """Writes the pages of one pass in order (see the module's docstring).

    ``write(items, commit)`` runs or queues one page; ``wait()`` returns when every page
    is committed and raises the first page's error; ``close()`` (always, in a
    ``finally``) waits for the writer threads and gives back their connections."""

    def __init__(self, scope: Scope, engine: Any) -> None:
        postgres = engine.dialect.name == "postgresql"
        # PostgreSQL: up to IN_FLIGHT pages are written side by side, each on its own
        # connection, and each commits after the page before it
        self.writers = (
            ThreadPoolExecutor(IN_FLIGHT, thread_name_prefix="mno-sync-write") if postgres else None
        )
        # PostgreSQL: each writer's connection, kept for the whole pass; SQLite: the backfill
        self.held = HeldConnections(engine) if postgres else None
        self.backfill = None if postgres else Backfill.of(engine)
        self.page_scope = self.held.scope if self.held is not None else scope
        # page writes in order (the last one submitted last), with their external ids
        self.flight: list[tuple[Future[None], set[str]]] = []
        # SQLite: the pages fetched ahead are written together, in one transaction, up to
        # GROUP_RECORDS records: a transaction's own statements (lock renewal, connection
        # row, checkpoint, counts) and its commit are paid once for them. Only pages
        # already fetched are taken, so a slow API still gets each page committed as soon
        # as it arrives. PostgreSQL writes pages side by side instead.
        self.groups = GROUP_RECORDS if self.writers is None else 0

    def writing(self) -> AbstractContextManager[None]:
        """The interpreter settings for writing pages (``writing_pages``)."""
        return writing_pages()

    def write(self, items: list[Pulled], commit: PageCommit) -> None:
        """Write one page: at once on SQLite; on PostgreSQL queued behind the pages in
        flight, after waiting for room or for a page that holds one of its ids."""
        if self.writers is None:
            commit(self.page_scope, _your_turn)
            if self.backfill is not None:
                self.backfill.poke()
            return
        flight = self.flight
        ids = {it.external_id for it in items}
        if any(not ids.isdisjoint(other) for _, other in flight):
            # an id of a page not committed yet: this page's lookup must see
            # it. Pages of other ids touch other id maps and records (one
            # per external id), so they may be written side by side.
            flight[-1][0].result()
        flight.append(
            (
                self.writers.submit(
                    commit,
                    self.page_scope,
                    flight[-1][0].result if flight else _your_turn,
                ),
                ids,
            )
        )
        while len(flight) >= IN_FLIGHT or (flight and flight[0][0].done()):
            flight.pop(0)[0].result()

    def wait(self) -> None:
        """Wait for the pages in flight; raises the error of the first that failed."""
        for page, _ in self.flight:
            page.result()

    def close(self) -> None:
        if self.writers is not None:
            self.writers.shutdown(wait=True)
        if self.held is not None:
            self.held.close()
        if self.backfill is not None:
            self.backfill.close()


class _Interpreter:
    lock = threading.Lock()
    users = 0  # runs writing pages now
    switch = 0.0  # the settings before the first of them
    thresholds: tuple[int, ...] = ()


@contextmanager
def writing_pages() -> Iterator[None]:
    """Interpreter settings while pages are written (restored after the last run that
    writes pages in this process):

    - a thread that waits for the GIL gets it after 0.1 ms instead of Python's 5 ms. The
      writing thread waits for the database a dozen times a page, and each time it wakes
      while the fetch thread maps the next page (pure Python, holding the GIL), the
      database idles until the writer gets the GIL back;
    - the cyclic garbage collector looks at young objects every 50,000 allocations
      instead of 700: a page allocates some 10,000 containers (parsed records, mapped
      data, rows) that are freed by reference counting when the page is written, and
      scanning them over and over cost more CPU than mapping them."""
    with _Interpreter.lock:
        if not _Interpreter.users:
            _Interpreter.switch = sys.getswitchinterval()
            _Interpreter.thresholds = gc.get_threshold()
            sys.setswitchinterval(min(QUICK_SWITCH, _Interpreter.switch))
            gc.set_threshold(
                max(YOUNG_OBJECTS, _Interpreter.thresholds[0]), *_Interpreter.thresholds[1:]
            )
        _Interpreter.users += 1
    try:
        yield
    finally:
        with _Interpreter.lock:
            _Interpreter.users -= 1
            if not _Interpreter.users:
                sys.setswitchinterval(_Interpreter.switch)
                gc.set_threshold(*_Interpreter.thresholds)


class Backfill:
    """SQLite: a thread that copies the write-ahead log back into the database file
    (a PASSIVE checkpoint, on a connection of its own) while pages are written. The
    writer's commits would otherwise do it every 16,384 pages of log (``tune_sqlite``),
    each time holding up the next page; beside it, the copy runs on another core, and a
    commit's own checkpoint finds little or nothing left to copy."""

    EVERY = 8  # pages between checkpoints

    def __init__(self, path: str) -> None:
        self.path = path
        self.pages = 0
        self.wake = threading.Event()
        self.asked = False  # a checkpoint is due
        self.done = False
        self.thread = threading.Thread(target=self._loop, name="mno-sync-backfill", daemon=True)
        self.thread.start()

    @classmethod
    def of(cls, engine: Any) -> Backfill | None:
        path = engine.url.database
        return cls(path) if path and path != ":memory:" else None

    def poke(self) -> None:
        self.pages += 1
        if self.pages % self.EVERY == 0:
            self.asked = True
            self.wake.set()

    def close(self) -> None:
        self.done = True
        self.wake.set()
        self.thread.join()

    def _loop(self) -> None:
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        try:
            while True:
                self.wake.wait()
                self.wake.clear()
                if self.asked:
                    self.asked = False
                    # PASSIVE: copies what no reader still needs and waits for nobody
                    conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
                if self.done:
                    return
        except sqlite3.Error:
            return  # the writer's own checkpoints still run
        finally:
            conn.close()


class HeldConnections:
    """PostgreSQL: the page transactions of each writer thread run on one connection,
    taken from the pool when the thread writes its first page and returned when the pass
    ends; a connection per page would cost a checkout, with its liveness check, and a
    session each time."""

    def __init__(self, engine: Any) -> None:
        self.engine = engine
        self.local = threading.local()
        self.lock = threading.Lock()
        self.connections: list[sa.Connection] = []

    @contextmanager
    def scope(self) -> Iterator[Session]:
        """One transaction on this thread's connection: committed on success, rolled
        back on any error."""
        conn = getattr(self.local, "conn", None)
        if conn is None:
            conn = self.local.conn = self.engine.connect()
            with self.lock:
                self.connections.append(conn)
        with conn.begin(), Session(bind=conn) as session:
            yield session

    def close(self) -> None:
        with self.lock:
            for conn in self.connections:
                conn.close()
            self.connections.clear()


# -- the page transaction's frame ---------------------------------------------------------


def open_page(session: Session, ctx: Ctx) -> datetime:
    """Start a page transaction; returns its time. The parents of every row the page
    writes are checked once for the page (the hot tables have no foreign keys to them,
    see migration 0502_sync): the run lock is renewed and the connection's row locked
    against removal. SQLite does it here, first; PostgreSQL in ``close_page``."""
    conn = session.connection()
    now = clock.now()
    if conn.dialect.name == "postgresql":
        return now
    tune_sqlite(session)
    renewed, held = _open_page_sqlite(conn, ctx, now)
    _check_page(ctx, renewed, held)
    return now


def close_page(
    session: Session, ctx: Ctx, now: datetime, state: dict[str, Any], counts: dict[str, int]
) -> None:
    """The page's checkpoint ``state`` and the run's ``counts``; on PostgreSQL also what
    ``open_page`` does on SQLite. The run lock makes this run the only writer of the
    cursor, so the checkpoint is written without reading it back."""
    conn = session.connection()
    if conn.dialect.name == "postgresql":
        renewed, held, counted = conn.exec_driver_sql(
            _CLOSE_PAGE_PG,
            {
                "until": now + LOCK_TTL,
                "now": now,
                "lock": lock_name(ctx.connection.id),
                "owner": ctx.owner,
                "checkpoint": json.dumps(state),
                "cid": ctx.connection.id,
                "entity": ctx.entity.canonical,
                "counts": json.dumps(counts),
                "run": ctx.run_id,
                "flush": ctx.flush,
            },
        ).one()[:3]
        _check_page(ctx, renewed, held)
    else:
        c, r = table_of(SyncCursor), table_of(SyncRun)
        conn.execute(
            c.update()
            .where(c.c.connection_id == ctx.connection.id, c.c.entity == ctx.entity.canonical)
            .values(checkpoint=state, updated_at=now)
        )
        counted = conn.execute(
            r.update().where(r.c.id == ctx.run_id).values(counts=counts)
        ).rowcount
    if not counted:
        raise Conflict(f"run {ctx.run_id} of connection {ctx.connection.name} is gone")


# PostgreSQL: a page transaction closes with one statement (a round trip less per
# statement, and no statement compiled), doing what ``open_page`` and the cursor and
# run updates of ``close_page`` do on SQLite. The run lock is renewed and the
# connection row locked when the page closes: pages written while the page before them
# commits (see PageWriter) would otherwise wait for its lock on the lease row from
# their first statement on. A removal of the connection that commits before the close
# did not see the page's rows, and the close then finds no connection and rolls the page
# back; one that comes after the close waits for the page, and removes its rows too.
#
# It also sets ``synchronous_commit = off`` for the transaction unless ``ctx.flush``: the
# commit returns before its WAL is flushed (the WAL writer flushes within a fraction of a
# second) instead of waiting for one disk flush per page. Only a crash of the database
# server itself can lose the last few page commits, and never part of one: the cursor
# checkpoint commits with its page's records, id maps, change rows and events, so the
# next run resumes from the last page that survived and fetches the lost pages again. An
# application crash loses nothing that was committed.
_CLOSE_PAGE_PG = """WITH held AS (
    SELECT 1 FROM sync_connection WHERE id = %(cid)s FOR KEY SHARE),
renewed AS (
    UPDATE lease_lock SET until = %(until)s, updated_at = %(now)s
    WHERE name = %(lock)s AND owner = %(owner)s RETURNING 1),
moved AS (
    UPDATE sync_cursor SET checkpoint = %(checkpoint)s::json, updated_at = %(now)s
    WHERE connection_id = %(cid)s AND entity = %(entity)s),
counted AS (
    UPDATE sync_run SET counts = %(counts)s::json WHERE id = %(run)s RETURNING 1)
SELECT (SELECT count(*) FROM renewed), (SELECT count(*) FROM held),
    (SELECT count(*) FROM counted),
    set_config('synchronous_commit',
        CASE WHEN %(flush)s THEN current_setting('synchronous_commit') ELSE 'off' END, true)"""


def _check_page(ctx: Ctx, renewed: int, held: int) -> None:
    if not renewed:
        raise Conflict(f"connection {ctx.connection.name} lost its run lock to another run")
    if not held:
        raise Conflict(f"connection {ctx.connection.name} was removed")


def _open_page_sqlite(conn: sa.Connection, ctx: Ctx, now: datetime) -> tuple[int, int]:
    """(run lock renewed, connection row held)."""
    lock = table_of(LeaseLock)
    renewed = conn.execute(
        lock.update()
        .where(lock.c.name == lock_name(ctx.connection.id), lock.c.owner == ctx.owner)
        .values(until=now + LOCK_TTL, updated_at=now)
    ).rowcount
    try:
        hold_connection(conn, ctx.connection)
    except Conflict:
        return renewed, 0
    return renewed, 1


def wait_for_flush() -> bool:
    """Whether a page transaction on PostgreSQL waits for its WAL to reach disk
    (``sync.synchronous_commit`` in the profile; off by default, see ``_CLOSE_PAGE_PG``)."""
    return bool(settings.profile_value("sync.synchronous_commit", False))


def tune_sqlite(session: Session) -> None:
    """SQLite: a larger page cache and fewer WAL checkpoints for this connection while it
    writes large pages of records (per-connection settings; durability is unchanged)."""
    conn = session.connection()
    info = conn.connection.info  # lives as long as the database connection
    if info.get("mno.sync.tuned"):
        return  # set on an earlier page: a statement less, and a wait less, per page
    conn.exec_driver_sql("PRAGMA cache_size=-131072")
    conn.exec_driver_sql("PRAGMA wal_autocheckpoint=16384")
    info["mno.sync.tuned"] = True


def checkpoint_wal(db_url: str | None) -> None:
    """SQLite: copy the write-ahead log of a large run back into the database now
    (PASSIVE: it waits for nobody), so the next writer's commit does not pay for it."""
    engine = get_engine(db_url)
    if not is_sqlite(engine):
        return
    raw = engine.raw_connection()  # autocommit: the checkpoint runs outside a transaction
    try:
        raw.cursor().execute("PRAGMA wal_checkpoint(PASSIVE)")
    finally:
        raw.close()
