"""Pulling one entity: pages in order, each committed in one transaction with the cursor
checkpoint (the next page is prefetched and mapped meanwhile), then the pass's deletes
and the cursor's move."""

from __future__ import annotations

import dataclasses
import gc
import json
import sys
import threading
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from datetime import datetime
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from mno import clock
from mno.errors import Conflict
from mno.store import leases, outbox
from mno.store.models.core import LeaseLock
from mno.store.models.sync import (
    SyncChange,
    SyncCursor,
    SyncIdMap,
    SyncRecord,
    SyncRun,
)
from mno.sync import mapping
from mno.sync.pages import Ctx, NewRows, Pulled, apply_page, fetch_page, map_page
from mno.sync.push import _now_row, push_targets, queue_pushes
from mno.sync.runlock import LOCK_TTL, hold_connection, lock_name

if TYPE_CHECKING:
    from sqlmodel import Session

    from mno.sync.rest import RestClient

ProgressFn = Callable[[str, int], None]


def sweep_deletes(session: Session, ctx: Ctx, token: str) -> list[uuid.UUID]:
    """After a complete full pass: mapped records this pass did not see are deleted."""
    m, r = SyncIdMap.__table__, SyncRecord.__table__  # type: ignore[attr-defined]
    rows = (
        session.connection()
        .execute(
            sa.select(m.c.external_id, r.c.id, r.c.data, r.c.version)
            .join(r, r.c.id == m.c.record_id)
            .where(m.c.connection_id == ctx.connection.id, m.c.entity == ctx.entity.canonical)
            .where(sa.or_(m.c.seen_token.is_(None), m.c.seen_token != token))
            .where(r.c.deleted_at.is_(None))
        )
        .all()
    )
    _delete_records(session, ctx, [(row.id, row.data, row.version) for row in rows])
    return [row.id for row in rows]


def _delete_records(session: Session, ctx: Ctx, rows: list[tuple[uuid.UUID, Any, int]]) -> None:
    if not rows:
        return
    now = clock.now()
    r = SyncRecord.__table__  # type: ignore[attr-defined]
    session.connection().execute(
        r.update()
        .where(r.c.id == sa.bindparam("b_id"))
        .values(deleted_at=now, updated_at=now, version=sa.bindparam("version")),
        [{"b_id": rid, "version": v + 1} for rid, _, v in rows],
    )
    tenant_id, ent = ctx.connection.tenant_id, ctx.entity.canonical
    session.connection().execute(
        SyncChange.__table__.insert(),  # type: ignore[attr-defined]
        [
            {
                **_now_row(now),
                "run_id": ctx.run_id,
                "record_id": rid,
                "tenant_id": tenant_id,
                "entity": ent,
                "action": "delete",
                "source": ctx.source,
                "before": data,
                "after": None,
            }
            for rid, data, _ in rows
        ],
    )
    outbox.emit_many(
        session,
        [
            (
                "record.deleted",
                {
                    "record_id": str(rid),
                    "entity": ent,
                    "version": v + 1,
                    "source": ctx.source,
                    "data": None,
                },
                tenant_id,
            )
            for rid, _, v in rows
        ],
    )
    ctx.bump("deleted", len(rows))


def pull_deleted_since(
    session_factory: Callable[..., Any], client: RestClient, ctx: Ctx, since: str | None
) -> None:
    d = ctx.entity.deleted
    if d is None or not d.path:
        return
    params = {d.param: since} if (since and d.param) else None
    body, _ = client.get_json(d.path, params)
    ids = [
        str(mapping.get_path(x, d.id) if isinstance(x, dict) else x)
        for x in (mapping.get_path(body, d.records or "") or [])
    ]
    if not ids:
        return
    with session_factory() as session:
        _renew(session, ctx)
        m, r = SyncIdMap.__table__, SyncRecord.__table__  # type: ignore[attr-defined]
        rows = (
            session.connection()
            .execute(
                sa.select(r.c.id, r.c.data, r.c.version)
                .join(m, r.c.id == m.c.record_id)
                .where(m.c.connection_id == ctx.connection.id, m.c.entity == ctx.entity.canonical)
                .where(m.c.external_id.in_(ids), r.c.deleted_at.is_(None))
            )
            .all()
        )
        _delete_records(session, ctx, [(x.id, x.data, x.version) for x in rows])
        queue_pushes(session, ctx.targets, ctx.entity.canonical, [x.id for x in rows], ctx.run_id)


