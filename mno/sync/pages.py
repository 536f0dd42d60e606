"""One page of pulled records: fetch it, map and hash it (on the fetch thread, with the
rows a new record would write prepared ahead), and write it with set-based change
detection and conflict resolution, inside the page's transaction."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, cast

import sqlalchemy as sa

from mno import clock
from mno.errors import MnoError
from mno.store import bulk, outbox
from mno.store.models.sync import (
    SyncChange,
    SyncConflict,
    SyncConnection,
    SyncIdMap,
    SyncRecord,
)
from mno.store.types import table_of
from mno.sync import mapping
from mno.sync.push import queue_pushes, row_stamp
from mno.sync.spec import ConnectorSpec, Entity

if TYPE_CHECKING:
    import httpx
    from sqlmodel import Session

    from mno.sync.rest import RestClient

FRESH_IDS = 1_000_000  # an initial sync remembers up to this many ids (see Ctx.fresh)


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
    flush: bool = True  # PostgreSQL: a page commit waits for its WAL flush (page_writer)
    # the external ids this pass mapped, while the pass started with none of the entity
    # mapped (an initial sync): a page holding none of them needs no lookup (see
    # take_fresh); None when lookups are needed
    fresh: set[str] | None = None
    # the external ids each entity's pass listed in this run, shared by the run's
    # entities; a parent entity's are what its child streams list children of
    listed: dict[str, set[str]] | None = None
    # the connector's app id (text) when the entity is one of Connec's: every change the
    # pass writes is also announced as ``connec.<entity>.created|updated|deleted``, with
    # the payload of an API write and this app as its ``source_app_id`` (see connec_app)
    connec_app: str | None = None

    def bump(self, key: str, n: int = 1) -> None:
        self.counts[key] = self.counts.get(key, 0) + n

    def take_fresh(self, items: list[Pulled]) -> bool:
        """Whether none of a page's external ids can be mapped yet, so that the page
        needs no lookup: the pass started with none of the entity mapped (an initial
        sync) and no earlier page of it held one of these ids. None is mapped by anybody
        else either, since this run holds the connection's lock, checked in every page
        transaction, and only a run holding it maps ids. The page's ids are remembered
        for the pages after it, up to FRESH_IDS, then lookups resume."""
        if self.fresh is None:
            return False
        ids = [it.external_id for it in items]
        fresh = self.fresh.isdisjoint(ids)
        self.fresh.update(ids)
        if len(self.fresh) > FRESH_IDS:
            self.fresh = None  # bounded memory: look up again from here on
        return fresh


def connec_app(app_id: uuid.UUID, entity: str) -> str | None:
    """The ``source_app_id`` of a pass's Connec events: the connector's app, when
    ``entity`` is a Connec entity (canonical or custom); None otherwise (nobody can
    subscribe to it through Connec)."""
    from mno.connec.entities import all_entities  # lazy: JSON Schemas

    return str(app_id) if entity in all_entities() else None


def connec_payload(
    rid: str, entity_json: str, version: int, source_json: str, app: str, data: str | None
) -> str:
    """The payload of a ``connec.<entity>.*`` event, as ``connec.writes`` writes it."""
    return (
        f'{{"record_id":"{rid}","entity":{entity_json},"version":{version},'
        f'"source":{source_json},"source_app_id":"{app}","data":{data or "null"}}}'
    )


def fetch_page(
    client: RestClient,
    entity: Entity,
    since: str | None,
    position: dict[str, Any],
    *,
    path: str | None = None,
) -> tuple[list[dict[str, Any]], dict[str, Any] | None]:
    """One page: (raw records, next position or None when the stop condition holds).
    ``path`` replaces the entity's list path (a child stream's, per parent)."""
    pg = entity.pagination
    params: dict[str, Any] = dict(entity.list.params)
    if since and entity.incremental:
        params[entity.incremental.param] = since
    if pg.size_param:
        params[pg.size_param] = pg.size
    path = path or entity.list.path
    # the spec's validator requires a param for page, offset and cursor pagination
    param = cast(str, pg.param)
    if pg.type == "page":
        params[param] = position.get("page", pg.start)
    elif pg.type == "offset":
        params[param] = position.get("offset", 0)
    elif pg.type == "cursor" and position.get("cursor"):
        params[param] = position["cursor"]
    elif pg.type in ("link", "next_url") and position.get("url"):
        # the API's next URL carries its paging parameters; the list's static params are
        # merged in (an API may leave its filters out of the next URL)
        path, params = position["url"], dict(entity.list.params)
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
        nxt = {"url": _absolute(response, url)} if url else None
    elif pg.type == "next_url":
        url = mapping.get_path(body, pg.next_url_path or "")
        nxt = {"url": _absolute(response, str(url))} if url else None
    if nxt is not None and n == 0:
        nxt = None
    if nxt is not None and pg.stop == "short" and pg.type in ("page", "offset") and n < pg.size:
        nxt = None
    if nxt is not None and pg.stop == "total":
        total = (
            response.headers.get(pg.total_header)
            if pg.total_header
            else mapping.get_path(body, pg.total_path or "")
        )
        done = position.get("seen", 0) + n
        if total is not None and done >= int(total):
            nxt = None
        elif nxt is not None:
            nxt["seen"] = done
    return records, nxt


def _absolute(response: httpx.Response, url: str) -> str:
    """A next URL as given, or made absolute against the request's URL (``/x?page=2``)."""
    if url.startswith(("http://", "https://")):
        return url
    return str(response.request.url.join(url))


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
    # its connec.<entity>.created event when the pass announces them (Ctx.connec_app):
    # (id, payload), or a COPY text line on PostgreSQL
    new_connec: Any = None


