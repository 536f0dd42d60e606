"""Conflicts: a record changed in an app and on the platform since the connection last
saw it. A run resolves each by a rule (the connection's ``preemption``, else the newer
change) and stores both versions in ``sync_conflict``; the conflict stays open until an
operator confirms or reverses that outcome with ``resolve``:

- keep ``local``: the platform's version (``platform_data``) is the record's; it is put
  back into the canonical record when the app's version had won, and pushed to the app;
- keep ``remote``: the app's version (``app_data``) is applied to the canonical record.

A record whose data changes gets a change row under a run of kind ``resolve``, its
``record.updated`` event and pushes to every connection of the tenant that pushes the
entity, the conflict's included (a push the app does not need is skipped when
delivered). Either way the conflict is marked resolved (``resolution``, by whom, when),
with an audit row ``sync.conflict_resolve`` and the event ``conflict.resolved``.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from sqlmodel import col, select

from mno import clock, settings
from mno.errors import BadInput, Conflict, NotFound
from mno.store import audit, outbox, paging
from mno.store.db import session_scope
from mno.store.models.sync import (
    SyncConflict,
    SyncConnection,
    SyncConnector,
    SyncRecord,
    SyncRun,
)
from mno.sync import connections, mapping, spec
from mno.sync.push import deliver_tenant, ignored_fields, queue_pushes
from mno.sync.rollback import queue_restored, restore_record

if TYPE_CHECKING:
    from sqlmodel import Session

KEEP = ("local", "remote")
COLUMNS = ["id", "entity", "record_id", "winner", "fields", "platform", "app", "status"]


def view(row: SyncConflict, ignore: list[str] | tuple[str, ...] = ()) -> dict[str, Any]:
    """A conflict with both sides and the fields in which they differ (but the volatile
    ``ignore`` fields)."""
    platform, app = row.platform_data or {}, row.app_data or {}
    keys = (set(platform) | set(app)) - set(ignore)
    fields = sorted(k for k in keys if platform.get(k) != app.get(k))
    return {
        "id": str(row.id),
        "run_id": str(row.run_id),
        "record_id": str(row.record_id),
        "entity": row.entity,
        "winner": row.winner,
        "rule": row.rule,
        "fields": fields,
        "platform": row.platform_data,
        "app": row.app_data,
        "created_at": row.created_at,
        "status": "resolved" if row.resolved_at is not None else "open",
        "resolution": row.resolution,
        "resolved_by": row.resolved_by,
        "resolved_at": row.resolved_at,
    }


def _conflicts_stmt(conn: SyncConnection, open_only: bool) -> Any:
    stmt = select(SyncConflict).where(SyncConflict.connection_id == conn.id)
    if open_only:
        stmt = stmt.where(col(SyncConflict.resolved_at).is_(None))
    return stmt


_ORDER = [col(SyncConflict.created_at), col(SyncConflict.id)]


class _Views:
    """Views of conflicts, each entity's ignored fields read once."""

    def __init__(self, session: Session, conn: SyncConnection) -> None:
        self.session, self.conn = session, conn
        self.ignored: dict[str, list[str]] = {}

    def __call__(self, row: SyncConflict) -> dict[str, Any]:
        if row.entity not in self.ignored:
            self.ignored[row.entity] = ignored_fields(self.session, self.conn.tenant_id, row.entity)
        return view(row, self.ignored[row.entity])


def page_conflicts(
    session: Session,
    connection_name: str,
    *,
    open_only: bool = False,
    after: str | None = None,
    limit: int = paging.DEFAULT_LIMIT,
) -> paging.Page[dict[str, Any]]:
    """One page of the connection's conflicts, newest first (``view``), after the cursor
    ``after``."""
    conn = connections.get(session, connection_name)
    stmt = _conflicts_stmt(conn, open_only)
    rows, nxt = paging.page(session, stmt, _ORDER, after, limit, descending=True)
    shown = _Views(session, conn)
    return paging.Page([shown(r) for r in rows], nxt)


def stream_conflicts(
    session: Session,
    connection_name: str,
    *,
    open_only: bool = False,
    after: str | None = None,
) -> Iterator[dict[str, Any]]:
    """Every conflict of ``page_conflicts``, read a chunk at a time."""
    conn = connections.get(session, connection_name)
    shown = _Views(session, conn)
    for row in paging.each(
        session, _conflicts_stmt(conn, open_only), _ORDER, after, descending=True
    ):
        yield shown(row)