def _renew(session: Session, ctx: Ctx) -> None:
    if not leases.acquire_lock(session, lock_name(ctx.connection.id), ctx.owner, LOCK_TTL):
        raise Conflict(f"connection {ctx.connection.name} lost its run lock to another run")


def pull_entity(
    scope: Callable[[], Any],
    client: RestClient,
    ctx: Ctx,
    *,
    full: bool,
    progress: ProgressFn | None = None,
) -> None:
    ent = ctx.entity
    with scope() as session:
        _renew(session, ctx)
        postgres = session.connection().dialect.name == "postgresql"
        bind = session.get_bind()
        ctx.targets = push_targets(session, ctx.connection, ent.canonical)
        ctx.flush = wait_for_flush()
        m = SyncIdMap.__table__  # type: ignore[attr-defined]
        mapped = sa.select(m.c.id).where(
            m.c.connection_id == ctx.connection.id, m.c.entity == ent.canonical
        )
        ctx.fresh = None if session.connection().execute(mapped.limit(1)).first() else set()
        cursor = _cursor(session, ctx.connection.id, ent.canonical)
        cp = cursor.checkpoint
        if cp and bool(cp.get("full")) == full:
            pass  # resume an interrupted pass from its last committed page
        else:
            cp = {
                "full": full,
                "since": None if (full or not ent.incremental) else cursor.value,
                "position": {},
                "token": uuid.uuid4().hex if full else None,
                "max_updated": None,
                "started_at": mapping.format_time(clock.now(), "iso8601"),
            }
            cursor.checkpoint = cp
            session.add(cursor)
    since = cp["since"]
    since_param = None
    if since and ent.incremental:
        since_param = mapping.format_time(mapping.parse_time(since), ent.incremental.format)  # type: ignore[arg-type]
    position: dict[str, Any] | None = cp["position"]
    # the next page is fetched while this one is written; the checkpoint still moves only
    # after a page commits, so a crash re-fetches at most the prefetched page
    pool = ThreadPoolExecutor(1, thread_name_prefix="mno-sync-fetch")

    new = NewRows(postgres, ent.canonical, ctx.source)

    def fetch(pos: dict[str, Any]) -> tuple[list[Pulled], dict[str, Any] | None]:
        raws, nxt = fetch_page(client, ent, since_param, pos)
        return map_page(ent, raws, new), nxt

    ahead = pool.submit(fetch, position) if position is not None else None
    # PostgreSQL: up to IN_FLIGHT pages are written side by side, each on its own
    # connection, and each commits after the page before it (see _commit_page)
    writers = (
        ThreadPoolExecutor(IN_FLIGHT, thread_name_prefix="mno-sync-write") if postgres else None
    )
    # PostgreSQL: each writer's connection, kept for the whole pass; SQLite: the backfill
    held = _HeldConnections(bind) if postgres else None
    backfill = None if postgres else _Backfill.of(bind)
    # page writes in order (the last one submitted last), with their external ids
    flight: list[tuple[Future[None], set[str]]] = []
    try:
        with _writing_pages():
            while ahead is not None:
                items, nxt = ahead.result()
                ahead = pool.submit(fetch, nxt) if nxt is not None else None
                fresh = ctx.take_fresh(items)
                state = _next_state(cp, items, nxt)
                if writers is None:
                    _commit_page(scope, ctx, items, state, cp["token"], progress, fresh=fresh)
                    if backfill is not None:
                        backfill.poke()
                else:
                    ids = {it.external_id for it in items}
                    if any(not ids.isdisjoint(other) for _, other in flight):
                        # an id of a page not committed yet: this page's lookup must see
                        # it. Pages of other ids touch other id maps and records (one
                        # per external id), so they may be written side by side.
                        flight[-1][0].result()
                    flight.append(
                        (
                            writers.submit(
                                _commit_page,
                                held.scope,  # type: ignore[union-attr]
                                ctx,
                                items,
                                state,
                                cp["token"],
                                progress,
                                fresh=fresh,
                                after=flight[-1][0] if flight else None,
                            ),
                            ids,
                        )
                    )
                    while len(flight) >= IN_FLIGHT or (flight and flight[0][0].done()):
                        flight.pop(0)[0].result()
                cp = state
            for page, _ in flight:
                page.result()
    finally:
        if ahead is not None:
            ahead.cancel()
        pool.shutdown(wait=True)
        if writers is not None:
            writers.shutdown(wait=True)
        if held is not None:
            held.close()
        if backfill is not None:
            backfill.close()
    # the pass is complete: deletes, then the cursor moves and the checkpoint clears
    pull_deleted_since(scope, client, ctx, since_param)
    with scope() as session:
        _renew(session, ctx)
        if full and cp.get("token"):
            gone = sweep_deletes(session, ctx, cp["token"])
            queue_pushes(session, ctx.targets, ent.canonical, gone, ctx.run_id)
        cur = _cursor(session, ctx.connection.id, ent.canonical)
        newest_s = (cur.checkpoint or cp).get("max_updated")
        if newest_s:
            old = mapping.parse_time(cur.value)
            new = mapping.parse_time(newest_s)
            if old is None or (new and new > old):
                cur.value = newest_s
        cur.checkpoint = None
        cur.touch()
        session.add(cur)
        _save_counts(session, ctx)


