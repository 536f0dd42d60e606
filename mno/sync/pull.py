"""Pulling one entity, the algorithm: page after page, fetch → map → validate → diff →
write → checkpoint, each page committed in one transaction with the cursor checkpoint
(the next page is prefetched and mapped meanwhile); then the pass's deletes and the
cursor's move. How the pages reach the database fast (threads, held connections,
interpreter and SQLite tuning) is ``page_writer``'s business; one page's diff and write
is ``pages``'.

A child stream (an entity with ``parent``) is listed per parent record instead, up to
the connector's ``concurrency`` parents at a time (``pull_children``). A full pass over a
page or offset listing re-checks the records it did not see before it deletes them
(``recheck_missing``): the listing may have shifted under the pass."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from functools import partial
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import quote

import sqlalchemy as sa
from sqlmodel import col, select

from mno import clock
from mno.errors import Conflict
from mno.store import leases, outbox
from mno.store.models.sync import (
    SyncChange,
    SyncCursor,
    SyncIdMap,
    SyncRecord,
    SyncRecordError,
    SyncRun,
)
from mno.store.types import table_of
from mno.sync import mapping, page_writer, schema
from mno.sync.pages import Ctx, NewRows, Pulled, apply_page, fetch_page, map_page
from mno.sync.push import push_targets, queue_pushes, row_stamp
from mno.sync.runlock import LOCK_TTL, lock_name

if TYPE_CHECKING:
    from sqlmodel import Session

    from mno.sync.rest import RestClient
    from mno.sync.spec import Entity, Parent

ProgressFn = Callable[[str, int], None]
_Page = tuple[list[Pulled], list[tuple[str, str]]]  # a page's valid and invalid records
# a full pass re-checks up to this many missing records one GET each; more are looked
# for in a second listing (see recheck_missing)
RECHECK_GETS = 200


def pull_entity(
    scope: Callable[[], Any],
    client: RestClient,
    ctx: Ctx,
    *,
    full: bool,
    progress: ProgressFn | None = None,
) -> None:
    """One pass over an entity: its pages in order (``pull_pages``), then the deletes
    the pass found and the cursor's move (``finish_pass``). An interrupted pass resumes
    from the checkpoint of its last committed page."""
    cp, engine = start_pass(scope, ctx, full=full)
    since = cp["since"]
    since_param = None
    if since and ctx.entity.incremental:
        since_at = cast(datetime, mapping.parse_time(since))  # a checkpoint's time, never None
        since_param = mapping.format_time(since_at, ctx.entity.incremental.format)
    if ctx.entity.parent is not None:
        cp = pull_children(scope, client, ctx, cp, engine, since_param, progress, full=full)
    else:
        cp = pull_pages(scope, client, ctx, cp, engine, since_param, progress)
    # the pass is complete: deletes, then the cursor moves and the checkpoint clears
    pull_deleted_since(scope, client, ctx, since_param)
    if full and cp.get("token"):
        recheck_missing(scope, client, ctx, cp)
    finish_pass(scope, ctx, cp, full=full)


def start_pass(scope: Callable[[], Any], ctx: Ctx, *, full: bool) -> tuple[dict[str, Any], Any]:
    """The pass's checkpoint (an interrupted pass's, or a new one) and the database
    engine; fills in the run's push targets and what ``Ctx`` needs for the pass."""
    ent = ctx.entity
    with scope() as session:
        _renew(session, ctx)
        engine = session.get_bind()
        ctx.targets = push_targets(session, ctx.connection, ent.canonical)
        ctx.flush = page_writer.wait_for_flush()
        m = table_of(SyncIdMap)
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
    return cp, engine