@dataclass(frozen=True)
class NewRows:
    """What ``map_page`` needs to prepare the rows of new records ahead of the write."""

    postgres: bool
    entity: str
    source: str
    connec_app: str | None = None  # Ctx.connec_app

    @classmethod
    def of(cls, ctx: Ctx, postgres: bool) -> NewRows:
        return cls(postgres, ctx.entity.canonical, ctx.source, ctx.connec_app)

    def prepare(self, items: list[Pulled]) -> None:
        time_v = bulk.time_value(self.postgres)
        app = self.connec_app
        per = 4 if app is None else 5
        ids = bulk.hex_ids(per * len(items))
        head = f'"entity":{json.dumps(self.entity)},"version":1,"source":{json.dumps(self.source)}'
        connec_head = f'{head},"source_app_id":"{app}"'
        dashed = bulk.dashed
        if self.postgres:
            head_copy = bulk.copy_json(head)
            connec_copy = bulk.copy_json(connec_head)
            copy_text, copy_time = bulk.copy_text, bulk.copy_time
            for i, it in enumerate(items):
                rid, map_id, change_id, event_id = ids[per * i : per * i + 4]
                data = it.data_json.replace("\\", "\\\\")  # bulk.copy_json
                u = it.updated_at
                when = u.isoformat(" ") if u is not None and u.tzinfo is UTC else copy_time(u)
                it.new_copy = (
                    f"{rid}\t{data}\t{it.digest}\t{when}\n",
                    f"{map_id}\t{copy_text(it.external_id)}\t{rid}\t{it.digest}\n",
                    f"{change_id}\t{rid}\n",
                    f'{event_id}\t{{"record_id":"{dashed(rid)}",{head_copy},"data":{data}}}\n',
                )
                if app is not None:
                    it.new_connec = (
                        f'{ids[per * i + 4]}\t{{"record_id":"{dashed(rid)}",{connec_copy},'
                        f'"data":{data}}}\n'
                    )
            return
        for i, it in enumerate(items):
            rid = ids[per * i]
            it.new_row = (
                rid,
                ids[per * i + 1],
                ids[per * i + 2],
                ids[per * i + 3],
                time_v(it.updated_at),
                f'{{"record_id":"{dashed(rid)}",{head},"data":{it.data_json}}}',
            )
            if app is not None:
                it.new_connec = (
                    ids[per * i + 4],
                    f'{{"record_id":"{dashed(rid)}",{connec_head},"data":{it.data_json}}}',
                )


