"""Backfill: push a tenant's existing canonical records to one of its connections, for a
connection added after those records were synced from elsewhere.

The records of the connection's entities that it has no id map for (never pulled from
its app nor pushed to it), are not deleted and have no push pending to it are queued to
it, in one transaction with an audit row ``sync.backfill`` and the event
``connection.backfilled``; the run that follows delivers them. Delivery writes the id
maps, so a second backfill finds nothing to push: the id map makes it idempotent.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from mno.errors import Conflict
from mno.store import audit, outbox
from mno.store.db import session_scope
from mno.store.models.sync import SyncConnector, SyncIdMap, SyncPush, SyncRecord
from mno.store.types import table_of
from mno.sync import connections, spec
from mno.sync.push import queue_pushes

if TYPE_CHECKING:
    import uuid

    from sqlmodel import Session

    from mno.store.models.sync import SyncConnection


def entities(session: Session, conn: SyncConnection) -> list[str]:
    """The connection's entities its connector can create in the app."""
    connector = session.get(SyncConnector, conn.connector_id)
    assert connector is not None  # a foreign key: the connector outlives its connections
    doc = spec.of(connector)
    return [
        e.canonical
        for e in doc.entities
        if e.canonical in conn.entities and e.push is not None and e.push.create is not None
    ]


def pending(session: Session, conn: SyncConnection, entity: str) -> list[uuid.UUID]:
    """The records of ``entity`` a backfill of ``conn`` would push, oldest first."""
    r, m, p = table_of(SyncRecord), table_of(SyncIdMap), table_of(SyncPush)
    mapped = sa.exists().where(
        m.c.record_id == r.c.id, m.c.connection_id == conn.id, m.c.entity == entity
    )
    queued = sa.exists().where(
        p.c.record_id == r.c.id, p.c.connection_id == conn.id, p.c.status == "pending"
    )
    rows = session.connection().execute(
        sa.select(r.c.id)
        .where(r.c.tenant_id == conn.tenant_id, r.c.entity == entity)
        .where(r.c.deleted_at.is_(None), ~mapped, ~queued)
        .order_by(r.c.created_at, r.c.id)
    )
    return [row.id for row in rows]


def backfill(session: Session, connection_name: str, *, dry_run: bool = False) -> dict[str, Any]:
    """Queue the pushes of a backfill of the connection (see the module's docstring);
    with ``dry_run`` only count them. Returns {connection, dry_run, entities: {entity:
    records}, records}."""
    conn = connections.get(session, connection_name)
    if not conn.push_enabled:
        raise Conflict(
            f"connection {conn.name} does not push", "enable it with `mno connection update --push`"
        )
    found = {name: pending(session, conn, name) for name in entities(session, conn)}
    counts = {name: len(ids) for name, ids in found.items()}
    total = sum(counts.values())
    result = {"connection": conn.name, "dry_run": dry_run, "entities": counts, "records": total}
    if dry_run or not total:
        return result
    for name, ids in found.items():
        queue_pushes(session, [conn.id], name, ids, None)
    audit.record(
        session,
        "sync.backfill",
        target_type="connection",
        target_id=conn.id,
        target=conn.name,
        after={"entities": counts, "records": total},
        tenant_id=conn.tenant_id,
    )
    outbox.emit(
        session,
        "connection.backfilled",
        {"name": conn.name, "entities": counts, "records": total},
        conn.tenant_id,
    )
    return result


def queue(
    connection_name: str, *, dry_run: bool = False, db_url: str | None = None
) -> dict[str, Any]:
    """``backfill`` in a transaction of its own."""
    with session_scope(db_url) as session:
        return backfill(session, connection_name, dry_run=dry_run)
