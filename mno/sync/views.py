"""Read models of sync for the CLI and the API: connectors, runs, canonical records and
their history, as plain dicts with stable keys (times as datetimes, ids as strings)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

from sqlmodel import Session, col, select

from mno.errors import BadInput, NotFound
from mno.store import lookup, paging
from mno.store.db import session_scope
from mno.store.models.sync import (
    SyncConflict,
    SyncConnection,
    SyncConnector,
    SyncIdMap,
    SyncRecord,
    SyncRecordError,
    SyncRun,
)
from mno.sync import connections, spec
from mno.sync.engine import iter_changes
from mno.sync.pages import fetch_page, map_page
from mno.sync.rest import RestClient
from mno.tenancy import tenants


def run_id(session: Session, ref: str | uuid.UUID) -> uuid.UUID:
    """The id of the run ``ref`` names (a UUID or a unique prefix of one)."""
    return lookup.resolve_id(session, SyncRun, ref, "sync run", "see `mno sync runs`")


def conflict_id(session: Session, ref: str | uuid.UUID) -> uuid.UUID:
    """The id of the conflict ``ref`` names (a UUID or a unique prefix of one)."""
    return lookup.resolve_id(session, SyncConflict, ref, "conflict")


# -- connectors ---------------------------------------------------------------------------


def _connector_view(c: SyncConnector) -> dict[str, Any]:
    return {
        "name": c.name,
        "base_url": c.spec.get("base_url"),
        "entities": [e["canonical"] for e in c.spec.get("entities", [])],
        "updated_at": c.updated_at,
    }


def page_connectors(
    session: Session, *, after: str | None = None, limit: int = paging.DEFAULT_LIMIT
) -> paging.Page[dict[str, Any]]:
    """One page of connectors by name (with base URL and entities) after ``after``."""
    order = [col(SyncConnector.name)]
    rows, nxt = paging.page(session, select(SyncConnector), order, after, limit)
    return paging.Page([_connector_view(c) for c in rows], nxt)


def stream_connectors(session: Session, *, after: str | None = None) -> Iterator[dict[str, Any]]:
    """Every connector by name, read a chunk at a time."""
    for c in paging.each(session, select(SyncConnector), [col(SyncConnector.name)], after):
        yield _connector_view(c)


def connector(session: Session, name: str) -> dict[str, Any]:
    """A connector's document, with where it came from and its hash."""
    row = connections.get_connector(session, name)
    return {"name": row.name, "source": row.source, "spec_hash": row.spec_hash, **row.spec}


def first_page(
    connector_name: str,
    *,
    entity: str | None = None,
    connection: str | None = None,
    db_url: str | None = None,
) -> list[dict[str, Any]]:
    """The first page of an entity (default: the connector's first), fetched from the
    app and mapped, as ``mno connector test`` shows it; with ``connection``, with that
    connection's credentials and base URL. Nothing is written."""
    creds, base, owner = None, None, None
    with session_scope(db_url, write=False) as s:
        doc = spec.of(connections.get_connector(s, connector_name))
        if connection:
            c = connections.get(s, connection)
            creds, base, owner = c.credentials, c.base_url, c.name
    ent = doc.entity(entity) if entity else doc.entities[0]
    with RestClient(doc, creds, base, owner=owner) as client:
        raws, _ = fetch_page(client, ent, None, {})
    return [
        {"external_id": p.external_id, "deleted": p.deleted, "updated_at": p.updated_at, **p.data}
        for p in map_page(ent, raws)
    ]


# -- runs ---------------------------------------------------------------------------------

RUN_COLUMNS = ["id", "connection", "kind", "status", "started_at", "finished_at", "counts"]


def run_view(session: Session, run: SyncRun) -> dict[str, Any]:
    """A run with its connection's name (None once the connection is removed)."""
    conn = session.get(SyncConnection, run.connection_id) if run.connection_id else None
    return _run_view(run, conn.name if conn else None)


def _run_view(run: SyncRun, connection: str | None) -> dict[str, Any]:
    return {
        "id": str(run.id),
        "connection": connection,
        "kind": run.kind,
        "status": run.status,
        "entity": run.entity,
        "full": run.full,
        "forced": run.forced,
        "started_at": run.started_at,
        "finished_at": run.finished_at,
        "counts": run.counts,
        "error": run.error,
    }


def run(session: Session, run_id: str | uuid.UUID) -> dict[str, Any]:
    """One run (``run_view``); NotFound when there is none."""
    row = lookup.by_id_or_prefix(session, SyncRun, run_id, "sync run", "see `mno sync runs`")
    view = run_view(session, row)
    errors = record_errors(session, row.id)
    if errors:  # records that failed their entity's schema (mno.sync.schema)
        view["record_errors"] = errors
    return view


def record_errors(session: Session, run_id: uuid.UUID, limit: int = 100) -> list[dict[str, Any]]:
    """The run's records that failed their entity's schema (the first ``limit``)."""
    rows = session.exec(
        select(SyncRecordError)
        .where(SyncRecordError.run_id == run_id)
        .order_by(col(SyncRecordError.entity), col(SyncRecordError.external_id))
        .limit(limit)
    )
    return [{"entity": e.entity, "external_id": e.external_id, "message": e.message} for e in rows]