def map_page(
    entity: Entity, raws: list[dict[str, Any]], new: NewRows | None = None
) -> list[Pulled]:
    """External records → canonical data, content hash and JSON, and with ``new`` the
    rows each would write if it is new. This runs on the fetch thread, in parallel with
    the previous page's database work (SQLite and psycopg release the GIL while they
    write), so what it prepares costs the write path nothing."""
    out: dict[str, Pulled] = mapping.page_mapper(entity)(raws, Pulled)
    items = list(out.values())  # the last copy of an id within a page wins
    if new is not None:
        new.prepare(items)
    return items


_ETYPE = {"create": "record.created", "update": "record.updated", "delete": "record.deleted"}
# the Connec event of each action, for an entity: connec.{entity}.created, ...
_CONNEC = {action: "connec.{}." + etype.split(".")[1] for action, etype in _ETYPE.items()}
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
        return cast("dict[str, Any]", json.loads(self.data_json))


_KNOWN_PG = """SELECT m.id, m.external_id, m.record_id, m.pulled_hash, m.pushed_hash,
    r.content_hash, r.data_json, r.version, r.source_updated_at, r.deleted_at
FROM unnest(%b::text[]) AS x(value)
JOIN LATERAL (
    SELECT id, external_id, record_id, pulled_hash, pushed_hash FROM sync_id_map
    WHERE connection_id = %s AND entity = %s AND external_id = x.value LIMIT 1) AS m ON true
JOIN LATERAL (
    SELECT content_hash, data::text AS data_json, version, source_updated_at, deleted_at
    FROM sync_record WHERE id = m.record_id LIMIT 1) AS r ON true"""


_KNOWN_SQLITE = """SELECT m.id, m.external_id, m.record_id, m.pulled_hash, m.pushed_hash,
    r.content_hash, r.data, r.version, r.source_updated_at, r.deleted_at
FROM sync_id_map AS m JOIN sync_record AS r ON r.id = m.record_id
WHERE m.connection_id = ? AND m.entity = ?
    AND m.external_id IN (SELECT value FROM json_each(?))"""


def _known(
    conn: sa.Connection, w: bulk.Rows, ctx: Ctx, external_ids: list[str]
) -> dict[str, Known]:
    """The page's external ids that are already mapped, with their id maps and records:
    index lookups only (id maps by external id, then their records by id), never a plan
    that scans every record while the tables grow during a large sync."""
    if w.postgres:
        # one statement, one unique-index probe per external id and one primary-key
        # probe per match: the LATERAL subqueries with LIMIT 1 keep the planner from
        # matching the connection's id maps first and filtering them, or from joining the
        # records by a scan (its choices while the tables have no statistics yet, as
        # after a large initial sync). The ids travel as one binary array (%b).
        rows = conn.exec_driver_sql(
            _KNOWN_PG,
            (external_ids, ctx.connection.id, ctx.entity.canonical),
        ).all()
        return {row[1]: Known(row[0], row[2], row[3], row[4], *row[5:]) for row in rows}
    # SQLite: the same in one statement, the ids as one JSON array read by json_each;
    # values come back as stored (ids as 32 hex digits, times as naive UTC text)
    rows = conn.exec_driver_sql(
        _KNOWN_SQLITE,
        (ctx.connection.id.hex, ctx.entity.canonical, bulk.dumps(external_ids)),
    ).all()
    uid, when = uuid.UUID, _stored_time
    return {
        row[1]: Known(
            uid(hex=row[0]),
            uid(hex=row[2]),
            row[3],
            row[4],
            row[5],
            row[6],
            row[7],
            when(row[8]),
            when(row[9]),
        )
        for row in rows
    }


