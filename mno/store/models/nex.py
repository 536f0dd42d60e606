"""Nex tables: hosted app instances, their custom domains, and external provisioning requests.

An instance row is both the record of a hosted container and the provisioner's work item:
``status`` is the instance's lifecycle (staged … running … terminated) and ``work`` is the
queue state the leases use (``pending`` while desired and actual state differ).
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlmodel import Field

import mno.store.models.tenancy  # noqa: F401  (foreign keys to tenant and app)
from mno import clock
from mno.store.models.base import Base
from mno.store.types import UTCDateTime


class Instance(Base, table=True):
    __tablename__ = "nex_instance"
    __table_args__ = (
        sa.Index("ix_nex_instance_work_due", "work", "next_attempt_at"),
        {"info": {"work_status": "work"}},
    )

    name: str = Field(max_length=63, index=True)
    # the name while the instance is live; NULL once terminated so the name can be reused
    live_name: str | None = Field(default=None, max_length=63, unique=True)
    tenant_id: uuid.UUID = Field(foreign_key="tenant.id", index=True)
    app_id: uuid.UUID = Field(foreign_key="app.id", index=True)
    status: str = Field(default="staged", max_length=16, index=True)
    desired: str = Field(default="running", max_length=16)  # running|stopped|terminated
    action: str | None = Field(default=None, max_length=16)  # restart|update|restore
    purge_data: bool = Field(default=False)
    backup_on_terminate: bool = Field(default=False)
    host: str | None = Field(default=None, max_length=63, index=True)
    container_id: str | None = Field(default=None, max_length=80)
    container_name: str | None = Field(default=None, max_length=128)
    deploy: int = Field(default=0)
    image: str = Field(max_length=300)
    port: int
    health_path: str | None = Field(default=None, max_length=200)
    volume_path: str | None = Field(default=None, max_length=200)
    volume: str | None = Field(default=None, max_length=128)
    # the volume a restore replaced, kept until previous_volume_until (the housekeeper
    # removes it then), and the fresh volume of a restore in progress (see mno.nex.backups)
    previous_volume: str | None = Field(default=None, max_length=128)
    previous_volume_until: datetime | None = Field(default=None, sa_type=UTCDateTime)
    restore_volume: str | None = Field(default=None, max_length=128)
    network: str | None = Field(default=None, max_length=128)
    url: str = Field(max_length=300)
    endpoint: str | None = Field(default=None, max_length=300)
    # what the current container was created from ({"image", "env"}): a failed update
    # rolls the desired spec back to it
    deployed: dict[str, Any] | None = Field(default=None, sa_type=sa.JSON)
    env: dict[str, Any] = Field(default_factory=dict, sa_type=sa.JSON)
    memory: str | None = Field(default=None, max_length=16)
    cpus: str | None = Field(default=None, max_length=16)
    pids: int | None = Field(default=None)
    started_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    stopped_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    terminated_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    spec_version: int = Field(default=1)  # bumped by every change of the desired state
    applied_version: int = Field(default=0)  # the spec the provisioner last reached
    drift: str | None = Field(default=None, max_length=500)  # last drift the provisioner saw
    # swarm runtime: the service's desired replicas, its running tasks as last seen and
    # the last error of a failed task (mno.nex.runtime_swarm)
    replicas: int = Field(default=1)
    tasks_running: int | None = Field(default=None)
    task_error: str | None = Field(default=None, max_length=500)
    # the provisioner's work-queue columns (see mno.store.leases)
    work: str = Field(default="pending", max_length=16)
    lease_owner: str | None = Field(default=None, max_length=200)
    lease_until: datetime | None = Field(default=None, sa_type=UTCDateTime)
    attempts: int = Field(default=0)
    next_attempt_at: datetime = Field(
        default_factory=clock.now, sa_type=UTCDateTime, sa_column_kwargs={"nullable": False}
    )
    last_error: str | None = Field(default=None)


class InstanceDomain(Base, table=True):
    __tablename__ = "nex_instance_domain"

    instance_id: uuid.UUID = Field(foreign_key="nex_instance.id", index=True)
    domain: str = Field(max_length=253, unique=True, index=True)


class ProvisioningRequest(Base, table=True):
    """An external provisioning request: a one-time callback secret (encrypted under the
    master key) and the context id the signed callback must carry."""

    __tablename__ = "nex_provisioning_request"

    tenant_id: uuid.UUID = Field(foreign_key="tenant.id", index=True)
    context_id: str = Field(max_length=64, unique=True)
    secret_enc: str
    expires_at: datetime = Field(sa_type=UTCDateTime)
    used_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    outcome: str | None = Field(default=None, max_length=16)  # active|provision_failed


class DockerHost(Base, table=True):
    """A Docker host kept in the store (``mno host add`` or a ``DockerHost`` document).
    Placement uses these together with the hosts listed in the platform YAML, so one
    apply reaches every agent host that shares the store."""

    __tablename__ = "nex_host"

    name: str = Field(max_length=63, unique=True, index=True)
    base_url: str = Field(max_length=500)
    publish_address: str = Field(default="127.0.0.1", max_length=253)
    memory: str | None = Field(default=None, max_length=16)
    max_instances: int | None = Field(default=None)
    labels: dict[str, Any] = Field(default_factory=dict, sa_type=sa.JSON)
    timeout: int = Field(default=30)


class NexSetting(Base, table=True):
    """Nex settings every process sharing the store reads, one row per key: the platform
    ``namespace`` that Docker names and labels carry (``mno.nex.namespace``)."""

    __tablename__ = "nex_setting"

    key: str = Field(max_length=63, unique=True, index=True)
    value: str = Field(max_length=500)


class InstanceBackup(Base, table=True):
    """One run of a restic backup of an instance's data volume (``mno.nex.restic``):
    ``running`` while it streams, then ``succeeded`` with the snapshot id or ``failed``
    with the error. The latest success per instance decides when the next one is due."""

    __tablename__ = "nex_backup"
    __table_args__ = (sa.Index("ix_nex_backup_instance_started", "instance_id", "started_at"),)

    instance_id: uuid.UUID = Field(foreign_key="nex_instance.id", index=True)
    status: str = Field(default="running", max_length=16)  # running|succeeded|failed
    trigger: str = Field(default="schedule", max_length=16)  # schedule|manual
    repository: str = Field(max_length=500)  # where the snapshot went (no password)
    snapshot_id: str | None = Field(default=None, max_length=64)
    bytes: int | None = Field(default=None, sa_type=sa.BigInteger)
    owner: str | None = Field(default=None, max_length=200)
    started_at: datetime = Field(sa_type=UTCDateTime, sa_column_kwargs={"nullable": False})
    finished_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    error: str | None = Field(default=None)
