"""Connec writes: apps create, replace, patch and delete a tenant's canonical records.

Records, id maps, change rows and rollback are the sync engine's (``sync_record``,
``sync_id_map``, ``sync_change``): a Connec transaction is a ``sync_run`` of kind
``connec`` without a connection, its changes carry the source ``app:<code>``, and
``mno sync rollback`` or the API's rollback restores it with the same conflict checks.
An app's own ids are kept in ``sync_id_map`` under the app's map id for the tenant
(``map_id``), so an app finds a record by the id it knows.

``apply`` writes a list of operations in one transaction, set-based: every operation is
checked first (schema, target, ``If-Match`` version) and gets its own result; the valid
ones are written with bulk statements, with one change row each, one outbox event each
(``connec.<entity>.created|updated|deleted``, carrying ``source_app_id`` so that the
webhook fan-out never echoes a change to the app that wrote it), pushes queued to the
tenant's connections that push the entity, and one audit row for the transaction.
"""

from __future__ import annotations

import functools
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from mno import clock
from mno.connec import entities
from mno.connec.entities import Invalid
from mno.errors import BadInput
from mno.store import audit, leases, outbox
from mno.store.bulk import Rows, copy_json, dumps, hex_ids
from mno.store.models.sync import SyncChange, SyncConnection, SyncIdMap, SyncRecord, SyncRun
from mno.store.types import table_of
from mno.sync import mapping
from mno.sync.push import ignored_fields, push_targets, queue_pushes

if TYPE_CHECKING:
    from sqlmodel import Session

MAX_BATCH = 1000
MAP_NAMESPACE = uuid.UUID("5b0d7c1e-4c55-4b8e-9d8e-0c0ec0ec0ec0")
KINDS = ("create", "update", "patch", "delete")


def map_id(tenant_id: uuid.UUID, app_id: uuid.UUID) -> uuid.UUID:
    """The id under which an app's own ids for a tenant's records are mapped."""
    return uuid.uuid5(MAP_NAMESPACE, f"{tenant_id}:{app_id}")


@dataclass(frozen=True)
class Writer:
    """Who writes: the tenant and the app acting for it."""

    tenant_id: uuid.UUID
    app_id: uuid.UUID
    app_code: str
    label: str | None = None  # the source of an operator's writes (no app)

    @property
    def source(self) -> str:
        return self.label or f"app:{self.app_code}"

    @functools.cached_property
    def map_id(self) -> uuid.UUID:
        return map_id(self.tenant_id, self.app_id)


@dataclass
class Op:
    """One operation: ``kind`` create|update|patch|delete on ``entity``; the target by
    canonical ``id`` or by the app's own ``app_id``; ``version`` the If-Match value."""

    kind: str
    entity: str
    data: dict[str, Any] | None = None
    id: str | None = None
    app_id: str | None = None
    version: int | None = None


@dataclass
class Result:
    """One operation's outcome: HTTP-like ``status`` (201, 200, 404, 409, 412, 422),
    the record on success, ``error`` and per-field ``errors`` otherwise."""

    status: int
    record: dict[str, Any] | None = None
    error: str | None = None
    errors: list[dict[str, str]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.status < 400

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"status": self.status}
        if self.record is not None:
            out["record"] = self.record
        if self.error is not None:
            out["error"] = self.error
        if self.errors:
            out["errors"] = self.errors
        return out


@dataclass
class Outcome:
    transaction_id: uuid.UUID | None
    results: list[Result]


def view(rec: Any, app_ids: dict[uuid.UUID, str] | None = None) -> dict[str, Any]:
    """A record as the API shows it (``rec``: a row or model with sync_record columns)."""
    out = {
        "id": str(rec.id),
        "entity": rec.entity,
        "version": rec.version,
        "created_at": audit.utc_text(rec.created_at),
        "updated_at": audit.utc_text(rec.updated_at),
        "deleted_at": audit.utc_text(rec.deleted_at) if rec.deleted_at else None,
        "data": dict(rec.data or {}),
    }
    if app_ids is not None:
        out["app_id"] = app_ids.get(rec.id)
    return out


def app_ids_of(session: Session, writer: Writer, ids: list[uuid.UUID]) -> dict[uuid.UUID, str]:
    """Record id → the app's own id, for the records the app has mapped."""
    if not ids:
        return {}
    rows: Any
    if session.get_bind().dialect.name == "postgresql":
        # one probe of the index (record, connection) per record (see ``_targets``)
        rows = session.connection().exec_driver_sql(
            "SELECT m.record_id, m.external_id FROM unnest(%(r)s::uuid[]) AS u(r) "
            "CROSS JOIN LATERAL (SELECT record_id, external_id FROM sync_id_map "
            "WHERE record_id = u.r AND connection_id = %(c)s LIMIT 1) AS m",
            {"r": list(ids), "c": writer.map_id},
        )
    else:
        m = table_of(SyncIdMap)
        rows = session.execute(
            sa.select(m.c.record_id, m.c.external_id).where(
                m.c.connection_id == writer.map_id, m.c.record_id.in_(ids)
            )
        )
    return {row.record_id: row.external_id for row in rows}