def _stored_time(value: str | None) -> datetime | None:
    """A timestamp as SQLite stores it (naive UTC text), made aware."""
    return None if value is None else datetime.fromisoformat(value).replace(tzinfo=UTC)


@dataclass(slots=True)
class PageRows:
    """What one page writes, by statement: ``classify`` fills it in, the writers below
    write it. The values every row of the page shares come first, driver-ready."""

    w: bulk.Rows
    now: datetime
    now_v: Any
    tenant_v: Any
    cid_v: Any
    run_v: Any
    seen_token: str | None
    # created records: only the values that vary per row (see write_new_records); tuples,
    # or COPY text lines on PostgreSQL
    new_records: list[Any] = field(default_factory=list)
    new_maps: list[Any] = field(default_factory=list)
    new_changes: list[Any] = field(default_factory=list)
    new_events: list[Any] = field(default_factory=list)
    new_connec: list[Any] = field(default_factory=list)  # their connec.<entity>.created
    rec_updates: list[tuple[Any, ...]] = field(default_factory=list)  # for Rows.update
    rec_deletes: list[dict[str, Any]] = field(default_factory=list)
    map_updates: list[tuple[Any, ...]] = field(default_factory=list)  # for Rows.update
    changes: list[tuple[Any, ...]] = field(default_factory=list)
    conflicts: list[dict[str, Any]] = field(default_factory=list)
    events: list[tuple[Any, ...]] = field(default_factory=list)
    pushes: list[str] = field(default_factory=list)  # record ids (hex)
    repush_self: list[uuid.UUID] = field(default_factory=list)
    seen_only: list[uuid.UUID] = field(default_factory=list)


