"""The sync engine: pull pages with per-page checkpoints, detect changes by content hash
in batches, resolve conflicts, detect deletes, queue and deliver pushes.

Guarantees:

- A page's canonical records, id maps, change rows (the per-record audit trail), outbox
  events, queued pushes and the cursor checkpoint commit in ONE transaction; a crash
  resumes from the last committed page (at least once; hashes make replays no-ops).
- A full sync sweeps deletions only after the last page was committed, using a token
  stamped on every id map it saw; an interrupted full sync deletes nothing.
- Runs of one connection never overlap: a named lock ``sync:<connection id>`` is taken
  at start and renewed in every page transaction; losing it aborts the run.
- After 3 consecutive failed runs a connection is in recovery mode for 24 h (Maestrano)
  and is skipped unless forced.
"""

from __future__ import annotations

import json
import random
import sys
import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from mno import clock
from mno.errors import Conflict, MnoError
from mno.store import audit, leases, outbox
from mno.store.db import session_scope
from mno.store.models.core import Event, LeaseLock
from mno.store.models.sync import (
    SyncChange,
    SyncConflict,
    SyncConnection,
    SyncConnector,
    SyncCursor,
    SyncIdMap,
    SyncPush,
    SyncRecord,
    SyncRun,
)
from mno.sync import bulk, mapping
from mno.sync.spec import ConnectorSpec, Entity

if TYPE_CHECKING:
    from sqlmodel import Session

    from mno.sync.rest import RestClient

RECOVERY_FAILURES = 3
RECOVERY_FOR = timedelta(hours=24)
LOCK_TTL = timedelta(minutes=2)
PUSH_BATCH = 50
FRESH_IDS = 1_000_000  # an initial sync remembers up to this many ids (see Ctx.fresh)
CHECKPOINT_AFTER_PAGES = 20  # SQLite: checkpoint the WAL after a run that wrote this many

ProgressFn = Callable[[str, int], None]


def lock_name(connection_id: uuid.UUID) -> str:
    return f"sync:{connection_id}"


@dataclass
class Ctx:
    """What one run needs while it pulls an entity."""

    run_id: uuid.UUID
    connection: SyncConnection
    spec: ConnectorSpec
    entity: Entity
    owner: str
    source: str
    targets: list[uuid.UUID] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=dict)
    flush: bool = True  # PostgreSQL: a page commit waits for its WAL flush (_OPEN_PAGE_PG)
    # the external ids this pass mapped, while the pass started with none of the entity
    # mapped (an initial sync): a page holding none of them needs no lookup (see
    # apply_page); None when lookups are needed
    fresh: set[str] | None = None

    def bump(self, key: str, n: int = 1) -> None:
        self.counts[key] = self.counts.get(key, 0) + n


# -- pages ---------------------------------------------------------------------------------


def fetch_page(
    client: RestClient, entity: Entity, since: str | None, position: dict[str, Any]
) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
    """One page: (raw records, next position or None when the stop condition holds)."""
    pg = entity.pagination
    params: dict[str, Any] = dict(entity.list.params)
    if since and entity.incremental:
        params[entity.incremental.param] = since
    if pg.size_param:
        params[pg.size_param] = pg.size
    path = entity.list.path
    if pg.type == "page":
        params[pg.param] = position.get("page", pg.start)  # type: ignore[index]
    elif pg.type == "offset":
        params[pg.param] = position.get("offset", 0)  # type: ignore[index]
    elif pg.type == "cursor" and position.get("cursor"):
        params[pg.param] = position["cursor"]  # type: ignore[index]
    elif pg.type == "link" and position.get("url"):
        path, params = position["url"], {}
    body, response = client.get_json(path, params or None)
    records = mapping.get_path(body, entity.records) or []
    if not isinstance(records, list):
        raise MnoError(f"records path {entity.records!r} is not a list in the response")
    n = len(records)
    nxt: dict[str, Any] | None = None
    if pg.type == "page":
        nxt = {"page": position.get("page", pg.start) + 1}
    elif pg.type == "offset":
        nxt = {"offset": position.get("offset", 0) + n}
    elif pg.type == "cursor":
        token = mapping.get_path(body, pg.next_path or "")
        nxt = {"cursor": token} if token else None
    elif pg.type == "link":
        url = response.links.get("next", {}).get("url")
        nxt = {"url": url} if url else None
    if nxt is not None and n == 0:
        nxt = None
    if nxt is not None and pg.stop == "short" and pg.type in ("page", "offset") and n < pg.size:
        nxt = None
    if nxt is not None and pg.stop == "total":
        total = mapping.get_path(body, pg.total_path or "")
        done = (
            nxt.get("offset") if pg.type == "offset" else (nxt.get("page", 1) - pg.start) * pg.size
        )
        if total is not None and done is not None and int(done) >= int(total):
            nxt = None
    return records, nxt


# -- one page in one transaction -------------------------------------------------------------


@dataclass(slots=True)
class Pulled:
    external_id: str
    data: dict[str, Any]
    digest: str
    updated_at: datetime | None
    deleted: bool
    data_json: str  # ``data`` as compact JSON, serialised once for every row that holds it
    # prepared for the case the record is new: record, id map, change and event ids, the
    # driver-ready updated_at and the record.created payload
    new_row: tuple[str, str, str, str, Any, str] | None = None
    # PostgreSQL: the same rows as COPY text lines (the values that vary per row) of the
    # record, id map, change and event
    new_copy: tuple[str, str, str, str] | None = None