# PostgreSQL: pages written at once, on as many connections. The database server does
# most of a page's work; with pages side by side it works while this process prepares
# the next page and waits for its turn to commit.
IN_FLIGHT = 4
QUICK_SWITCH = 0.0001  # seconds
YOUNG_OBJECTS = 50_000  # allocations between collections of the youngest generation


class _Interpreter:
    lock = threading.Lock()
    users = 0  # runs writing pages now
    switch = 0.0  # the settings before the first of them
    thresholds: tuple[int, ...] = ()


@contextmanager
def _writing_pages() -> Iterator[None]:
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


class _Backfill:
    """SQLite: a thread that copies the write-ahead log back into the database file
    (a PASSIVE checkpoint, on a connection of its own) while pages are written. The
    writer's commits would otherwise do it every 16,384 pages of log (``_tune``), each
    time holding up the next page; beside it, the copy runs on another core, and a
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
    def of(cls, engine: Any) -> _Backfill | None:
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
        import sqlite3

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


class _HeldConnections:
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
        from sqlmodel import Session

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


def _next_state(
    cp: dict[str, Any], items: list[Pulled], nxt: dict[str, Any] | None
) -> dict[str, Any]:
    """The checkpoint after a page: the next position and the newest updated_at seen."""
    newest = max((i.updated_at for i in items if i.updated_at), default=None)
    state = dict(cp)
    prev = mapping.parse_time(state.get("max_updated"))
    if newest and (prev is None or newest > prev):
        state["max_updated"] = mapping.format_time(newest, "iso8601")
    state["position"] = nxt
    return state


def _commit_page(
    scope: Callable[[], Any],
    ctx: Ctx,
    items: list[Pulled],
    state: dict[str, Any],
    token: str | None,
    progress: ProgressFn | None,
    *,
    fresh: bool,
    after: Future[None] | None = None,
) -> None:
    """One transaction: the page's records, id maps, changes, events, pushes and the
    checkpoint ``state``. The run lock makes this run the only writer of the cursor, so
    the checkpoint is written without reading it back.

    ``after`` is the previous page's write, still running on another connection
    (PostgreSQL): this page's rows are written meanwhile, and its checkpoint, counts and
    commit wait for that page to commit. If it fails, this page rolls back too, so the
    cursor never passes a page that is not stored."""
    ent = ctx.entity
    page = dataclasses.replace(ctx, counts={})  # this page's counts, added on commit
    with scope() as session:
        conn = session.connection()
        now = clock.now()
        # the parents of every row this page writes, checked once for the page (the hot
        # tables have no foreign keys to them, see migration 0502_sync): the connection
        # row is locked against removal, the run row by the update of its counts, and
        # the run lock renewed (first on SQLite, with the checkpoint on PostgreSQL)
        postgres = conn.dialect.name == "postgresql"
        if not postgres:
            _tune(session)
            renewed, held = _open_page(conn, ctx, now)
            _check_page(ctx, renewed, held)
        apply_page(session, page, items, token, fresh=fresh)
        if after is not None:
            after.result()
        counts = dict(ctx.counts)
        for key, n in [*page.counts.items(), ("pages", 1)]:
            counts[key] = counts.get(key, 0) + n
        if postgres:
            renewed, held, counted = conn.exec_driver_sql(
                _CLOSE_PAGE_PG,
                {
                    "until": now + LOCK_TTL,
                    "now": now,
                    "lock": lock_name(ctx.connection.id),
                    "owner": ctx.owner,
                    "checkpoint": json.dumps(state),
                    "cid": ctx.connection.id,
                    "entity": ent.canonical,
                    "counts": json.dumps(counts),
                    "run": ctx.run_id,
                    "flush": ctx.flush,
                },
            ).one()[:3]
            _check_page(ctx, renewed, held)
        else:
            c, r = SyncCursor.__table__, SyncRun.__table__  # type: ignore[attr-defined]
            conn.execute(
                c.update()
                .where(c.c.connection_id == ctx.connection.id, c.c.entity == ent.canonical)
                .values(checkpoint=state, updated_at=now)
            )
            counted = conn.execute(
                r.update().where(r.c.id == ctx.run_id).values(counts=counts)
            ).rowcount
        if not counted:
            raise Conflict(f"run {ctx.run_id} of connection {ctx.connection.name} is gone")
    ctx.counts = counts  # committed: the pages in flight after this one count from here
    if progress:
        progress(ent.canonical, len(items))


# PostgreSQL: a page transaction closes with one statement (a round trip less per
# statement, and no statement compiled), doing what ``_open_page`` and the cursor and
# run updates of ``_commit_page`` do on SQLite. The run lock is renewed and the
# connection row locked when the page closes: pages written while the page before them
# commits (see _commit_page) would otherwise wait for its lock on the lease row from
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


def _open_page(conn: sa.Connection, ctx: Ctx, now: datetime) -> tuple[int, int]:
    """(run lock renewed, connection row held)."""
    lock = LeaseLock.__table__  # type: ignore[attr-defined]
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


def checkpoint_wal(db_url: str | None) -> None:
    """SQLite: copy the write-ahead log of a large run back into the database now
    (PASSIVE: it waits for nobody), so the next writer's commit does not pay for it."""
    from mno.store.db import get_engine, is_sqlite

    engine = get_engine(db_url)
    if not is_sqlite(engine):
        return
    raw = engine.raw_connection()  # autocommit: the checkpoint runs outside a transaction
    try:
        raw.cursor().execute("PRAGMA wal_checkpoint(PASSIVE)")
    finally:
        raw.close()