def _parse_uuid(value: str | None) -> uuid.UUID | None:
    try:
        return uuid.UUID(str(value)) if value else None
    except ValueError:
        return None


def _targets(
    session: Session, writer: Writer, ops: list[Op]
) -> tuple[dict[int, Any], dict[tuple[str, str], uuid.UUID]]:
    """Op index → the record row it addresses (locked on PostgreSQL); and the app ids
    already mapped, (entity, app id) → record id."""
    m = table_of(SyncIdMap)
    wanted_app_ids = {(op.entity, op.app_id) for op in ops if op.app_id}
    mapped: dict[tuple[str, str], uuid.UUID] = {}
    if wanted_app_ids:
        pairs = sorted(wanted_app_ids)
        rows: Any
        if session.get_bind().dialect.name == "postgresql":
            # one index probe per (entity, app id): the unique index (connection,
            # entity, external id) is searched for each pair, whatever the planner
            # believes of the table's size (a plain ``= ANY(…)`` can become a filter
            # over every id the app has mapped, which grows with the tenant's records)
            rows = session.connection().exec_driver_sql(
                "SELECT m.entity, m.external_id, m.record_id "
                "FROM unnest(%(e)s::varchar[], %(x)s::varchar[]) AS u(e, x) "
                "CROSS JOIN LATERAL (SELECT entity, external_id, record_id "
                "FROM sync_id_map WHERE connection_id = %(c)s AND entity = u.e "
                "AND external_id = u.x LIMIT 1) AS m",
                {"e": [e for e, _ in pairs], "x": [a for _, a in pairs], "c": writer.map_id},
            )
        else:
            rows = session.execute(
                sa.select(m.c.entity, m.c.external_id, m.c.record_id).where(
                    m.c.connection_id == writer.map_id,
                    m.c.entity.in_(sorted({e for e, _ in pairs})),
                    m.c.external_id.in_(sorted({a for _, a in pairs})),
                )
            )
        mapped = {(r.entity, r.external_id): r.record_id for r in rows}
    ids: dict[int, uuid.UUID] = {}
    for i, op in enumerate(ops):
        if op.kind == "create":
            continue
        rid = _parse_uuid(op.id) if op.id else mapped.get((op.entity, op.app_id or ""))
        if rid is not None:
            ids[i] = rid
    found: dict[uuid.UUID, Any] = {}
    if ids:
        r = table_of(SyncRecord)
        stmt = sa.select(r).where(
            r.c.id.in_(sorted(set(ids.values()))), r.c.tenant_id == writer.tenant_id
        )
        found = {row.id: row for row in session.execute(leases.for_update(session, stmt))}
    return {i: found[rid] for i, rid in ids.items() if rid in found}, mapped