@dataclass(frozen=True)
class NewRows:
    """What ``map_page`` needs to prepare the rows of new records ahead of the write."""

    postgres: bool
    entity: str
    source: str

    def prepare(self, items: list[Pulled]) -> None:
        time_v = bulk.time_value(self.postgres)
        ids = bulk.hex_ids(4 * len(items))
        head = f'"entity":{json.dumps(self.entity)},"version":1,"source":{json.dumps(self.source)}'
        dashed = bulk.dashed
        if self.postgres:
            copy_json, copy_text, copy_time = bulk.copy_json, bulk.copy_text, bulk.copy_time
            for i, it in enumerate(items):
                rid, map_id, change_id, event_id = ids[4 * i : 4 * i + 4]
                data = copy_json(it.data_json)
                it.new_copy = (
                    f"{rid}\t{data}\t{it.digest}\t{copy_time(it.updated_at)}\n",
                    f"{map_id}\t{copy_text(it.external_id)}\t{rid}\t{it.digest}\n",
                    f"{change_id}\t{rid}\n",
                    f'{event_id}\t{{"record_id":"{dashed(rid)}",{copy_json(head)},"data":{data}}}\n',
                )
            return
        for i, it in enumerate(items):
            rid = ids[4 * i]
            it.new_row = (
                rid,
                ids[4 * i + 1],
                ids[4 * i + 2],
                ids[4 * i + 3],
                time_v(it.updated_at),
                f'{{"record_id":"{dashed(rid)}",{head},"data":{it.data_json}}}',
            )


def map_page(
    entity: Entity, raws: list[dict[str, Any]], new: NewRows | None = None
) -> list[Pulled]:
    """External records → canonical data, content hash and JSON, and with ``new`` the
    rows each would write if it is new. This runs on the fetch thread, in parallel with
    the previous page's database work (SQLite and psycopg release the GIL while they
    write), so what it prepares costs the write path nothing."""
    data_of = mapping.mapper(entity.fields())
    id_of = mapping.getter(entity.id)
    updated_of = mapping.getter(entity.updated_at) if entity.updated_at else None
    flag = entity.deleted.flag if entity.deleted else None
    deleted_of = mapping.getter(flag) if flag else None
    ignore = entity.ignore_fields
    parse_time, hash_and_json = mapping.parse_time, mapping.hash_and_json
    out: dict[str, Pulled] = {}
    for raw in raws:
        ext = id_of(raw)
        if ext is None:
            continue
        data = data_of(raw)
        ext = str(ext)
        digest, text = hash_and_json(data, ignore)
        out[ext] = Pulled(
            ext,
            data,
            digest,
            parse_time(updated_of(raw)) if updated_of else None,
            bool(deleted_of(raw)) if deleted_of else False,
            text,
        )
    items = list(out.values())  # the last copy of an id within a page wins
    if new is not None:
        new.prepare(items)
    return items


def _now_row(now: datetime) -> dict[str, Any]:
    return {"id": uuid.uuid4(), "created_at": now, "updated_at": now}


_ETYPE = {"create": "record.created", "update": "record.updated", "delete": "record.deleted"}
_CHANGE_COLS = (
    "id",
    "created_at",
    "updated_at",
    "run_id",
    "record_id",
    "tenant_id",
    "entity",
    "action",
    "source",
    "before",
    "after",
)
_EVENT_COLS = ("id", "created_at", "updated_at", "type", "tenant_id", "payload")


@dataclass(slots=True)
class Known:
    """A pulled external id already mapped: its id map and canonical record."""

    id: uuid.UUID
    record_id: uuid.UUID
    pulled_hash: str | None
    pushed_hash: str | None
    content_hash: str
    data_json: str  # the record's data as stored (JSON text), parsed only when needed
    version: int
    source_updated_at: datetime | None
    deleted_at: datetime | None

    @property
    def data(self) -> dict[str, Any]:
        return json.loads(self.data_json)  # type: ignore[no-any-return]


def _known(
    conn: sa.Connection, w: bulk.Rows, ctx: Ctx, external_ids: list[str]
) -> dict[str, Known]:
    """The page's external ids that are already mapped, in two index lookups (id maps by
    external id, then their records by id) rather than a join, whose plan PostgreSQL may
    turn into a scan of every record while the tables grow during a large sync."""
    m, r = SyncIdMap.__table__, SyncRecord.__table__  # type: ignore[attr-defined]
    cols = (m.c.id, m.c.external_id, m.c.record_id, m.c.pulled_hash, m.c.pushed_hash)
    mine = sa.and_(m.c.connection_id == ctx.connection.id, m.c.entity == ctx.entity.canonical)
    if w.postgres:
        # one unique-index probe per external id: the LATERAL subquery with LIMIT 1 keeps
        # the planner from matching the connection's id maps first and filtering them
        # (its choice while the table has no statistics yet, costing O(rows) per page)
        from sqlalchemy.dialects import postgresql

        ext = (
            sa.func.unnest(sa.bindparam("ext", external_ids, type_=postgresql.ARRAY(sa.String)))
            .table_valued("value")
            .render_derived(name="x")
        )
        hit = sa.select(*cols).where(mine, m.c.external_id == ext.c.value).limit(1).lateral("y")
        maps = conn.execute(sa.select(hit).select_from(ext.join(hit, sa.true()))).all()
    else:
        maps = conn.execute(
            sa.select(*cols).where(mine, w.among(m.c.external_id, external_ids))
        ).all()
    if not maps:
        return {}
    records = {
        row.id: row
        for row in conn.execute(
            sa.select(
                r.c.id,
                r.c.content_hash,
                sa.cast(r.c.data, sa.Text).label("data_json"),
                r.c.version,
                r.c.source_updated_at,
                r.c.deleted_at,
            ).where(w.among(r.c.id, [x.record_id for x in maps]))
        )
    }
    out: dict[str, Known] = {}
    for x in maps:
        rec = records.get(x.record_id)
        if rec is not None:
            out[x.external_id] = Known(
                x.id,
                x.record_id,
                x.pulled_hash,
                x.pushed_hash,
                rec.content_hash,
                rec.data_json,
                rec.version,
                rec.source_updated_at,
                rec.deleted_at,
            )
    return out