def apply_page(
    session: Session,
    ctx: Ctx,
    items: list[Pulled],
    seen_token: str | None,
    *,
    fresh: bool = False,
) -> None:
    """Upsert one page of pulled records with set-based change detection. With ``fresh``
    the caller knows that none of the page's external ids is mapped (see
    ``Ctx.take_fresh``), and no lookup is made.

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
    page = PageRows(
        w,
        now,
        w.time(now),
        w.uid(ctx.connection.tenant_id),
        w.uid(ctx.connection.id),
        w.uid(ctx.run_id),
        seen_token,
    )
    external_ids = [i.external_id for i in items]
    known = {} if fresh else _known(conn, w, ctx, external_ids)
    classify(ctx, page, items, known)
    if page.new_records:
        write_new_records(ctx, page)
    write_updates(conn, ctx, page)
    queue_page_pushes(session, ctx, page)
    ctx.bump("fetched", len(items))


ChangeFn = Callable[[str, uuid.UUID, str | None, str | None, int], None]


def classify(ctx: Ctx, page: PageRows, items: list[Pulled], known: dict[str, Known]) -> None:
    """Sort the page's items into the rows they write: a new record's four rows
    (prepared by the fetch thread), a delete, an update; an unchanged record or an echo
    of a push touches its id map only, and a record both sides changed is a conflict."""
    w, now, now_v = page.w, page.now, page.now_v
    new_records, new_maps = page.new_records, page.new_maps
    new_changes, new_events = page.new_changes, page.new_events
    rec_deletes, rec_updates, map_updates = page.rec_deletes, page.rec_updates, page.map_updates
    conflicts, pushes = page.conflicts, page.pushes
    repush_self, seen_only = page.repush_self, page.seen_only
    # a change and an event (and a Connec event) per known id
    ids = iter(bulk.hex_ids((2 if ctx.connec_app is None else 3) * len(known) + 1))
    change = _change_rows(ctx, page, ids)
    prepare = NewRows.of(ctx, w.postgres)
    new_connec = page.new_connec

    if not known and _all_new_copy(page, items):
        return
    # one pass per record, inlined: this loop is the sync's hot path
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
                if it.new_connec is not None:
                    new_connec.append(it.new_connec)
                pushes.append(rec_line[:32])  # the record id, 32 hex digits
                continue
            # set by prepare() when new_copy is not; no per-record check on this hot loop
            rid, map_id, change_id, event_id, updated_v, payload = it.new_row  # type: ignore[misc]
            new_records.append((rid, it.data_json, it.digest, updated_v))
            new_maps.append((map_id, it.external_id, rid, it.digest))
            new_changes.append((change_id, rid))
            new_events.append((event_id, payload))
            if it.new_connec is not None:
                new_connec.append(it.new_connec)
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
            # the app's copy becomes the pulled one when it first comes back; an echo of
            # a push counts then, once, and as unchanged when it is read again
            first = it.digest != row.pulled_hash
            if first and (same or echo):
                map_updates.append((it.digest, now_v, w.uid(row.id)))
            else:
                seen_only.append(row.id)
            ctx.bump("echo" if echo and first else "unchanged")
            continue
        platform_changed = row.content_hash not in (row.pulled_hash, row.pushed_hash)
        if platform_changed:
            conflict = _conflict(ctx, row, it, now)
            conflicts.append(conflict)
            ctx.bump("conflicts")
            if conflict["winner"] == "platform":
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


def _all_new_copy(page: PageRows, items: list[Pulled]) -> bool:
    """An initial sync's page on PostgreSQL: when every record is new, with its rows
    prepared as COPY lines by the fetch thread, take them as they are and say so."""
    if not all(it.new_copy is not None and not it.deleted for it in items):
        return False
    page.new_records, page.new_maps, page.new_changes, page.new_events = (
        list(lines) for lines in zip(*[it.new_copy for it in items], strict=True)
    )
    page.pushes.extend(line[:32] for line in page.new_records)  # the record ids, 32 hex digits
    page.new_connec = [it.new_connec for it in items if it.new_connec is not None]
    return True


def _change_rows(ctx: Ctx, page: PageRows, ids: Iterator[str]) -> ChangeFn:
    """``change(action, record id, before, after, version)``: the change row, event and
    push of a known record's update or delete (ids from ``ids``, JSON as text)."""
    changes, events, pushes = page.changes, page.events, page.pushes
    now_v, run_v, tenant_v = page.now_v, page.run_v, page.tenant_v
    ent = ctx.entity.canonical
    src = json.dumps(ctx.source)
    ent_json = json.dumps(ent)
    app = ctx.connec_app

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
        if app is not None:
            connec = connec_payload(str(rid), ent_json, version, src, app, after_json)
            events.append((next(ids), now_v, now_v, _CONNEC[action].format(ent), tenant_v, connec))
        pushes.append(rid_hex)

    return change


def _conflict(ctx: Ctx, row: Known, it: Pulled, now: datetime) -> dict[str, Any]:
    """The conflict row of a record changed on both sides since it was last synced: the
    connection's preemption wins, or else the newer change."""
    pref = ctx.connection.preemption
    if pref:
        winner, rule = pref, f"preemption:{pref}"
    else:
        app_t, plat_t = it.updated_at, row.source_updated_at
        winner = "app" if (app_t and (plat_t is None or app_t >= plat_t)) else "platform"
        rule = "newest"
    return {
        **row_stamp(now),
        "run_id": ctx.run_id,
        "record_id": row.record_id,
        "connection_id": ctx.connection.id,
        "entity": ctx.entity.canonical,
        "winner": winner,
        "rule": rule,
        "platform_data": row.data,
        "app_data": it.data,
    }