def apply(session: Session, writer: Writer, ops: list[Op]) -> Outcome:
    """Write ``ops`` in the session's transaction (see the module's docstring)."""
    if len(ops) > MAX_BATCH:
        raise BadInput(f"a batch takes at most {MAX_BATCH} operations, not {len(ops)}")
    results: list[Result | None] = [None] * len(ops)
    checked: dict[int, dict[str, Any]] = {}
    known = entities.all_entities()
    for i, op in enumerate(ops):
        if op.kind not in KINDS:
            results[i] = Result(422, error=f"unknown operation {op.kind!r}")
            continue
        ent = known.get(op.entity)
        if ent is None:
            results[i] = Result(404, error=f"no entity {op.entity!r}")
            continue
        if op.kind != "create" and not op.id and not op.app_id:
            results[i] = Result(422, error=f"{op.kind} needs the record's id or app id")
            continue
        if op.kind in ("create", "update"):
            try:
                checked[i] = ent.validate(op.data or {})
            except Invalid as exc:
                results[i] = Result(422, error=exc.message, errors=exc.errors)
    targets, mapped = _targets(session, writer, ops)
    now = clock.now()
    now_text = audit.utc_text(now)
    run_id = uuid.uuid4()
    # every id this batch may need (a record, its id map, change row and event), made
    # at once: time-ordered, as 32 hex digits (see store.bulk.hex_ids)
    fresh = iter(hex_ids(4 * len(ops)))
    records: list[tuple[str, str, str, str]] = []  # id, entity, data, hash
    updates: list[dict[str, Any]] = []  # changed rows
    # id, record id, entity, action, before, after (JSON text)
    changes: list[tuple[str, str, str, str, str | None, str | None]] = []
    id_maps: list[tuple[str, str, str, str, str]] = []  # id, entity, app id, record, hash
    events: list[tuple[str, str, str]] = []  # id, type, payload (JSON text)
    touched: dict[str, list[uuid.UUID]] = {}
    new_app_ids: set[tuple[str, str]] = set()
    ignore_cache: dict[str, list[str]] = {}
    source_json = dumps(writer.source)
    app_json = dumps(str(writer.app_id))

    def ignored(entity: str) -> list[str]:
        if entity not in ignore_cache:
            ignore_cache[entity] = ignored_fields(session, writer.tenant_id, entity)
        return ignore_cache[entity]

    def change(
        rid: uuid.UUID, entity: str, action: str, before: str | None, after: str | None
    ) -> None:
        changes.append((next(fresh), rid.hex, entity, action, before, after))
        touched.setdefault(entity, []).append(rid)

    def event(entity: str, verb: str, rid: uuid.UUID, version: int, data: str | None) -> None:
        # the payload's JSON, built around the record's JSON text (encoded once)
        payload = (
            f'{{"record_id":"{rid}","entity":{dumps(entity)},"version":{version},'
            f'"source":{source_json},"source_app_id":{app_json},'
            f'"data":{"null" if data is None else data}}}'
        )
        events.append((next(fresh), f"connec.{entity}.{verb}", payload))

    seen_targets: set[uuid.UUID] = set()
    for i, op in enumerate(ops):
        if results[i] is not None:
            continue
        if op.kind == "create":
            key = (op.entity, op.app_id or "")
            if op.app_id and (key in mapped or key in new_app_ids):
                results[i] = Result(
                    409, error=f"{op.entity} with app id {op.app_id!r} exists already"
                )
                continue
            data = checked[i]
            hex_id = next(fresh)
            rid = uuid.UUID(hex=hex_id)
            digest, text = mapping.hash_and_json(data, ignored(op.entity))
            records.append((hex_id, op.entity, text, digest))
            if op.app_id:
                new_app_ids.add(key)
                id_maps.append((next(fresh), op.entity, op.app_id, hex_id, digest))
            change(rid, op.entity, "create", None, text)
            event(op.entity, "created", rid, 1, text)
            results[i] = Result(
                201,
                record={
                    "id": str(rid),
                    "entity": op.entity,
                    "version": 1,
                    "created_at": now_text,
                    "updated_at": now_text,
                    "deleted_at": None,
                    "data": data,
                    "app_id": op.app_id,
                },
            )
            continue
        rec = targets.get(i)
        if rec is None or rec.entity != op.entity:
            which = op.id if op.id else f"app id {op.app_id}"
            results[i] = Result(404, error=f"no {op.entity} record {which}")
            continue
        if rec.id in seen_targets:
            results[i] = Result(409, error=f"record {rec.id} is written twice in this batch")
            continue
        if rec.deleted_at is not None:
            results[i] = Result(404, error=f"{op.entity} record {rec.id} is deleted")
            continue
        if op.version is not None and op.version != rec.version:
            results[i] = Result(
                412, error=f"record {rec.id} is at version {rec.version}, not {op.version}"
            )
            continue
        before = dict(rec.data or {})
        before_text = dumps(before)
        version = rec.version + 1
        if op.kind == "delete":
            upd = {"id": rec.id, "data": before, "version": version, "deleted_at": now}
            change(rec.id, op.entity, "delete", before_text, None)
            event(op.entity, "deleted", rec.id, version, None)
        else:
            if op.kind == "patch":
                merged = {**before, **(op.data or {})}
                merged = {k: v for k, v in merged.items() if v is not None}
                try:
                    data = known[op.entity].validate(merged)
                except Invalid as exc:
                    results[i] = Result(422, error=exc.message, errors=exc.errors)
                    continue
            else:
                data = checked[i]
            upd = {"id": rec.id, "data": data, "version": version, "deleted_at": None}
            after_text = dumps(data)
            change(rec.id, op.entity, "update", before_text, after_text)
            event(op.entity, "updated", rec.id, version, after_text)
        seen_targets.add(rec.id)
        upd["content_hash"] = mapping.content_hash(upd["data"], ignored(op.entity))
        updates.append(upd)
        shown = {
            "id": rec.id,
            "entity": rec.entity,
            "version": version,
            "created_at": rec.created_at,
            "updated_at": now,
            "deleted_at": upd["deleted_at"],
            "data": upd["data"],
        }
        results[i] = Result(200, record=_row_view(shown, None))
    done = [r for r in results if r is not None]
    changed = [uuid.UUID(r.record["id"]) for r in done if r.status == 200 and r.record]
    if changed:
        mine = app_ids_of(session, writer, changed)
        for r in done:
            if r.status == 200 and r.record:
                r.record["app_id"] = mine.get(uuid.UUID(r.record["id"]))
    if not changes:
        return Outcome(None, done)
    _write(session, writer, now, run_id, records, updates, changes, id_maps, events, touched)
    return Outcome(run_id, done)