def apply_page(session: Session, ctx: Ctx, items: list[Pulled], seen_token: str | None) -> None:
    """Upsert one page of pulled records with set-based change detection.

    New records are the bulk of an initial sync. Each writes four rows (record, id map,
    change, event), prepared as driver-ready tuples and inserted with one statement per
    table (``bulk.Rows``). Its change row is compact: ``after`` stays NULL because a
    create's after-state is the record's first version, which ``iter_changes`` reads
    back from the next change's before-state or from the record itself."""
    if not items:
        return
    conn = session.connection()
    w = bulk.Rows(conn)
    now = clock.now()
    now_v = w.time(now)
    m, r = SyncIdMap.__table__, SyncRecord.__table__  # type: ignore[attr-defined]
    cid, ent = ctx.connection.id, ctx.entity.canonical
    tenant_id = ctx.connection.tenant_id
    tenant_v, cid_v, run_v = w.uid(tenant_id), w.uid(cid), w.uid(ctx.run_id)
    external_ids = [i.external_id for i in items]
    if ctx.fresh is not None and ctx.fresh.isdisjoint(external_ids):
        # an initial sync's page of ids it has not mapped yet: none is known, since this
        # run holds the connection's lock, checked in every page transaction, and only a
        # run holding it maps ids
        known: dict[str, Known] = {}
    else:
        known = _known(conn, w, ctx, external_ids)
    # created records: only the values that vary per row (see the inserts below)
    new_records: list[Any] = []  # tuples, or COPY text lines on PostgreSQL
    new_maps: list[Any] = []
    new_changes: list[Any] = []
    new_events: list[Any] = []
    rec_updates: list[tuple[Any, ...]] = []  # driver-ready, for Rows.update
    rec_deletes: list[dict[str, Any]] = []
    map_updates: list[tuple[Any, ...]] = []  # driver-ready, for Rows.update
    changes: list[tuple[Any, ...]] = []
    conflicts: list[dict[str, Any]] = []
    events: list[tuple[Any, ...]] = []
    pushes: list[str] = []  # record ids (hex)
    repush_self: list[uuid.UUID] = []
    seen_only: list[uuid.UUID] = []

    ids = iter(bulk.hex_ids(2 * len(known) + 1))  # a change and an event per known id
    src = json.dumps(ctx.source)
    ent_json = json.dumps(ent)
    prepare = NewRows(w.postgres, ent, ctx.source)

    def change(
        action: str, rid: uuid.UUID, before_json: str | None, after_json: str | None, version: int
    ) -> None:
        rid_hex = rid.hex
        changes.append(
            (
                next(ids),
                now_v,
                now_v,
                run_v,
                rid_hex,
                tenant_v,
                ent,
                action,
                ctx.source,
                before_json,
                after_json,
            )
        )
        payload = (
            f'{{"record_id":"{rid}","entity":{ent_json},"version":{version},'
            f'"source":{src},"data":{after_json or "null"}}}'
        )
        events.append((next(ids), now_v, now_v, _ETYPE[action], tenant_v, payload))
        pushes.append(rid_hex)

    for it in items:
        row = known.get(it.external_id)
        if row is None:
            if it.deleted:
                continue
            if it.new_row is None and it.new_copy is None:
                prepare.prepare([it])
            if it.new_copy is not None:
                rec_line, map_line, change_line, event_line = it.new_copy
                new_records.append(rec_line)
                new_maps.append(map_line)
                new_changes.append(change_line)
                new_events.append(event_line)
                pushes.append(rec_line[:32])  # the record id, 32 hex digits
                continue
            rid, map_id, change_id, event_id, updated_v, payload = it.new_row  # type: ignore[misc]
            new_records.append((rid, it.data_json, it.digest, updated_v))
            new_maps.append((map_id, it.external_id, rid, it.digest))
            new_changes.append((change_id, rid))
            new_events.append((event_id, payload))
            pushes.append(rid)
            continue
        if it.deleted:
            if row.deleted_at is None:
                rec_deletes.append(
                    {
                        "b_id": row.record_id,
                        "version": row.version + 1,
                        "source_updated_at": it.updated_at or now,
                        "deleted_at": now,
                        "updated_at": now,
                    }
                )
                change("delete", row.record_id, row.data_json, None, row.version + 1)
                ctx.bump("deleted")
            else:
                ctx.bump("unchanged")
            seen_only.append(row.id)
            continue
        app_changed = it.digest != row.pulled_hash
        echo = it.digest == row.pushed_hash
        same = it.digest == row.content_hash and row.deleted_at is None
        if same or echo or not app_changed:
            if same or echo:
                if row.pulled_hash != it.digest:
                    map_updates.append((it.digest, now_v, w.uid(row.id)))
                else:
                    seen_only.append(row.id)
            else:
                seen_only.append(row.id)
            ctx.bump("echo" if echo and not same else "unchanged")
            continue
        platform_changed = row.content_hash not in (row.pulled_hash, row.pushed_hash)
        if platform_changed:
            pref = ctx.connection.preemption
            if pref:
                winner, rule = pref, f"preemption:{pref}"
            else:
                app_t, plat_t = it.updated_at, row.source_updated_at
                winner = "app" if (app_t and (plat_t is None or app_t >= plat_t)) else "platform"
                rule = "newest"
            conflicts.append(
                {
                    **_now_row(now),
                    "run_id": ctx.run_id,
                    "record_id": row.record_id,
                    "connection_id": cid,
                    "entity": ent,
                    "winner": winner,
                    "rule": rule,
                    "platform_data": row.data,
                    "app_data": it.data,
                }
            )
            ctx.bump("conflicts")
            if winner == "platform":
                map_updates.append((it.digest, now_v, w.uid(row.id)))
                repush_self.append(row.record_id)
                continue
        rec_updates.append(
            (
                it.data_json,
                it.digest,
                row.version + 1,
                w.time(it.updated_at or now),
                now_v,
                w.uid(row.record_id),
            )
        )
        map_updates.append((it.digest, now_v, w.uid(row.id)))
        change(
            "update",
            row.record_id,
            row.data_json if row.deleted_at is None else None,
            it.data_json,
            row.version + 1,
        )
        ctx.bump("updated")

    if new_records:
        stamp = {"created_at": now_v, "updated_at": now_v}
        # PostgreSQL: COPY text lines prepared by the fetch thread; SQLite: tuples
        insert = w.copy if w.postgres else w.insert
        insert(
            r,
            ("id", "data", "content_hash", "source_updated_at"),
            new_records,
            {**stamp, "tenant_id": tenant_v, "entity": ent, "version": 1},
        )
        insert(
            m,
            ("id", "external_id", "record_id", "pulled_hash"),
            new_maps,
            {
                **stamp,
                "connection_id": cid_v,
                "entity": ent,
                "last_pulled_at": now_v,
                "seen_token": seen_token,
            },
        )
        # compact change rows: no before, no after (see iter_changes)
        insert(
            SyncChange.__table__,  # type: ignore[attr-defined]
            ("id", "record_id"),
            new_changes,
            {
                **stamp,
                "run_id": run_v,
                "tenant_id": tenant_v,
                "entity": ent,
                "action": "create",
                "source": ctx.source,
            },
        )
        insert(
            Event.__table__,  # type: ignore[attr-defined]
            ("id", "payload"),
            new_events,
            {**stamp, "type": "record.created", "tenant_id": tenant_v},
        )
        ctx.bump("created", len(new_records))
        if ctx.fresh is not None:
            ctx.fresh.update(it.external_id for it in items if it.external_id not in known)
            if len(ctx.fresh) > FRESH_IDS:
                ctx.fresh = None  # bounded memory: look up again from here on
    if rec_updates:
        w.update(
            r,
            ("data", "content_hash", "version", "source_updated_at", "updated_at"),
            rec_updates,
            same={"deleted_at": None},
        )
    if rec_deletes:
        conn.execute(
            r.update()
            .where(r.c.id == sa.bindparam("b_id"))
            .values(
                version=sa.bindparam("version"),
                source_updated_at=sa.bindparam("source_updated_at"),
                deleted_at=sa.bindparam("deleted_at"),
                updated_at=sa.bindparam("updated_at"),
            ),
            rec_deletes,
        )
    if map_updates:
        w.update(
            m,
            ("pulled_hash", "last_pulled_at"),
            map_updates,
            same={"seen_token": seen_token} if seen_token else None,
        )
    if seen_token and seen_only:
        conn.execute(m.update().where(m.c.id.in_(seen_only)).values(seen_token=seen_token))
    w.insert(SyncChange.__table__, _CHANGE_COLS, changes)  # type: ignore[attr-defined]
    if conflicts:
        conn.execute(SyncConflict.__table__.insert(), conflicts)  # type: ignore[attr-defined]
    w.insert(Event.__table__, _EVENT_COLS, events)  # type: ignore[attr-defined]
    if ctx.targets and pushes:
        queue_pushes(session, ctx.targets, ent, [uuid.UUID(hex=h) for h in pushes], ctx.run_id)
    if repush_self and ctx.connection.push_enabled and ctx.entity.push:
        queue_pushes(session, [cid], ent, repush_self, ctx.run_id)
    ctx.bump("fetched", len(items))