def pull_pages(
    scope: Callable[[], Any],
    client: RestClient,
    ctx: Ctx,
    cp: dict[str, Any],
    engine: Any,
    since: str | None,
    progress: ProgressFn | None,
) -> dict[str, Any]:
    """The pass's pages from the checkpoint ``cp`` on: they are fetched and mapped on the
    fetch thread ahead of the writer (``page_writer.Prefetch``), then diffed and written
    with their checkpoint in one transaction (``commit_page``, run by the
    ``PageWriter``; on SQLite with the pages after it that are fetched already, see
    ``PageWriter.groups``). Returns the checkpoint after the last page."""
    ent = ctx.entity
    position: dict[str, Any] | None = cp["position"]
    new = NewRows.of(ctx, engine.dialect.name == "postgresql")

    def fetch(pos: dict[str, Any]) -> tuple[_Page, dict[str, Any] | None]:
        raws, nxt = fetch_page(client, ent, since, pos)
        items, invalid = schema.split_invalid(ent, map_page(ent, raws, new))
        return (items, invalid), nxt

    if position is None:
        return cp
    # the next pages are fetched while this one is written; the checkpoint still moves
    # only after a page commits, so a crash re-fetches at most the pages fetched ahead
    ahead = page_writer.Prefetch(fetch, position)
    writer = page_writer.PageWriter(scope, engine)
    parent_of_some = ctx.listed is not None and any(
        e.parent is not None and e.parent.entity == ent.canonical for e in ctx.spec.entities
    )
    try:
        with writer.writing():
            while (got := ahead.take()) is not None:
                (items, invalid), nxt = got
                items, invalid, nxt, pages = _group(ahead, writer.groups, items, invalid, nxt)
                if parent_of_some:  # its child streams list the children of these
                    cast("dict[str, set[str]]", ctx.listed).setdefault(ent.canonical, set()).update(
                        it.external_id for it in items
                    )
                fresh = ctx.take_fresh(items)
                state = next_state(cp, items, nxt)
                commit = partial(
                    commit_page,
                    ctx=ctx,
                    items=items,
                    state=state,
                    token=cp["token"],
                    progress=progress,
                    fresh=fresh,
                    invalid=invalid,
                    pages=pages,
                )
                writer.write(items, commit)
                cp = state
            writer.wait()
    finally:
        ahead.close()
        writer.close()
    return cp


def _group(
    ahead: page_writer.Prefetch[_Page],
    limit: int,
    items: list[Pulled],
    invalid: list[tuple[str, str]],
    nxt: dict[str, Any] | None,
) -> tuple[list[Pulled], list[tuple[str, str]], dict[str, Any] | None, int]:
    """A page with the pages after it that are fetched already, while they hold fewer
    than ``limit`` records together and none of their external ids repeats (a page's
    lookup must see the records of the pages before it): (records, invalid records,
    position after the last page, pages)."""
    pages = 1
    if not limit or len(items) >= limit:
        return items, invalid, nxt, pages
    ids: set[str] | None = None
    while len(items) < limit and (more := ahead.ready()) is not None:
        (more_items, more_invalid), more_nxt = more
        if ids is None:
            ids = {it.external_id for it in items}
        more_ids = {it.external_id for it in more_items}
        if not ids.isdisjoint(more_ids):
            break
        ahead.take()
        items, invalid, nxt = items + more_items, invalid + more_invalid, more_nxt
        ids |= more_ids
        pages += 1
    return items, invalid, nxt, pages


