"""The run lock of a connection (``sync:<connection id>``), taken by a run and renewed
in every page transaction, its release by an operator (``unlock``), and the
once-per-page check of the connection's row."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from mno.errors import Conflict
from mno.store import audit
from mno.store.models.core import LeaseLock
from mno.store.models.sync import SyncConnection
from mno.store.types import table_of

if TYPE_CHECKING:
    from sqlmodel import Session

LOCK_TTL = timedelta(minutes=2)


def lock_name(connection_id: uuid.UUID) -> str:
    return f"sync:{connection_id}"


def hold_connection(conn: sa.Connection, connection: SyncConnection) -> None:
    """Lock the connection's row until the transaction ends (``FOR KEY SHARE`` on
    PostgreSQL, what a foreign key takes for each row; SQLite has one writer at a time),
    so ``connections.remove`` waits for the transaction; raise when it is already gone."""
    c = table_of(SyncConnection)
    held = conn.execute(
        sa.select(c.c.id).where(c.c.id == connection.id).with_for_update(read=True, key_share=True)
    ).first()
    if held is None:
        raise Conflict(f"connection {connection.name} was removed")


def unlock(session: Session, connection_name: str) -> dict[str, Any]:
    """Release the connection's run lock whoever holds it, for an operator who knows its
    holder is gone (a holder of another host is otherwise waited out until its lease
    expires), with an audit row naming the holder. A run still holding it finds the lock
    gone or taken at its next page. Releasing a free lock changes nothing."""
    from mno.sync import connections

    conn = connections.get(session, connection_name)
    t = table_of(LeaseLock)
    name = lock_name(conn.id)
    row = session.execute(sa.select(t.c.owner, t.c.until).where(t.c.name == name)).first()
    result: dict[str, Any] = {"connection": conn.name, "released": False, "holder": None}
    if row is None:
        return result
    session.execute(sa.delete(t).where(t.c.name == name, t.c.owner == row.owner))
    result.update(released=True, holder=row.owner, until=row.until)
    audit.record(
        session,
        "sync.unlock",
        target_type="connection",
        target_id=conn.id,
        target=conn.name,
        before={"holder": row.owner, "until": row.until.isoformat()},
        after={"holder": None, "until": None},
        tenant_id=conn.tenant_id,
    )
    return result