def queue_pushes(
    session: Session,
    targets: list[uuid.UUID],
    entity: str,
    record_ids: list[uuid.UUID],
    run_id: uuid.UUID | None,
) -> int:
    if not targets or not record_ids:
        return 0
    now = clock.now()
    rows = [
        {
            **_now_row(now),
            "connection_id": t,
            "record_id": rid,
            "entity": entity,
            "run_id": run_id,
            "status": "pending",
            "attempts": 0,
            "next_attempt_at": now,
        }
        for t in targets
        for rid in record_ids
    ]
    session.connection().execute(SyncPush.__table__.insert(), rows)  # type: ignore[attr-defined]
    return len(rows)


def push_targets(session: Session, connection: SyncConnection, entity: str) -> list[uuid.UUID]:
    """The tenant's other connections that push this entity."""
    from sqlmodel import select

    out = []
    rows = session.exec(
        select(SyncConnection, SyncConnector)
        .where(SyncConnection.tenant_id == connection.tenant_id)
        .where(SyncConnection.id != connection.id)
        .where(SyncConnection.push_enabled == True)  # noqa: E712
        .where(SyncConnection.connector_id == SyncConnector.id)
    ).all()
    for conn_row, connector in rows:
        if entity not in conn_row.entities:
            continue
        spec = ConnectorSpec.model_validate(connector.spec)
        if any(e.canonical == entity and e.push for e in spec.entities):
            out.append(conn_row.id)
    return out