def wait_for_flush() -> bool:
    """Whether a page transaction on PostgreSQL waits for its WAL to reach disk
    (``sync.synchronous_commit`` in the profile; off by default, see ``_CLOSE_PAGE_PG``)."""
    from mno import settings

    return bool(settings.profile_value("sync.synchronous_commit", False))


def _tune(session: Session) -> None:
    """SQLite: a larger page cache and fewer WAL checkpoints for this connection while it
    writes large pages of records (per-connection settings; durability is unchanged)."""
    conn = session.connection()
    info = conn.connection.info  # lives as long as the database connection
    if info.get("mno.sync.tuned"):
        return  # set on an earlier page: a statement less, and a wait less, per page
    conn.exec_driver_sql("PRAGMA cache_size=-131072")
    conn.exec_driver_sql("PRAGMA wal_autocheckpoint=16384")
    info["mno.sync.tuned"] = True


def _save_counts(session: Session, ctx: Ctx) -> None:
    session.execute(
        sa.update(SyncRun).where(SyncRun.id == ctx.run_id).values(counts=dict(ctx.counts))  # type: ignore[arg-type]
    )


def _cursor(session: Session, connection_id: uuid.UUID, entity: str) -> SyncCursor:
    from sqlmodel import select

    row = session.exec(
        select(SyncCursor).where(
            SyncCursor.connection_id == connection_id, SyncCursor.entity == entity
        )
    ).first()
    if row is None:
        row = SyncCursor(connection_id=connection_id, entity=entity)
        session.add(row)
        session.flush()
    return row