def pull_children(
    scope: Callable[[], Any],
    client: RestClient,
    ctx: Ctx,
    cp: dict[str, Any],
    engine: Any,
    since: str | None,
    progress: ProgressFn | None,
    *,
    full: bool,
) -> dict[str, Any]:
    """A child stream's pass: its list is fetched for each parent record (every live
    parent on a full pass or while no child is mapped yet, else the parents that the
    parent's pass listed in this run), up to the connector's ``concurrency`` parents at a time, each
    child keeping its parent's external id in the field ``parent.key``. The children
    are written in pages of ``pagination.size`` records. An interrupted pass starts its
    parents again (replays are no-ops)."""
    ent = ctx.entity
    parent = cast("Parent", ent.parent)
    with scope() as session:
        parents = parent_ids(session, ctx, changed_only=not full and ctx.fresh is None)
    if not parents:
        return cp
    new = NewRows.of(ctx, engine.dialect.name == "postgresql")

    def fetch(pid: str) -> list[dict[str, Any]]:
        path = parent.path.replace("{id}", quote(pid, safe=""))
        raws: list[dict[str, Any]] = []
        pos: dict[str, Any] | None = {}
        while pos is not None:
            page, pos = fetch_page(client, ent, since, pos, path=path)
            raws.extend({**r, parent.key: pid} for r in page if isinstance(r, dict))
        return raws

    pool = ThreadPoolExecutor(ctx.spec.concurrency, thread_name_prefix="mno-sync-child")
    writer = page_writer.PageWriter(scope, engine)

    def write(raws: list[dict[str, Any]], last: bool) -> None:
        nonlocal cp
        items, invalid = schema.split_invalid(ent, map_page(ent, raws, new))
        state = next_state(cp, items, None if last else {})
        commit = partial(
            commit_page,
            ctx=ctx,
            items=items,
            state=state,
            token=cp["token"],
            progress=progress,
            fresh=ctx.take_fresh(items),
            invalid=invalid,
        )
        writer.write(items, commit)
        cp = state

    try:
        with writer.writing():
            batch: list[dict[str, Any]] = []
            for raws in pool.map(fetch, parents):
                batch.extend(raws)
                if len(batch) >= ent.pagination.size:
                    write(batch, last=False)
                    batch = []
            write(batch, last=True)
            writer.wait()
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        writer.close()
    return cp


def parent_ids(session: Session, ctx: Ctx, *, changed_only: bool) -> list[str]:
    """The external ids of a child stream's live parent records; with ``changed_only``
    only those the parent's pass listed in this run (on an incremental pass, the
    parents changed since the last one)."""
    parent = cast("Parent", ctx.entity.parent)
    m, r = table_of(SyncIdMap), table_of(SyncRecord)
    q = (
        sa.select(m.c.external_id)
        .join(r, r.c.id == m.c.record_id)
        .where(m.c.connection_id == ctx.connection.id, m.c.entity == parent.entity)
        .where(r.c.deleted_at.is_(None))
    )
    conn = session.connection()
    if not changed_only:
        return [row[0] for row in conn.execute(q.order_by(m.c.external_id))]
    listed = sorted((ctx.listed or {}).get(parent.entity, set()))
    out: list[str] = []
    for i in range(0, len(listed), 1000):
        chunk = listed[i : i + 1000]
        out += [row[0] for row in conn.execute(q.where(m.c.external_id.in_(chunk)))]
    return sorted(out)


def missing_ids(session: Session, ctx: Ctx, token: str) -> list[str]:
    """The external ids of live mapped records that the full pass ``token`` did not see."""
    m, r = table_of(SyncIdMap), table_of(SyncRecord)
    q = (
        sa.select(m.c.external_id)
        .join(r, r.c.id == m.c.record_id)
        .where(m.c.connection_id == ctx.connection.id, m.c.entity == ctx.entity.canonical)
        .where(sa.or_(m.c.seen_token.is_(None), m.c.seen_token != token))
        .where(r.c.deleted_at.is_(None))
    )
    return [row[0] for row in session.connection().execute(q)]