def ignored_fields(session: Session, tenant_id: uuid.UUID, entity: str) -> list[str]:
    """The volatile fields the tenant's connectors leave out of this entity's hash."""
    from sqlmodel import select

    out: set[str] = set()
    rows = session.exec(
        select(SyncConnector.spec)
        .where(SyncConnection.tenant_id == tenant_id)
        .where(SyncConnection.connector_id == SyncConnector.id)
    ).all()
    for spec in rows:
        for e in spec.get("entities", []):
            if e.get("canonical") == entity:
                out.update(e.get("ignore_fields") or [])
    return sorted(out)


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


# -- runs ----------------------------------------------------------------------------------


def in_recovery(connection: SyncConnection) -> datetime | None:
    """When recovery mode ends, or None when the connection is not in it."""
    if connection.consecutive_failures < RECOVERY_FAILURES or connection.last_failure_at is None:
        return None
    until = connection.last_failure_at + RECOVERY_FOR
    return until if until > clock.now() else None


def start_run(
    session: Session,
    connection: SyncConnection,
    owner: str,
    *,
    entity: str | None,
    full: bool,
    force: bool,
) -> SyncRun:
    if connection.paused and not force:
        raise Conflict(f"connection {connection.name} is paused", "resume it or use --force")
    until = in_recovery(connection)
    if until and not force:
        raise Conflict(
            f"connection {connection.name} is in recovery mode after "
            f"{connection.consecutive_failures} failed runs until {until.isoformat()}",
            "use --force",
        )
    if not leases.acquire_lock(session, lock_name(connection.id), owner, LOCK_TTL):
        holder = leases.lock_holder(session, lock_name(connection.id))
        raise Conflict(
            f"connection {connection.name} is already syncing",
            f"held by {holder[0] if holder else '?'}",
        )
    # a run left "running" by a crashed process is closed; its checkpoint stays
    session.execute(
        sa.update(SyncRun)
        .where(SyncRun.connection_id == connection.id, SyncRun.status == "running")  # type: ignore[arg-type]
        .values(status="error", error="interrupted", finished_at=clock.now())
    )
    run = SyncRun(connection_id=connection.id, entity=entity, full=full, forced=force, owner=owner)
    session.add(run)
    session.flush()
    return run


def run(
    connection_name: str | uuid.UUID,
    *,
    entity: str | None = None,
    full: bool = False,
    force: bool = False,
    owner: str | None = None,
    db_url: str | None = None,
    progress: ProgressFn | None = None,
    sleep: Callable[[float], None] | None = None,
    propagate: bool = True,
) -> SyncRun:
    """One foreground run of one connection: pull each entity, then push what is queued."""
    from mno.agents.base import make_owner
    from mno.sync import connections
    from mno.sync.rest import RestClient

    owner = owner or make_owner()

    def scope() -> Any:
        return session_scope(db_url)

    with scope() as session:
        conn = connections.get(session, connection_name)
        connector = session.get(SyncConnector, conn.connector_id)
        assert connector is not None
        spec = ConnectorSpec.model_validate(connector.spec)
        names = [entity] if entity else list(conn.entities)
        for name in names:
            spec.entity(name)
        sync_run = start_run(session, conn, owner, entity=entity, full=full, force=force)
        run_id = sync_run.id
    counts: dict[str, int] = {}
    errors: list[str] = []
    ok = 0
    try:
        client_kwargs: dict[str, Any] = {"sleep": sleep} if sleep else {}
        with RestClient(spec, conn.credentials, conn.base_url, **client_kwargs) as client:
            try:
                for name in names if conn.pull_enabled else []:
                    ent = spec.entity(name)
                    ctx = Ctx(run_id, conn, spec, ent, owner, source=conn.name)
                    try:
                        pull_entity(scope, client, ctx, full=full, progress=progress)
                        ok += 1
                    except Conflict:
                        raise
                    except MnoError as exc:
                        errors.append(f"{name}: {exc}")
                    finally:
                        for k, v in ctx.counts.items():
                            counts[k] = counts.get(k, 0) + v
                # push after pulling, so a change made in this app since the last run
                # is seen (and resolved as a conflict) before it could be overwritten
                if conn.push_enabled and not errors:
                    pushed = deliver(conn.id, owner, client=client, db_url=db_url)
                    counts["pushed"] = pushed[0]
                    counts["push_failed"] = pushed[1]
            finally:
                counts["requests"] = client.requests
    except Exception as exc:
        errors.append(str(exc) or type(exc).__name__)
    status = "success" if not errors else ("partial" if ok else "error")
    if counts.get("pages", 0) >= CHECKPOINT_AFTER_PAGES:
        checkpoint_wal(db_url)
    with scope() as session:
        finished = finish_run(session, run_id, conn.id, owner, status, counts, errors)
    # propagate: the tenant's other connections with queued pushes run now (pull, then
    # push) when they are idle; those runs do not propagate further
    if propagate and status != "error":
        for other in pending_targets(conn.tenant_id, exclude=conn.id, db_url=db_url):
            try:
                run(other, owner=make_owner(), db_url=db_url, sleep=sleep, propagate=False)
            except MnoError:
                pass  # busy, paused or in recovery: its own next run delivers
    return finished


def pending_targets(
    tenant_id: uuid.UUID, *, exclude: uuid.UUID | None = None, db_url: str | None = None
) -> list[uuid.UUID]:
    from sqlmodel import select

    with session_scope(db_url, write=False) as session:
        ids = list(
            session.exec(
                select(SyncPush.connection_id)
                .distinct()
                .where(SyncPush.status == "pending")
                .where(SyncPush.connection_id == SyncConnection.id)
                .where(SyncConnection.tenant_id == tenant_id)
                .where(SyncConnection.paused == False)  # noqa: E712
            )
        )
    return [i for i in ids if i != exclude]


