"""Connec sync tables: connectors, connections, cursors, canonical records, id maps,
runs, record changes (the per-record audit trail), record errors, conflicts and the push
queue."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import JSONB
from sqlmodel import Field

import mno.store.models.tenancy  # noqa: F401  (tables its foreign keys point at)
from mno import clock
from mno.store.models.base import Base, WorkItem
from mno.store.types import UTCDateTime, new_id

_SEQ = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
RECORD_JSON = sa.JSON().with_variant(JSONB(), "postgresql")


class SyncConnector(Base, table=True):
    """A declarative REST connector (the validated YAML document, as JSON)."""

    __tablename__ = "sync_connector"

    name: str = Field(max_length=100, unique=True, index=True)
    app_id: uuid.UUID = Field(foreign_key="app.id", index=True)
    spec: dict[str, Any] = Field(default_factory=dict, sa_type=sa.JSON)
    spec_hash: str = Field(max_length=64)
    source: str | None = Field(default=None, max_length=500)


class SyncConnection(Base, table=True):
    """A tenant's use of a connector: entities, directions, credentials by reference."""

    __tablename__ = "sync_connection"
    __table_args__ = (sa.UniqueConstraint("tenant_id", "connector_id", name="uq_sync_connection"),)

    name: str = Field(max_length=200, unique=True, index=True)
    tenant_id: uuid.UUID = Field(foreign_key="tenant.id", index=True)
    connector_id: uuid.UUID = Field(foreign_key="sync_connector.id", index=True)
    entities: list[str] = Field(default_factory=list, sa_type=sa.JSON)
    pull_enabled: bool = Field(default=True)
    push_enabled: bool = Field(default=True)
    preemption: str | None = Field(default=None, max_length=16)
    credentials: dict[str, Any] = Field(default_factory=dict, sa_type=sa.JSON)
    base_url: str | None = Field(default=None, max_length=500)
    paused: bool = Field(default=False)
    consecutive_failures: int = Field(default=0)
    last_failure_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    last_run_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    next_run_at: datetime | None = Field(default=None, sa_type=UTCDateTime, index=True)


class SyncCursor(Base, table=True):
    """Per (connection, entity): the committed "updated since" value and the checkpoint
    of an unfinished pass (page position, filter used, full-sync sweep token)."""

    __tablename__ = "sync_cursor"
    __table_args__ = (sa.UniqueConstraint("connection_id", "entity", name="uq_sync_cursor"),)

    connection_id: uuid.UUID = Field(foreign_key="sync_connection.id", index=True)
    entity: str = Field(max_length=64)
    value: str | None = Field(default=None, max_length=64)
    checkpoint: dict[str, Any] | None = Field(default=None, sa_type=sa.JSON)
    # when the last complete pass started (the cursor is bound by it minus the lookback)
    pass_started_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


class SyncRecord(Base, table=True):
    """A canonical record: the tenant's one copy of a contact, invoice, item, …

    A record's row is never deleted (a deleted record gets ``deleted_at``): id maps and
    change rows reference it without a foreign key (migration 0503_sync)."""

    __tablename__ = "sync_record"
    __table_args__ = (
        # (tenant, entity) lookups read the prefix of Connec's page index (tenant,
        # entity, updated_at, id) in models/connec.py; migration 0511_connec dropped the
        # index of those two columns alone, which every record written had to update
        # PostgreSQL: the documents' keys and values, for containment (``data @> …``),
        # which Connec's equality filters compile to (migration 0511_connec). SQLite
        # keeps no such index: there it is an empty partial index (``WHERE 0``).
        sa.Index(
            "ix_sync_record_data",
            "data",
            postgresql_using="gin",
            postgresql_ops={"data": "jsonb_path_ops"},
            sqlite_where=sa.text("0"),
        ),
    )

    # no foreign key: checked once per page by the sync engine (migration 0502_sync)
    tenant_id: uuid.UUID
    entity: str = Field(max_length=64)
    # jsonb on PostgreSQL: stored parsed, so a filter reads a field without parsing
    # the whole document again for every row it looks at (migration 0511_connec)
    data: dict[str, Any] = Field(default_factory=dict, sa_type=RECORD_JSON)
    content_hash: str = Field(max_length=32)
    version: int = Field(default=1)
    source_updated_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    deleted_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


