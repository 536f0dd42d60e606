"""Platform-wide tables: the audit trail and the outbox."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.compiler import compiles
from sqlmodel import Field

from mno import clock
from mno.store.models.base import Base
from mno.store.types import UTCDateTime, new_id


class AuditEntry(Base, table=True):
    """One row per mutation, written in the mutation's transaction."""

    __tablename__ = "audit_entry"

    at: datetime = Field(default_factory=clock.now, sa_type=UTCDateTime, index=True)
    actor: str = Field(max_length=200)
    action: str = Field(max_length=100, index=True)
    target_type: str = Field(max_length=50)
    target_id: str = Field(max_length=64, index=True)
    target: str = Field(max_length=200, index=True)
    tenant_id: uuid.UUID | None = Field(default=None, index=True)
    diff: dict[str, Any] = Field(default_factory=dict, sa_type=sa.JSON)


_SEQ = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


class current_tx(sa.sql.expression.FunctionElement[int]):  # noqa: N801  (an SQL function)
    """The writing transaction's id as a bigint on PostgreSQL, 0 on SQLite (whose writers
    are serialised): the server default of ``Event.tx``."""

    type = sa.BigInteger()
    inherit_cache = True


@compiles(current_tx)
def _current_tx_default(element: current_tx, compiler: Any, **kw: Any) -> str:
    return "0"


@compiles(current_tx, "postgresql")
def _current_tx_postgresql(element: current_tx, compiler: Any, **kw: Any) -> str:
    return "(pg_current_xact_id()::text::bigint)"


class Event(Base, table=True):
    """An outbox event: a dotted type, a JSON payload, the tenant and a monotonic ``seq``.

    ``seq`` is assigned by the database at insert time, not at commit time: on PostgreSQL
    a transaction holding a lower ``seq`` may commit after one holding a higher one.
    ``tx`` is the id of the transaction that wrote the event (0 on SQLite); readers that
    follow the outbox by cursor walk ``(tx, seq)`` below the oldest running transaction
    (``mno.store.outbox.follow``), which never skips an event that commits late.
    """

    __tablename__ = "outbox_event"
    __table_args__ = (sa.Index("ix_outbox_event_tx_seq", "tx", "seq"),)

    # ``id`` stays the UUID every table has; ``seq`` orders events.
    id: uuid.UUID = Field(default_factory=new_id, sa_column_kwargs={"unique": True})
    seq: int | None = Field(
        default=None,
        sa_column=sa.Column("seq", _SEQ, primary_key=True, autoincrement=True),
    )
    type: str = Field(max_length=100, index=True)
    tenant_id: uuid.UUID | None = Field(default=None, index=True)
    payload: dict[str, Any] = Field(default_factory=dict, sa_type=sa.JSON)
    tx: int | None = Field(
        default=None,
        sa_column=sa.Column("tx", sa.BigInteger(), server_default=current_tx(), nullable=False),
    )


class LeaseLock(Base, table=True):
    """A named lock with an owner and an expiry: singleton jobs and run locks."""

    __tablename__ = "lease_lock"

    name: str = Field(max_length=200, unique=True, index=True)
    owner: str = Field(max_length=200)
    until: datetime = Field(sa_type=UTCDateTime)