def finish_run(
    session: Session,
    run_id: uuid.UUID,
    connection_id: uuid.UUID,
    owner: str,
    status: str,
    counts: dict[str, int],
    errors: list[str],
) -> SyncRun:
    run_row = session.get(SyncRun, run_id)
    conn = session.get(SyncConnection, connection_id)
    assert run_row is not None and conn is not None
    now = clock.now()
    run_row.status, run_row.counts, run_row.finished_at = status, counts, now
    run_row.error = "; ".join(errors)[:4000] or None
    if status == "error":
        conn.consecutive_failures += 1
        conn.last_failure_at = now
    else:
        conn.consecutive_failures = 0
    conn.last_run_at = now
    session.add_all([run_row, conn])
    leases.release_lock(session, lock_name(conn.id), owner)
    audit.record(
        session,
        "sync.run",
        target_type="sync_run",
        target_id=run_id,
        target=conn.name,
        after={"status": status, **counts},
        tenant_id=conn.tenant_id,
    )
    return run_row


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
    from concurrent.futures import ThreadPoolExecutor

    pool = ThreadPoolExecutor(1, thread_name_prefix="mno-sync-fetch")

    new = NewRows(postgres, ent.canonical, ctx.source)

    def fetch(pos: dict[str, Any]) -> tuple[list[Pulled], dict[str, Any] | None]:
        raws, nxt = fetch_page(client, ent, since_param, pos)
        return map_page(ent, raws, new), nxt

    ahead = pool.submit(fetch, position) if position is not None else None
    try:
        with _quick_switches():
            while ahead is not None:
                items, nxt = ahead.result()
                ahead = pool.submit(fetch, nxt) if nxt is not None else None
                cp = _commit_page(scope, ctx, items, nxt, cp, progress)
    finally:
        if ahead is not None:
            ahead.cancel()
        pool.shutdown(wait=True)
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


QUICK_SWITCH = 0.0005  # seconds


class _Switches:
    lock = threading.Lock()
    users = 0  # runs writing pages now
    saved = 0.0  # the interval before the first of them


@contextmanager
def _quick_switches() -> Iterator[None]:
    """While pages are written, let a thread that waits for the GIL get it after 0.5 ms
    instead of Python's 5 ms. The writing thread waits for the database a dozen times a
    page, and each time it wakes while the fetch thread maps the next page (pure Python,
    holding the GIL), the database idles until the writer gets the GIL back."""
    with _Switches.lock:
        if not _Switches.users:
            _Switches.saved = sys.getswitchinterval()
            sys.setswitchinterval(min(QUICK_SWITCH, _Switches.saved))
        _Switches.users += 1
    try:
        yield
    finally:
        with _Switches.lock:
            _Switches.users -= 1
            if not _Switches.users:
                sys.setswitchinterval(_Switches.saved)


def _commit_page(
    scope: Callable[[], Any],
    ctx: Ctx,
    items: list[Pulled],
    nxt: dict[str, Any] | None,
    cp: dict[str, Any],
    progress: ProgressFn | None,
) -> dict[str, Any]:
    """One transaction: the page's records, id maps, changes, events, pushes and the
    checkpoint (next position, newest updated_at seen). The run lock makes this run the
    only writer of the cursor, so the checkpoint is written without reading it back."""
    ent = ctx.entity
    newest = max((i.updated_at for i in items if i.updated_at), default=None)
    state = dict(cp)
    prev = mapping.parse_time(state.get("max_updated"))
    if newest and (prev is None or newest > prev):
        state["max_updated"] = mapping.format_time(newest, "iso8601")
    state["position"] = nxt
    with scope() as session:
        conn = session.connection()
        now = clock.now()
        # renew the run lock first: a run that lost it writes nothing; then the parents
        # of every row this page writes, checked once for the page (the hot tables have
        # no foreign keys to them, see migration 0502_sync): the connection row is locked
        # against removal, the run row by the update of its counts at the end
        if conn.dialect.name == "postgresql":
            renewed, held = _open_page_pg(conn, ctx, now)
        else:
            _tune(session)
            renewed, held = _open_page(conn, ctx, now)
        if not renewed:
            raise Conflict(f"connection {ctx.connection.name} lost its run lock to another run")
        if not held:
            raise Conflict(f"connection {ctx.connection.name} was removed")
        apply_page(session, ctx, items, cp["token"])
        if conn.dialect.name == "postgresql":
            counted = conn.exec_driver_sql(
                _CLOSE_PAGE_PG,
                {
                    "checkpoint": json.dumps(state),
                    "now": now,
                    "cid": ctx.connection.id,
                    "entity": ent.canonical,
                    "counts": json.dumps(ctx.counts),
                    "run": ctx.run_id,
                },
            ).rowcount
        else:
            c, r = SyncCursor.__table__, SyncRun.__table__  # type: ignore[attr-defined]
            conn.execute(
                c.update()
                .where(c.c.connection_id == ctx.connection.id, c.c.entity == ent.canonical)
                .values(checkpoint=state, updated_at=now)
            )
            counted = conn.execute(
                r.update().where(r.c.id == ctx.run_id).values(counts=dict(ctx.counts))
            ).rowcount
        if not counted:
            raise Conflict(f"run {ctx.run_id} of connection {ctx.connection.name} is gone")
    ctx.bump("pages")
    if progress:
        progress(ent.canonical, len(items))
    return state