def write_new_records(ctx: Ctx, page: PageRows) -> None:
    """The new records' four rows, one statement per table: COPY text lines prepared by
    the fetch thread on PostgreSQL, tuples on SQLite. Only the values that vary per row
    travel per row; the page's shared values are given once."""
    w, now_v, tenant_v, ent = page.w, page.now_v, page.tenant_v, ctx.entity.canonical
    stamp = {"created_at": now_v, "updated_at": now_v}
    insert = w.copy if w.postgres else w.insert
    insert(
        table_of(SyncRecord),
        ("id", "data", "content_hash", "source_updated_at"),
        page.new_records,
        {**stamp, "tenant_id": tenant_v, "entity": ent, "version": 1},
    )
    insert(
        table_of(SyncIdMap),
        ("id", "external_id", "record_id", "pulled_hash"),
        page.new_maps,
        {
            **stamp,
            "connection_id": page.cid_v,
            "entity": ent,
            "last_pulled_at": now_v,
            "seen_token": page.seen_token,
        },
    )
    # compact change rows: no before, no after (see iter_changes)
    insert(
        table_of(SyncChange),
        ("id", "record_id"),
        page.new_changes,
        {
            **stamp,
            "run_id": page.run_v,
            "tenant_id": tenant_v,
            "entity": ent,
            "action": "create",
            "source": ctx.source,
        },
    )
    outbox.emit_rows(
        w,
        ("id", "payload"),
        page.new_events,
        {**stamp, "type": "record.created", "tenant_id": tenant_v},
        copy_lines=w.postgres,
    )
    if page.new_connec:
        outbox.emit_rows(
            w,
            ("id", "payload"),
            page.new_connec,
            {**stamp, "type": f"connec.{ent}.created", "tenant_id": tenant_v},
            copy_lines=w.postgres,
        )
    ctx.bump("created", len(page.new_records))


def write_updates(conn: sa.Connection, ctx: Ctx, page: PageRows) -> None:
    """The known records' writes: updates and deletes of records, id maps' new hashes
    and the pass's seen token, then the change rows, conflicts and events."""
    w, seen_token = page.w, page.seen_token
    m, r = table_of(SyncIdMap), table_of(SyncRecord)
    if page.rec_updates:
        w.update(
            r,
            ("data", "content_hash", "version", "source_updated_at", "updated_at"),
            page.rec_updates,
            same={"deleted_at": None},
        )
    if page.rec_deletes:
        conn.execute(
            r.update()
            .where(r.c.id == sa.bindparam("b_id"))
            .values(
                version=sa.bindparam("version"),
                source_updated_at=sa.bindparam("source_updated_at"),
                deleted_at=sa.bindparam("deleted_at"),
                updated_at=sa.bindparam("updated_at"),
            ),
            page.rec_deletes,
        )
    if page.map_updates:
        w.update(
            m,
            ("pulled_hash", "last_pulled_at"),
            page.map_updates,
            same={"seen_token": seen_token} if seen_token else None,
        )
    if seen_token and page.seen_only:
        conn.execute(m.update().where(m.c.id.in_(page.seen_only)).values(seen_token=seen_token))
    w.insert(table_of(SyncChange), _CHANGE_COLS, page.changes)
    if page.conflicts:
        conn.execute(table_of(SyncConflict).insert(), page.conflicts)
    outbox.emit_rows(w, _EVENT_COLS, page.events)


def queue_page_pushes(session: Session, ctx: Ctx, page: PageRows) -> None:
    """Every record the page changed is pushed to the tenant's other connections; a
    conflict the platform won is pushed back to this connection too."""
    ent, cid = ctx.entity.canonical, ctx.connection.id
    if ctx.targets and page.pushes:
        queue_pushes(session, ctx.targets, ent, [uuid.UUID(hex=h) for h in page.pushes], ctx.run_id)
    if page.repush_self and ctx.connection.push_enabled and ctx.entity.push:
        queue_pushes(session, [cid], ent, page.repush_self, ctx.run_id)