def recheck_missing(
    scope: Callable[[], Any], client: RestClient, ctx: Ctx, cp: dict[str, Any]
) -> None:
    """Before a full pass over a page or offset listing deletes the records it did not
    see, look for them again: a record inserted, removed or moved (by a change to the
    sort key) before the current offset shifts the listing under the pass, and the
    record that slid over the page boundary was never listed. With the entity's ``get``
    each missing record is fetched by id (404 or 410: gone), up to ``RECHECK_GETS`` of
    them; otherwise the listing is read a second time. Records found are written as the
    pass's own (seen, updated when changed); only the rest are deleted by the sweep."""
    ent = ctx.entity
    positional = ent.pagination.type in ("page", "offset") and ent.parent is None
    if ent.pagination.verify_deletes == "none" or not (ent.get or positional):
        return
    with scope() as session:
        missing = set(missing_ids(session, ctx, cp["token"]))
    if not missing:
        return
    ctx.bump("rechecked", len(missing))
    raws: list[Any] = []
    if ent.get is not None and (len(missing) <= RECHECK_GETS or not positional):
        from mno.sync.rest import HttpError

        for ext in sorted(missing):
            try:
                body, _ = client.get_json(ent.get.path.replace("{id}", quote(ext, safe="")))
            except HttpError as exc:
                if exc.status in (404, 410):
                    continue
                raise
            raw = mapping.get_path(body, ent.get.records)
            if isinstance(raw, dict):
                raws.append(raw)
        found = [it for it in map_page(ent, raws) if it.external_id in missing]
    else:
        found, pos = [], cast("dict[str, Any] | None", {})
        while pos is not None:
            page, pos = fetch_page(client, ent, None, pos)
            found.extend(it for it in map_page(ent, page) if it.external_id in missing)
    if not found:
        return
    items, invalid = schema.split_invalid(ent, found)
    commit_page(
        scope,
        lambda: None,
        ctx=ctx,
        items=items,
        state=cp,
        token=cp["token"],
        progress=None,
        fresh=False,
        invalid=invalid,
    )


def commit_page(
    scope: page_writer.Scope,
    wait_turn: Callable[[], object],
    *,
    ctx: Ctx,
    items: list[Pulled],
    state: dict[str, Any],
    token: str | None,
    progress: ProgressFn | None,
    fresh: bool,
    invalid: list[tuple[str, str]] | None = None,
    pages: int = 1,
) -> None:
    """One transaction: the page's records, id maps, changes, events, pushes and the
    checkpoint ``state``, with the run lock renewed and the connection's row held
    (``page_writer.open_page``/``close_page``). The page may be ``pages`` pages of the
    listing written together (``_group``); they count as that many.

    ``wait_turn()`` returns when the page before this one has committed (PostgreSQL
    writes pages side by side, see ``page_writer.PageWriter``): this page's rows are
    written meanwhile, and its checkpoint, counts and commit wait for it. If that page
    fails, this one rolls back too, so the cursor never passes a page that is not
    stored."""
    page = dataclasses.replace(ctx, counts={})  # this page's counts, added on commit
    with scope() as session:
        now = page_writer.open_page(session, ctx)
        apply_page(session, page, items, token, fresh=fresh)
        if invalid:
            record_errors(session, page, invalid, token, now)
        wait_turn()
        counts = dict(ctx.counts)
        for key, n in [*page.counts.items(), ("pages", pages)]:
            counts[key] = counts.get(key, 0) + n
        page_writer.close_page(session, ctx, now, state, counts)
    ctx.counts = counts  # committed: the pages in flight after this one count from here
    if progress:
        progress(ctx.entity.canonical, len(items))


def record_errors(
    session: Session,
    ctx: Ctx,
    invalid: list[tuple[str, str]],
    token: str | None,
    now: datetime,
) -> None:
    """The page's records that failed the entity's schema: one record error each, in
    the page's transaction, counted as ``invalid``. A full pass counts them as seen, so
    the sweep does not delete a known record because it stopped validating."""
    conn = session.connection()
    conn.execute(
        table_of(SyncRecordError).insert(),
        [
            {
                **row_stamp(now),
                "run_id": ctx.run_id,
                "connection_id": ctx.connection.id,
                "entity": ctx.entity.canonical,
                "external_id": ext[:200],
                "message": message,
            }
            for ext, message in invalid
        ],
    )
    if token:
        m = table_of(SyncIdMap)
        conn.execute(
            m.update()
            .where(m.c.connection_id == ctx.connection.id, m.c.entity == ctx.entity.canonical)
            .where(m.c.external_id.in_([ext for ext, _ in invalid]))
            .values(seen_token=token)
        )
    ctx.bump("invalid", len(invalid))