def _row_view(row: dict[str, Any], app_id: str | None) -> dict[str, Any]:
    return {
        "id": str(row["id"]),
        "entity": row["entity"],
        "version": row["version"],
        "created_at": audit.utc_text(row["created_at"]),
        "updated_at": audit.utc_text(row["updated_at"]),
        "deleted_at": audit.utc_text(row["deleted_at"]) if row["deleted_at"] else None,
        "data": row["data"],
        "app_id": app_id,
    }


def _write(
    session: Session,
    writer: Writer,
    now: datetime,
    run_id: uuid.UUID,
    records: list[tuple[str, str, str, str]],
    updates: list[dict[str, Any]],
    changes: list[tuple[str, str, str, str, str | None, str | None]],
    id_maps: list[tuple[str, str, str, str, str]],
    events: list[tuple[str, str, str]],
    touched: dict[str, list[uuid.UUID]],
) -> None:
    conn = session.connection()
    counts = {
        "created": len(records),
        "updated": sum(1 for c in changes if c[3] == "update"),
        "deleted": sum(1 for c in changes if c[3] == "delete"),
    }
    ents = sorted(touched)
    conn.execute(
        table_of(SyncRun).insert(),
        [
            {
                "id": run_id,
                "created_at": now,
                "updated_at": now,
                "connection_id": None,
                "kind": "connec",
                "status": "success",
                "entity": ents[0] if len(ents) == 1 else None,
                "full": False,
                "forced": False,
                "owner": writer.source,
                "started_at": now,
                "finished_at": now,
                "counts": counts,
            }
        ],
    )
    w = Rows(conn)
    stamp = w.time(now)
    tenant = w.uid(writer.tenant_id)
    if records:
        w.insert_plain(
            table_of(SyncRecord),
            ("id", "entity", "data", "content_hash"),
            records,
            {
                "created_at": stamp,
                "updated_at": stamp,
                "tenant_id": tenant,
                "version": 1,
                "source_updated_at": stamp,
            },
        )
    if updates:
        w.update(
            table_of(SyncRecord),
            ("data", "content_hash", "version", "deleted_at", "source_updated_at", "updated_at"),
            [
                (
                    dumps(u["data"]),
                    u["content_hash"],
                    u["version"],
                    w.time(u["deleted_at"]),
                    stamp,
                    stamp,
                    w.uid(u["id"]),
                )
                for u in updates
            ],
        )
    if id_maps:
        w.insert_plain(
            table_of(SyncIdMap),
            ("id", "entity", "external_id", "record_id", "pulled_hash"),
            id_maps,
            {
                "created_at": stamp,
                "updated_at": stamp,
                "connection_id": w.uid(writer.map_id),
                "last_pulled_at": stamp,
            },
        )
    w.insert_plain(
        table_of(SyncChange),
        ("id", "record_id", "entity", "action", "before", "after"),
        changes,
        {
            "created_at": stamp,
            "updated_at": stamp,
            "run_id": w.uid(run_id),
            "tenant_id": tenant,
            "source": writer.source,
        },
    )
    same = {"created_at": stamp, "updated_at": stamp, "tenant_id": tenant}
    if w.postgres:
        lines = [f"{i}\t{kind}\t{copy_json(payload)}\n" for i, kind, payload in events]
        outbox.emit_rows(w, ("id", "type", "payload"), lines, same, copy_lines=True)
    else:
        outbox.emit_rows(w, ("id", "type", "payload"), events, same)
    for entity, ids in touched.items():
        anchor = SyncConnection(
            id=uuid.uuid4(), name="", tenant_id=writer.tenant_id, connector_id=uuid.uuid4()
        )
        queue_pushes(session, push_targets(session, anchor, entity), entity, ids, run_id)
    audit.record(
        session,
        "connec.write",
        target_type="sync_run",
        target_id=run_id,
        target=str(run_id),
        after={"source": writer.source, "entities": ents, **counts},
        tenant_id=writer.tenant_id,
    )
