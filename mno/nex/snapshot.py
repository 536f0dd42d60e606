"""What the provisioner knows of one instance while it works on it.

``load(instance_id)`` reads an instance, its tenant and app and the known Docker hosts in
one short read-only transaction into a ``Snapshot``: plain data that the Docker work
(``mno.nex.reconcile``, ``mno.nex.backups``) uses without holding a session.
``host_of(snap)`` is the Docker host the instance lives on (or the first known one).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from mno import platform
from mno.nex import hosts, instances, namespace
from mno.store.db import session_scope
from mno.store.models.nex import Instance
from mno.store.models.tenancy import App, Tenant


@dataclass
class Snapshot:
    id: uuid.UUID
    name: str
    tenant_id: uuid.UUID
    tenant_key: str
    tenant_tier: str
    app_code: str
    app_labels: dict[str, Any]
    app_env: dict[str, Any]
    status: str
    desired: str
    action: str | None
    purge_data: bool
    backup_on_terminate: bool
    host: str | None
    container_id: str | None
    deploy: int
    image: str
    port: int
    health_path: str | None
    health_interval: str | None  # the app's, e.g. "10s" (None: the provisioner's default)
    volume_path: str | None
    volume: str | None
    previous_volume: str | None
    restore_volume: str | None
    network: str | None
    url: str
    env: dict[str, Any]
    memory: str | None
    cpus: str | None
    pids: int | None
    started_at: datetime | None
    endpoint: str | None = None
    spec_version: int = 0
    # what the current container was created from (image, env), for a rollback
    deployed: dict[str, Any] | None = None
    domains: list[str] = field(default_factory=list)
    # container fields learnt during a pass, recorded with its outcome (even a failure)
    pending: dict[str, Any] = field(default_factory=dict)
    # the Docker hosts known when the snapshot was read (platform YAML and store)
    hosts: list[platform.HostConfig] = field(default_factory=list)
    # the store's namespace (mno.nex.namespace); empty only in snapshots made by hand
    namespace: str = ""
    replicas: int = 1  # swarm: the service's desired replicas


def load(instance_id: uuid.UUID, db_url: str | None = None) -> Snapshot | None:
    with session_scope(db_url, write=False) as s:
        inst = s.get(Instance, instance_id)
        if inst is None:
            return None
        tenant = s.get(Tenant, inst.tenant_id)
        app = s.get(App, inst.app_id)
        assert tenant is not None and app is not None
        return Snapshot(
            id=inst.id,
            name=inst.name,
            tenant_id=tenant.id,
            tenant_key=tenant.key,
            tenant_tier=tenant.tier,
            app_code=app.code,
            app_labels=dict(app.labels or {}),
            app_env=dict(app.env or {}),
            status=inst.status,
            desired=inst.desired,
            action=inst.action,
            purge_data=inst.purge_data,
            backup_on_terminate=inst.backup_on_terminate,
            host=inst.host,
            container_id=inst.container_id,
            deploy=inst.deploy,
            image=inst.image,
            port=inst.port,
            health_path=inst.health_path,
            health_interval=app.health_interval,
            volume_path=inst.volume_path,
            volume=inst.volume,
            previous_volume=inst.previous_volume,
            restore_volume=inst.restore_volume,
            network=inst.network,
            url=inst.url,
            env=dict(inst.env or {}),
            memory=inst.memory,
            cpus=inst.cpus,
            pids=inst.pids,
            started_at=inst.started_at,
            endpoint=inst.endpoint,
            spec_version=inst.spec_version,
            deployed=dict(inst.deployed) if inst.deployed else None,
            domains=instances.domains_of(s, inst),
            hosts=hosts.configured(platform.load(), s),
            namespace=namespace.get(s),
            replicas=inst.replicas,
        )


def host_of(snap: Snapshot) -> platform.HostConfig:
    """The instance's Docker host, or the first known host when it has none yet."""
    known = snap.hosts or hosts.configured()
    return hosts.find(snap.host, known) if snap.host else known[0]