def resolve(
    session: Session, conflict_id: uuid.UUID, keep: str, *, force: bool = False
) -> dict[str, Any]:
    """Resolve one open conflict keeping ``local`` or ``remote`` (see the module's
    docstring). Refused when the record has changed since the conflict (it holds
    neither side), unless ``force``. Returns the conflict's view with ``changed`` (the
    record's data changed) and ``queued`` (pushes queued)."""
    if keep not in KEEP:
        raise BadInput(f"invalid --keep {keep!r}", "local or remote")
    row = session.exec(
        select(SyncConflict).where(col(SyncConflict.id) == conflict_id).with_for_update()
    ).first()
    if row is None:
        raise NotFound(f"conflict {conflict_id} not found", "see `mno sync conflicts list`")
    if row.resolved_at is not None:
        raise Conflict(
            f"conflict {conflict_id} was resolved ({row.resolution}) by {row.resolved_by} "
            f"at {row.resolved_at.isoformat()}"
        )
    record = session.get(SyncRecord, row.record_id)
    conn = session.get(SyncConnection, row.connection_id)
    assert record is not None and conn is not None  # records are never deleted; FKs
    target = row.platform_data if keep == "local" else row.app_data
    sides = [d for d in (row.platform_data, row.app_data) if d is not None]
    if not force and all(_differs(session, record, d) for d in sides):
        raise Conflict(
            f"{row.entity} {row.record_id} changed since the conflict",
            "see `mno record history`; --force sets it to the kept version anyway",
        )
    now = clock.now()
    changed = False
    queued = 0
    if target is not None and _differs(session, record, target):
        run = SyncRun(
            connection_id=conn.id,
            kind="resolve",
            status="success",
            entity=row.entity,
            finished_at=now,
            counts={"updated": 1},
        )
        session.add(run)
        session.flush()
        changed = restore_record(session, record, target, run.id, f"resolve:{row.id}", now)
        queued = queue_restored(session, {(record.tenant_id, record.entity): [record.id]}, run.id)
    elif keep == "local" and _pushes(session, conn, row.entity):
        # the record holds the platform's version: make sure the app gets it
        queued = queue_pushes(session, [conn.id], row.entity, [record.id], row.run_id)
    who = settings.actor()
    row.resolution, row.resolved_by, row.resolved_at = keep, who, now
    row.touch()
    session.add(row)
    ignore = ignored_fields(session, conn.tenant_id, row.entity)
    result = {**view(row, ignore), "changed": changed, "queued": queued}
    audit.record(
        session,
        "sync.conflict_resolve",
        target_type="sync_conflict",
        target_id=row.id,
        target=f"{conn.name} {row.entity} {row.record_id}",
        before={"status": "open", "data": _set_aside(row, keep)},
        after={"status": "resolved", "keep": keep, "changed": changed},
        tenant_id=conn.tenant_id,
    )
    outbox.emit(
        session,
        "conflict.resolved",
        {
            "conflict_id": str(row.id),
            "connection": conn.name,
            "record_id": str(row.record_id),
            "entity": row.entity,
            "keep": keep,
            "resolved_by": who,
        },
        conn.tenant_id,
    )
    return result


def resolve_and_push(
    conflict_id: uuid.UUID, keep: str, *, force: bool = False, db_url: str | None = None
) -> dict[str, Any]:
    """``resolve`` in a transaction of its own; then the queued pushes go out at once to
    the tenant's connections that are not running (``push.deliver_tenant``)."""
    with session_scope(db_url) as session:
        result = resolve(session, conflict_id, keep, force=force)
        conflict = session.get(SyncConflict, conflict_id)
        assert conflict is not None
        conn = session.get(SyncConnection, conflict.connection_id)
        assert conn is not None  # a foreign key
        tenant_id = conn.tenant_id
    if result["queued"]:
        result["pushed"] = deliver_tenant(tenant_id, f"resolve:{conflict_id}", db_url=db_url)
    return result


def _set_aside(row: SyncConflict, keep: str) -> dict[str, Any] | None:
    """The side the resolution sets aside."""
    return row.app_data if keep == "local" else row.platform_data


def _differs(session: Session, record: SyncRecord, target: dict[str, Any]) -> bool:
    if record.deleted_at is not None:
        return True
    ignore = ignored_fields(session, record.tenant_id, record.entity)
    return mapping.content_hash(record.data, ignore) != mapping.content_hash(target, ignore)


def _pushes(session: Session, conn: SyncConnection, entity: str) -> bool:
    if not conn.push_enabled:
        return False
    connector = session.get(SyncConnector, conn.connector_id)
    assert connector is not None  # a foreign key: the connector outlives its connections
    return any(e.canonical == entity and e.push for e in spec.of(connector).entities)