def next_state(
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


def finish_pass(scope: Callable[[], Any], ctx: Ctx, cp: dict[str, Any], *, full: bool) -> None:
    """A complete pass: a full pass deletes what it did not see, the cursor moves forward
    (``next_cursor``) and the checkpoint clears, and the run's counts are saved."""
    ent = ctx.entity
    with scope() as session:
        _renew(session, ctx)
        if full and cp.get("token"):
            gone = sweep_deletes(session, ctx, cp["token"])
            queue_pushes(session, ctx.targets, ent.canonical, gone, ctx.run_id)
        cur = _cursor(session, ctx.connection.id, ent.canonical)
        new = next_cursor(ent, cur.checkpoint or cp)
        cur.pass_started_at = mapping.parse_time((cur.checkpoint or cp).get("started_at"))
        if new is not None:
            old = mapping.parse_time(cur.value)
            if old is None or new > old:
                cur.value = mapping.format_time(new, "iso8601")
        cur.checkpoint = None
        cur.touch()
        session.add(cur)
        _save_counts(session, ctx)


def next_cursor(ent: Entity, cp: dict[str, Any]) -> datetime | None:
    """Where the next pass starts: the newest change this pass saw, but no later than the
    pass's start minus the entity's ``lookback``. The newest change seen alone would skip
    a record the API changed during the pass on a page already read (a listing in id
    order, or stamped by a clock behind the newest stamp): its stamp is after the pass
    started, so the next pass reads it. Records read again unchanged hash the same and
    count as unchanged."""
    newest = mapping.parse_time(cp.get("max_updated"))
    started = mapping.parse_time(cp.get("started_at"))
    if newest is None or started is None or ent.incremental is None:
        return newest
    return min(newest, started - ent.incremental.lookback_delta())


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
        m, r = table_of(SyncIdMap), table_of(SyncRecord)
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


def sweep_deletes(session: Session, ctx: Ctx, token: str) -> list[uuid.UUID]:
    """After a complete full pass: mapped records this pass did not see are deleted."""
    m, r = table_of(SyncIdMap), table_of(SyncRecord)
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
    r = table_of(SyncRecord)
    session.connection().execute(
        r.update()
        .where(r.c.id == sa.bindparam("b_id"))
        .values(deleted_at=now, updated_at=now, version=sa.bindparam("version")),
        [{"b_id": rid, "version": v + 1} for rid, _, v in rows],
    )
    tenant_id, ent = ctx.connection.tenant_id, ctx.entity.canonical
    session.connection().execute(
        table_of(SyncChange).insert(),
        [
            {
                **row_stamp(now),
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
    events: list[tuple[str, dict[str, Any], uuid.UUID | None]] = []
    for rid, _, v in rows:
        payload = {"record_id": str(rid), "entity": ent, "version": v + 1, "source": ctx.source}
        events.append(("record.deleted", {**payload, "data": None}, tenant_id))
        if ctx.connec_app is not None:  # as an API write announces it (pages.connec_app)
            connec = {**payload, "source_app_id": ctx.connec_app, "data": None}
            events.append((f"connec.{ent}.deleted", connec, tenant_id))
    outbox.emit_many(session, events)
    ctx.bump("deleted", len(rows))


def _renew(session: Session, ctx: Ctx) -> None:
    if not leases.acquire_lock(session, lock_name(ctx.connection.id), ctx.owner, LOCK_TTL):
        raise Conflict(f"connection {ctx.connection.name} lost its run lock to another run")


def _save_counts(session: Session, ctx: Ctx) -> None:
    session.execute(
        sa.update(SyncRun).where(col(SyncRun.id) == ctx.run_id).values(counts=dict(ctx.counts))
    )


def _cursor(session: Session, connection_id: uuid.UUID, entity: str) -> SyncCursor:
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
