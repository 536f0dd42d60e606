"""Platform-wide tables: the audit trail and the outbox."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import sqlalchemy as sa
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


class Event(Base, table=True):
    """An outbox event: a dotted type, a JSON payload, the tenant and a monotonic ``seq``.

    ``seq`` is assigned by the database at insert time. Consumers read in ``seq`` order.
    """

    __tablename__ = "outbox_event"

    # ``id`` stays the UUID every table has; ``seq`` orders events.
    id: uuid.UUID = Field(default_factory=new_id, sa_column_kwargs={"unique": True})
    seq: int | None = Field(
        default=None,
        sa_column=sa.Column("seq", _SEQ, primary_key=True, autoincrement=True),
    )
    type: str = Field(max_length=100, index=True)
    tenant_id: uuid.UUID | None = Field(default=None, index=True)
    payload: dict[str, Any] = Field(default_factory=dict, sa_type=sa.JSON)


class LeaseLock(Base, table=True):
    """A named lock with an owner and an expiry: singleton jobs and run locks."""

    __tablename__ = "lease_lock"

    name: str = Field(max_length=200, unique=True, index=True)
    owner: str = Field(max_length=200)
    until: datetime = Field(sa_type=UTCDateTime)