class SyncIdMap(Base, table=True):
    """(connection, entity, external id) → canonical record, with pull/push marks."""

    __tablename__ = "sync_id_map"
    __table_args__ = (
        sa.UniqueConstraint("connection_id", "entity", "external_id", name="uq_sync_id_map"),
        sa.Index("ix_sync_id_map_record", "record_id", "connection_id"),
    )

    # no foreign key: checked once per page by the sync engine (migration 0502_sync)
    connection_id: uuid.UUID
    entity: str = Field(max_length=64)
    external_id: str = Field(max_length=200)
    record_id: uuid.UUID  # no foreign key: a record row is never deleted (0503_sync)
    pulled_hash: str | None = Field(default=None, max_length=32)
    pushed_hash: str | None = Field(default=None, max_length=32)
    last_pulled_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    last_pushed_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    seen_token: str | None = Field(default=None, max_length=32)


class SyncRun(Base, table=True):
    """One run of one connection: status running|success|error|partial|skipped."""

    __tablename__ = "sync_run"

    connection_id: uuid.UUID | None = Field(
        default=None, foreign_key="sync_connection.id", index=True
    )
    kind: str = Field(default="sync", max_length=16)
    status: str = Field(default="running", max_length=16, index=True)
    entity: str | None = Field(default=None, max_length=64)
    full: bool = Field(default=False)
    forced: bool = Field(default=False)
    owner: str | None = Field(default=None, max_length=200)
    started_at: datetime = Field(default_factory=lambda: _now(), sa_type=UTCDateTime)
    finished_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    counts: dict[str, Any] = Field(default_factory=dict, sa_type=sa.JSON)
    error: str | None = Field(default=None)
    rolled_back_run_id: uuid.UUID | None = Field(default=None)


def _now() -> datetime:
    return clock.now()


class SyncChange(Base, table=True):
    """One change to a canonical record: run, source, before and after."""

    __tablename__ = "sync_change"
    __table_args__ = (sa.Index("ix_sync_change_record_seq", "record_id", "seq"),)

    id: uuid.UUID = Field(default_factory=new_id)
    seq: int | None = Field(
        default=None,
        sa_column=sa.Column("seq", _SEQ, primary_key=True, autoincrement=True),
    )
    # no foreign key: the page transaction locks its run (migration 0502_sync)
    run_id: uuid.UUID = Field(index=True)
    record_id: uuid.UUID  # no foreign key: a record row is never deleted (0503_sync)
    # no foreign key: the record's tenant is the connection's
    tenant_id: uuid.UUID
    entity: str = Field(max_length=64)
    action: str = Field(max_length=16)
    source: str = Field(max_length=200)
    before: dict[str, Any] | None = Field(default=None, sa_type=sa.JSON)
    after: dict[str, Any] | None = Field(default=None, sa_type=sa.JSON)


class SyncRecordError(Base, table=True):
    """A pulled record that failed its entity's JSON Schema in a run, and why."""

    __tablename__ = "sync_record_error"

    run_id: uuid.UUID = Field(index=True)  # no foreign key: written in the page transaction
    connection_id: uuid.UUID = Field(foreign_key="sync_connection.id", index=True)
    entity: str = Field(max_length=64)
    external_id: str = Field(max_length=200)
    message: str = Field(max_length=500)


class SyncConflict(Base, table=True):
    """A record changed on both sides since the last sync, and who won; open until an
    operator resolves it (``resolution`` local|remote, by whom and when)."""

    __tablename__ = "sync_conflict"
    __table_args__ = (sa.Index("ix_sync_conflict_connection", "connection_id", "resolved_at"),)

    run_id: uuid.UUID = Field(foreign_key="sync_run.id", index=True)
    record_id: uuid.UUID = Field(foreign_key="sync_record.id", index=True)
    connection_id: uuid.UUID = Field(foreign_key="sync_connection.id")
    entity: str = Field(max_length=64)
    winner: str = Field(max_length=16)
    rule: str = Field(max_length=32)
    platform_data: dict[str, Any] | None = Field(default=None, sa_type=sa.JSON)
    app_data: dict[str, Any] | None = Field(default=None, sa_type=sa.JSON)
    resolution: str | None = Field(default=None, max_length=16)
    resolved_by: str | None = Field(default=None, max_length=200)
    resolved_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


class SyncPush(Base, WorkItem, table=True):
    """A canonical record to write to one connection (queued with the change)."""

    __tablename__ = "sync_push"

    connection_id: uuid.UUID = Field(foreign_key="sync_connection.id", index=True)
    record_id: uuid.UUID = Field(foreign_key="sync_record.id")
    entity: str = Field(max_length=64)
    run_id: uuid.UUID | None = Field(default=None)