def _runs_stmt(session: Session, connection: str | None) -> Any:
    stmt = select(SyncRun)
    if connection:
        stmt = stmt.where(SyncRun.connection_id == connections.get(session, connection).id)
    return stmt


_RUN_ORDER = [col(SyncRun.started_at), col(SyncRun.id)]


def _run_views(session: Session, rows: list[SyncRun]) -> list[dict[str, Any]]:
    """Views of a page or chunk of runs: their connections' names in one more query."""
    ids = {r.connection_id for r in rows if r.connection_id}
    names = dict(
        session.execute(
            select(SyncConnection.id, SyncConnection.name).where(col(SyncConnection.id).in_(ids))
        ).all()
        if ids
        else []
    )
    return [_run_view(r, names.get(r.connection_id)) for r in rows]


def page_runs(
    session: Session,
    connection: str | None = None,
    *,
    after: str | None = None,
    limit: int = paging.DEFAULT_LIMIT,
) -> paging.Page[dict[str, Any]]:
    """One page of runs newest first, of one connection or of all, after the cursor
    ``after``."""
    stmt = _runs_stmt(session, connection)
    rows, nxt = paging.page(session, stmt, _RUN_ORDER, after, limit, descending=True)
    return paging.Page(_run_views(session, rows), nxt)


def stream_runs(
    session: Session, connection: str | None = None, *, after: str | None = None
) -> Iterator[dict[str, Any]]:
    """Every run newest first, read a chunk at a time."""
    stmt = _runs_stmt(session, connection)
    for rows in paging.stream(session, stmt, _RUN_ORDER, after, descending=True):
        yield from _run_views(session, rows)


# -- records ------------------------------------------------------------------------------


def record_view(record: SyncRecord) -> dict[str, Any]:
    return {
        "id": str(record.id),
        "entity": record.entity,
        "version": record.version,
        "updated_at": record.source_updated_at,
        "deleted_at": record.deleted_at,
        "data": record.data,
    }


def _records_stmt(session: Session, entity: str, tenant: str | None, deleted: bool) -> Any:
    stmt = select(SyncRecord).where(SyncRecord.entity == entity)
    if tenant:
        stmt = stmt.where(SyncRecord.tenant_id == tenants.get(session, tenant).id)
    if not deleted:
        stmt = stmt.where(col(SyncRecord.deleted_at).is_(None))
    return stmt


_RECORD_ORDER = [col(SyncRecord.created_at), col(SyncRecord.id)]


def page_records(
    session: Session,
    entity: str,
    *,
    tenant: str | None = None,
    deleted: bool = False,
    after: str | None = None,
    limit: int = paging.DEFAULT_LIMIT,
) -> paging.Page[dict[str, Any]]:
    """One page of an entity's canonical records, oldest first, after the cursor
    ``after``: of one tenant or of all, the deleted ones too with ``deleted``."""
    stmt = _records_stmt(session, entity, tenant, deleted)
    rows, nxt = paging.page(session, stmt, _RECORD_ORDER, after, limit)
    return paging.Page([record_view(r) for r in rows], nxt)


def stream_records(
    session: Session,
    entity: str,
    *,
    tenant: str | None = None,
    deleted: bool = False,
    after: str | None = None,
) -> Iterator[dict[str, Any]]:
    """Every canonical record of ``page_records``, read a chunk at a time."""
    stmt = _records_stmt(session, entity, tenant, deleted)
    for r in paging.each(session, stmt, _RECORD_ORDER, after):
        yield record_view(r)


def record(session: Session, entity: str, record_id: str | uuid.UUID) -> dict[str, Any]:
    """One canonical record with its links: the connections that map it, by external
    id, with when it was last pulled and pushed. NotFound unless it is of ``entity``."""
    if not lookup.looks_like_id(record_id):
        raise BadInput(f"invalid record id {str(record_id)!r}", lookup.PREFIX_HINT)
    rec = lookup.find(session, SyncRecord, record_id, "record")
    if rec is None or rec.entity != entity:
        raise NotFound(f"{entity} {record_id} not found")
    view = record_view(rec)
    view["links"] = [
        {
            "connection": c.name,
            "external_id": m.external_id,
            "last_pulled_at": m.last_pulled_at,
            "last_pushed_at": m.last_pushed_at,
        }
        for m, c in session.exec(
            select(SyncIdMap, SyncConnection)
            .where(SyncIdMap.record_id == rec.id)
            .where(SyncIdMap.connection_id == SyncConnection.id)
        )
    ]
    return view


def record_history(
    session: Session, entity: str, record_id: str | uuid.UUID
) -> list[dict[str, Any]]:
    """A record's audit trail: every change in order, with its run, source, before and
    after (none when the record is not of ``entity``)."""
    if not lookup.looks_like_id(record_id):
        raise BadInput(f"invalid record id {str(record_id)!r}", lookup.PREFIX_HINT)
    rec = lookup.find(session, SyncRecord, record_id, "record")
    if rec is None:
        return []
    return [
        {
            "seq": c.seq,
            "at": c.created_at,
            "run_id": str(c.run_id),
            "source": c.source,
            "action": c.action,
            "before": c.before,
            "after": c.after,
        }
        for c in iter_changes(session, rec.id)
        if c.entity == entity
    ]
