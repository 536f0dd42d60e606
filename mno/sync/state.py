"""A connection's sync state per stream (one stream per entity): its "updated since"
cursor, when its last complete pass started, the entity's lookback, how many records the
connection has seen in it (its id maps) and whether a pass is unfinished (a checkpoint).

``reset`` forgets the cursors and checkpoints, so the next run pulls every record again.
The id maps stay: the records it reads again are matched to theirs and hash the same, so
nothing is created twice. It holds the connection's run lock while it writes, so it never
pulls the state from under a run.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlmodel import col, select

from mno.errors import BadInput, Conflict
from mno.store import audit, leases, outbox
from mno.store.models.sync import SyncConnector, SyncCursor, SyncIdMap
from mno.store.types import table_of
from mno.sync import connections, spec
from mno.sync.runlock import LOCK_TTL, lock_name

if TYPE_CHECKING:
    from sqlmodel import Session

    from mno.store.models.sync import SyncConnection

COLUMNS = ["stream", "cursor", "last_pass_started_at", "lookback", "records_seen", "unfinished"]


def _streams(conn: SyncConnection, stream: str | None) -> list[str]:
    if stream is None:
        return list(conn.entities)
    if stream not in conn.entities:
        raise BadInput(f"connection {conn.name} has no stream {stream!r}", ", ".join(conn.entities))
    return [stream]


def show(session: Session, connection_name: str, stream: str | None = None) -> list[dict[str, Any]]:
    """One row per stream of the connection (or ``stream``): stream, cursor (the
    "updated since" value, None before the first complete pass), last_pass_started_at,
    lookback (None for a stream read in full every time), records_seen, unfinished (a
    pass's checkpoint: a run was interrupted, the next one resumes it) and
    pass_started_at of that unfinished pass."""
    conn = connections.get(session, connection_name)
    names = _streams(conn, stream)
    connector = session.get(SyncConnector, conn.connector_id)
    assert connector is not None  # a foreign key: the connector outlives its connections
    entities = {e.canonical: e for e in spec.of(connector).entities}
    cursors = {
        c.entity: c
        for c in session.exec(select(SyncCursor).where(SyncCursor.connection_id == conn.id))
    }
    m = table_of(SyncIdMap)
    seen = {
        row.entity: int(row.n)
        for row in session.connection().execute(
            sa.select(m.c.entity, sa.func.count().label("n"))
            .where(m.c.connection_id == conn.id, m.c.entity.in_(names))
            .group_by(m.c.entity)
        )
    }
    rows = []
    for name in names:
        cur = cursors.get(name)
        ent = entities.get(name)
        cp = cur.checkpoint if cur is not None else None
        rows.append(
            {
                "stream": name,
                "cursor": cur.value if cur is not None else None,
                "last_pass_started_at": cur.pass_started_at if cur is not None else None,
                "lookback": ent.incremental.lookback if ent and ent.incremental else None,
                "records_seen": seen.get(name, 0),
                "unfinished": cp is not None,
                "pass_started_at": cp.get("started_at") if cp else None,
            }
        )
    return rows


def reset(session: Session, connection_name: str, stream: str | None = None) -> dict[str, Any]:
    """Forget the cursors and checkpoints of the connection's streams (or of ``stream``),
    with an audit row ``sync.state_reset`` (the cursors before) and the event
    ``connection.state_reset``. Refused while a run holds the connection's lock."""
    conn = connections.get(session, connection_name)
    names = _streams(conn, stream)
    owner = leases.make_owner()
    if not leases.take_lock(session, lock_name(conn.id), owner, LOCK_TTL):
        holder = leases.lock_holder(session, lock_name(conn.id))
        raise Conflict(
            f"connection {conn.name} is syncing (held by {holder[0] if holder else '?'})",
            "wait for the run to end, or `mno sync unlock` a run that died",
        )
    try:
        before = {
            c.entity: {"cursor": c.value, "unfinished": c.checkpoint is not None}
            for c in session.exec(
                select(SyncCursor).where(
                    SyncCursor.connection_id == conn.id, col(SyncCursor.entity).in_(names)
                )
            )
        }
        session.execute(
            sa.delete(SyncCursor).where(
                col(SyncCursor.connection_id) == conn.id, col(SyncCursor.entity).in_(names)
            )
        )
    finally:
        leases.release_lock(session, lock_name(conn.id), owner)
    result = {"connection": conn.name, "streams": names, "reset": sorted(before)}
    audit.record(
        session,
        "sync.state_reset",
        target_type="connection",
        target_id=conn.id,
        target=conn.name,
        before=before,
        after=dict.fromkeys(before),
        tenant_id=conn.tenant_id,
    )
    outbox.emit(
        session,
        "connection.state_reset",
        {"name": conn.name, "streams": names, "reset": sorted(before)},
        conn.tenant_id,
    )
    return result