# PostgreSQL: a page transaction opens and closes with one statement each (a round trip
# less per statement, and no statement compiled), doing what ``_open_page`` and the
# cursor and run updates of ``_commit_page`` do on SQLite.
#
# It also sets ``synchronous_commit = off`` for the transaction unless ``ctx.flush``: the
# commit returns before its WAL is flushed (the WAL writer flushes within a fraction of a
# second) instead of waiting for one disk flush per page. Only a crash of the database
# server itself can lose the last few page commits, and never part of one: the cursor
# checkpoint commits with its page's records, id maps, change rows and events, so the
# next run resumes from the last page that survived and fetches the lost pages again. An
# application crash loses nothing that was committed.
_OPEN_PAGE_PG = """WITH renewed AS (
    UPDATE lease_lock SET until = %(until)s, updated_at = %(now)s
    WHERE name = %(lock)s AND owner = %(owner)s RETURNING 1)
SELECT (SELECT count(*) FROM renewed),
    (SELECT count(*) FROM (SELECT 1 FROM sync_connection WHERE id = %(cid)s FOR KEY SHARE) AS c),
    set_config('synchronous_commit',
        CASE WHEN %(flush)s THEN current_setting('synchronous_commit') ELSE 'off' END, true)"""
_CLOSE_PAGE_PG = """WITH moved AS (
    UPDATE sync_cursor SET checkpoint = %(checkpoint)s::json, updated_at = %(now)s
    WHERE connection_id = %(cid)s AND entity = %(entity)s)
UPDATE sync_run SET counts = %(counts)s::json WHERE id = %(run)s"""


def _open_page_pg(conn: sa.Connection, ctx: Ctx, now: datetime) -> tuple[int, int]:
    """(run lock renewed, connection row held), and ``synchronous_commit``."""
    row = conn.exec_driver_sql(
        _OPEN_PAGE_PG,
        {
            "until": now + LOCK_TTL,
            "now": now,
            "lock": lock_name(ctx.connection.id),
            "owner": ctx.owner,
            "cid": ctx.connection.id,
            "flush": ctx.flush,
        },
    ).one()
    return int(row[0]), int(row[1])


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


def hold_connection(conn: sa.Connection, connection: SyncConnection) -> None:
    """Lock the connection's row until the transaction ends (``FOR KEY SHARE`` on
    PostgreSQL, what a foreign key takes for each row; SQLite has one writer at a time),
    so ``connections.remove`` waits for the transaction; raise when it is already gone."""
    c = SyncConnection.__table__  # type: ignore[attr-defined]
    held = conn.execute(
        sa.select(c.c.id).where(c.c.id == connection.id).with_for_update(read=True, key_share=True)
    ).first()
    if held is None:
        raise Conflict(f"connection {connection.name} was removed")


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
    (``sync.synchronous_commit`` in the profile; off by default, see ``_OPEN_PAGE_PG``)."""
    from mno import settings

    return bool(settings.profile_value("sync.synchronous_commit", False))


def _tune(session: Session) -> None:
    """SQLite: a larger page cache and fewer WAL checkpoints for this connection while it
    writes large pages of records (per-connection settings; durability is unchanged)."""
    conn = session.connection()
    conn.exec_driver_sql("PRAGMA cache_size=-131072")
    conn.exec_driver_sql("PRAGMA wal_autocheckpoint=16384")


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


# -- push ----------------------------------------------------------------------------------


def deliver(
    connection_id: uuid.UUID,
    owner: str,
    *,
    client: RestClient | None = None,
    db_url: str | None = None,
    renew: bool = False,
    limit: int = 10_000,
) -> tuple[int, int]:
    """Deliver queued pushes for one connection (caller holds its run lock).

    Returns (pushed, failed). Each write is followed by its id-map update (pushed hash,
    time) so the change is not pulled back as new (echo suppression)."""
    from mno.sync.rest import RestClient

    pushed = failed = 0
    own_client = client is None
    with session_scope(db_url) as session:
        conn = session.get(SyncConnection, connection_id)
        assert conn is not None
        connector = session.get(SyncConnector, conn.connector_id)
        assert connector is not None
        spec = ConnectorSpec.model_validate(connector.spec)
    if client is None:
        client = RestClient(spec, conn.credentials, conn.base_url)
    try:
        while pushed + failed < limit:
            with session_scope(db_url) as session:
                ids = leases.claim(
                    session,
                    SyncPush,
                    owner,
                    PUSH_BATCH,
                    LOCK_TTL,
                    where=SyncPush.__table__.c.connection_id == connection_id,  # type: ignore[attr-defined]
                    order_by=[SyncPush.__table__.c.created_at],  # type: ignore[attr-defined]
                )
            if not ids:
                break
            for push_id in ids:
                try:
                    push_one(db_url, client, spec, conn, push_id, owner)
                    pushed += 1
                except MnoError as exc:
                    failed += 1
                    with session_scope(db_url) as session:
                        row = session.get(SyncPush, push_id)
                        attempts = row.attempts if row else 1
                        leases.retry(
                            session,
                            SyncPush,
                            push_id,
                            owner,
                            leases.backoff(attempts),
                            str(exc),
                            status="pending" if attempts < 8 else "failed",
                        )
    finally:
        if own_client:
            client.close()
    return pushed, failed


def _app_has(idmap: SyncIdMap, content_hash: str) -> bool:
    """Whether the app's latest known state (the later of our last pull and last push)
    already has this content."""
    pushed_later = idmap.last_pushed_at is not None and (
        idmap.last_pulled_at is None or idmap.last_pushed_at >= idmap.last_pulled_at
    )
    return (idmap.pushed_hash if pushed_later else idmap.pulled_hash) == content_hash


def push_one(
    db_url: str | None,
    client: RestClient,
    spec: ConnectorSpec,
    conn: SyncConnection,
    push_id: uuid.UUID,
    owner: str,
) -> None:
    from sqlmodel import select

    with session_scope(db_url, write=False) as session:
        push = session.get(SyncPush, push_id)
        assert push is not None
        record = session.get(SyncRecord, push.record_id)
        idmap = session.exec(
            select(SyncIdMap).where(
                SyncIdMap.connection_id == conn.id,
                SyncIdMap.entity == push.entity,
                SyncIdMap.record_id == push.record_id,
            )
        ).first()
    ent = spec.entity(push.entity)
    external_id = idmap.external_id if idmap else None
    if record is not None and record.deleted_at is not None:
        if idmap is not None and ent.push and ent.push.delete and idmap.pushed_hash != "deleted":
            op = ent.push.delete
            client.request(op.method, op.path.format(id=external_id))
            with session_scope(db_url) as session:
                session.execute(
                    sa.update(SyncIdMap)
                    .where(SyncIdMap.id == idmap.id)  # type: ignore[arg-type]
                    .values(pushed_hash="deleted", last_pushed_at=clock.now())
                )
                leases.complete(session, SyncPush, [push_id], owner)
            return
        record = None  # nothing to write: never created there, or no delete operation
    if record is None or ent.push is None or (idmap and _app_has(idmap, record.content_hash)):
        with session_scope(db_url) as session:
            leases.complete(session, SyncPush, [push_id], owner, status="skipped")
        return
    body = mapping.push_body(ent, record.data)
    if idmap is None:
        if ent.push.create is None:
            raise MnoError(f"connector {spec.name} cannot create {push.entity}")
        op = ent.push.create
        response = client.request(op.method, op.path.format(id=""), body=body)
        answer = response.json() if response.content else {}
        external_id = str(mapping.get_path(answer, ent.push.id) or mapping.get_path(answer, ent.id))
    else:
        if ent.push.update is None:
            raise MnoError(f"connector {spec.name} cannot update {push.entity}")
        op = ent.push.update
        client.request(op.method, op.path.format(id=external_id), body=body)
    now = clock.now()
    with session_scope(db_url) as session:
        if idmap is None:
            hold_connection(session.connection(), conn)
            session.add(
                SyncIdMap(
                    connection_id=conn.id,
                    entity=push.entity,
                    external_id=str(external_id),
                    record_id=record.id,
                    pushed_hash=record.content_hash,
                    last_pushed_at=now,
                )
            )
        else:
            session.execute(
                sa.update(SyncIdMap)
                .where(SyncIdMap.id == idmap.id)  # type: ignore[arg-type]
                .values(pushed_hash=record.content_hash, last_pushed_at=now)
            )
        leases.complete(session, SyncPush, [push_id], owner)


def deliver_tenant(
    tenant_id: uuid.UUID, owner: str, *, exclude: uuid.UUID | None = None, db_url: str | None = None
) -> int:
    """Deliver pending pushes to the tenant's connections whose run lock is free."""
    from sqlmodel import select

    with session_scope(db_url, write=False) as session:
        ids = list(
            session.exec(
                select(SyncPush.connection_id)
                .distinct()
                .where(SyncPush.status == "pending")
                .where(SyncPush.connection_id == SyncConnection.id)
                .where(SyncConnection.tenant_id == tenant_id, SyncConnection.paused == False)  # noqa: E712
            )
        )
    done = 0
    for cid in ids:
        if cid == exclude:
            continue
        done += deliver_locked(cid, owner, db_url=db_url)
    return done


