"""The run lock of a connection (``sync:<connection id>``), taken by a run and renewed
in every page transaction, and the once-per-page check of the connection's row."""

from __future__ import annotations

import uuid
from datetime import timedelta

import sqlalchemy as sa

from mno.errors import Conflict
from mno.store.models.sync import SyncConnection
from mno.store.types import table_of

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
