"""Agent runtime tables: heartbeats, tick history, outbox consumer cursors, probe work."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlmodel import Field

from mno.store.models.base import Base, WorkItem
from mno.store.types import UTCDateTime


class Heartbeat(Base, table=True):
    """One row per running ``mno agents run`` process, refreshed every few seconds."""

    __tablename__ = "agent_heartbeat"

    owner: str = Field(max_length=200, unique=True, index=True)
    host: str = Field(max_length=200)
    pid: int
    agents: list[str] = Field(default_factory=list, sa_type=sa.JSON)
    started_at: datetime = Field(sa_type=UTCDateTime)
    last_beat: datetime = Field(sa_type=UTCDateTime, index=True)
    interval_s: float = Field(default=5.0)


class AgentTick(Base, table=True):
    """The outcome of one pass of one agent."""

    __tablename__ = "agent_tick"

    agent: str = Field(max_length=64, index=True)
    owner: str = Field(max_length=200)
    started_at: datetime = Field(sa_type=UTCDateTime, index=True)
    duration_ms: float = Field(default=0.0)
    outcome: str = Field(max_length=16)  # ok | error | skipped
    claimed: int = Field(default=0)
    done: int = Field(default=0)
    failed: int = Field(default=0)
    retried: int = Field(default=0)
    error: str | None = Field(default=None)
    details: dict[str, Any] = Field(default_factory=dict, sa_type=sa.JSON)


class ConsumerCursor(Base, table=True):
    """How far a named outbox consumer (e.g. the webhook dispatcher) has read."""

    __tablename__ = "outbox_cursor"

    name: str = Field(max_length=64, unique=True, index=True)
    seq: int = Field(default=0, sa_type=sa.BigInteger)


class ProbeItem(Base, WorkItem, table=True):
    """Work for the ``probe`` agent: proves a fleet processes each item exactly once."""

    __tablename__ = "agent_probe_item"
    __table_args__ = (sa.Index("ix_agent_probe_item_due", "status", "next_attempt_at"),)

    batch: str = Field(default="default", max_length=64, index=True)
    fail_times: int = Field(default=0)  # fail this many attempts first (tests retries)
    work_ms: int = Field(default=0)  # simulated work per item


class ProbeEffect(Base, table=True):
    """One row per time a probe item was handled: the side effect tests count."""

    __tablename__ = "agent_probe_effect"

    item_id: uuid.UUID = Field(index=True)
    owner: str = Field(max_length=200)


class WorkRequest(Base, WorkItem, table=True):
    """An on-demand job for the agent that serves its kind (``mno billing run --async``,
    ``mno sync run --async``): enqueued with a wake-up, claimed through ``store.leases``."""

    __tablename__ = "agent_request"
    __table_args__ = (sa.Index("ix_agent_request_due", "kind", "status", "next_attempt_at"),)

    kind: str = Field(max_length=64)
    args: dict[str, Any] = Field(default_factory=dict, sa_type=sa.JSON)
    result: dict[str, Any] | None = Field(default=None, sa_type=sa.JSON)
    actor: str | None = Field(default=None, max_length=200)
    finished_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