def deliver_locked(connection_id: uuid.UUID, owner: str, *, db_url: str | None = None) -> int:
    with session_scope(db_url) as session:
        if not leases.acquire_lock(session, lock_name(connection_id), owner, LOCK_TTL):
            return 0
    try:
        return deliver(connection_id, owner, db_url=db_url)[0]
    finally:
        with session_scope(db_url) as session:
            leases.release_lock(session, lock_name(connection_id), owner)


def due_connections(session: Session, limit: int = 10) -> list[uuid.UUID]:
    from sqlmodel import select

    now = clock.now()
    rows = session.exec(
        select(SyncConnection.id)
        .where(SyncConnection.paused == False)  # noqa: E712
        .where(sa.or_(SyncConnection.next_run_at.is_(None), SyncConnection.next_run_at <= now))  # type: ignore[union-attr]
        .order_by(SyncConnection.next_run_at)
        .limit(limit)
    ).all()
    return list(rows)


def schedule_next(
    session: Session, connection_id: uuid.UUID, interval: timedelta, jitter: float = 0.1
) -> None:
    """Next run after ``interval`` plus up to ``jitter`` × interval, so runs spread out."""
    nxt = clock.now() + interval * (1 + random.uniform(0, jitter))
    session.execute(
        sa.update(SyncConnection)
        .where(SyncConnection.id == connection_id)  # type: ignore[arg-type]
        .values(next_run_at=nxt)
    )


def iter_changes(session: Session, record_id: uuid.UUID) -> Iterator[SyncChange]:
    """A record's changes in order. A pulled create's compact change row (``after``
    NULL) gets its after-state back: the next change's before-state, or the record's
    data when nothing changed it since."""
    from sqlalchemy.orm.attributes import set_committed_value
    from sqlmodel import col, select

    rows = list(
        session.exec(
            select(SyncChange)
            .where(SyncChange.record_id == record_id)
            .order_by(col(SyncChange.seq))
        )
    )
    for i, row in enumerate(rows):
        if row.action == "create" and row.after is None:
            if i + 1 < len(rows):
                after = rows[i + 1].before
            else:
                record = session.get(SyncRecord, record_id)
                after = record.data if record is not None and record.deleted_at is None else None
            set_committed_value(row, "after", after)
    yield from rows
