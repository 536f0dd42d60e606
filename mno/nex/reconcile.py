"""The provisioner's work on one instance: bring Docker to the instance's desired state.

``reconcile(instance_id, owner, options)`` reads the instance, does what Docker work is
needed and records each status change in its own short transaction (with its audit row
and event), fenced on the provisioner's lease. It is idempotent: a crash at any point is
repaired by running it again (containers have deterministic names ``mno-<name>-<deploy>``
and are looked up before anything is created).

``detect_drift(owner)`` compares the labelled containers on every reachable host with
the instances the store expects there and marks instances whose container was removed or
stopped outside mno for repair.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from mno import clock, platform
from mno.errors import MnoError
from mno.nex import hosts, runtime_docker
from mno.nex.runtime_docker import ContainerSpec, HostDown, Runtime
from mno.store import audit, outbox

EVENTS = {
    "provisioning": "instance.provisioning",
    "running": "instance.running",
    "failed": "instance.failed",
    "stopped": "instance.stopped",
    "terminated": "instance.terminated",
}


class LeaseLost(MnoError):
    """Another process took the instance over; stop working on it."""


@dataclass
class Options:
    ready_timeout_s: float = 60.0
    health_interval_s: float = 1.0
    health_retries: int = 3
    health_start_period_s: float = 30.0
    stop_timeout_s: int = 10
    restart_retries: int = 5
    host_down_retry_s: float = 30.0
    pids_default: int | None = 512

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Options:
        from mno.settings import parse_duration

        opts = cls()
        for key in ("ready_timeout", "health_interval", "health_start_period", "host_down_retry"):
            if key in data:
                setattr(opts, f"{key}_s", parse_duration(data[key]).total_seconds())
        for key in ("health_retries", "stop_timeout_s", "restart_retries", "pids_default"):
            if key in data:
                setattr(opts, key, data[key])
        return opts


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
    volume_path: str | None
    volume: str | None
    network: str | None
    url: str
    env: dict[str, Any]
    memory: str | None
    cpus: str | None
    pids: int | None
    started_at: datetime | None
    domains: list[str] = field(default_factory=list)
    # container fields learnt during a pass, recorded with its outcome (even a failure)
    pending: dict[str, Any] = field(default_factory=dict)
    # the Docker hosts known when the snapshot was read (platform YAML and store)
    hosts: list[platform.HostConfig] = field(default_factory=list)


def load(instance_id: uuid.UUID, db_url: str | None = None) -> Snapshot | None:
    from mno.nex import instances
    from mno.store.db import session_scope
    from mno.store.models.nex import Instance
    from mno.store.models.tenancy import App, Tenant

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
            volume_path=inst.volume_path,
            volume=inst.volume,
            network=inst.network,
            url=inst.url,
            env=dict(inst.env or {}),
            memory=inst.memory,
            cpus=inst.cpus,
            pids=inst.pids,
            started_at=inst.started_at,
            domains=instances.domains_of(s, inst),
            hosts=hosts.configured(platform.load(), s),
        )


# -- recording -------------------------------------------------------------------------


def record(
    instance_id: uuid.UUID,
    owner: str | None,
    *,
    status: str | None = None,
    db_url: str | None = None,
    **fields: Any,
) -> None:
    """One status change (and/or field updates) in one transaction, fenced on the lease."""
    from mno.store.db import session_scope
    from mno.store.models.nex import Instance

    with session_scope(db_url) as s:
        inst = s.get(Instance, instance_id)
        if inst is None:
            raise LeaseLost(f"instance {instance_id} is gone")
        if owner is not None and inst.lease_owner != owner:
            raise LeaseLost(f"instance {inst.name} is no longer leased to this process")
        apply(s, inst, status, **fields)


def apply(session: Any, inst: Any, status: str | None, **fields: Any) -> None:
    """Set fields and the status in the caller's transaction. A status change writes an
    audit row, emits the matching ``instance.*`` event and lets tenant provisioning react
    (``mno.nex.provisioning.on_instance``)."""
    from mno.nex import provisioning

    before = inst.status
    for key, value in fields.items():
        setattr(inst, key, value)
    if status is not None:
        inst.status = status
    inst.touch()
    session.add(inst)
    if status is None or status == before:
        return
    audit.record(
        session,
        "instance.status",
        target_type="instance",
        target_id=inst.id,
        target=inst.name,
        before={"status": before},
        after={"status": status, **({"error": inst.last_error} if status == "failed" else {})},
        tenant_id=inst.tenant_id,
        actor="provisioner",
    )
    event = EVENTS.get(status)
    if event:
        data = {
            "id": str(inst.id),
            "name": inst.name,
            "status": status,
            "host": inst.host,
            "url": inst.url,
            "endpoint": inst.endpoint,
        }
        if status == "failed":
            data["error"] = inst.last_error
        outbox.emit(session, event, data, inst.tenant_id)
    session.flush()
    provisioning.on_instance(session, inst)


# -- container spec --------------------------------------------------------------------


def container_name(snap: Snapshot, deploy: int) -> str:
    return f"mno-{snap.name}-{deploy}"


def volume_name(snap: Snapshot) -> str | None:
    if not snap.volume_path:
        return None
    return snap.volume or f"mno-{snap.name}-{str(snap.id)[:8]}-data"


def network_name(snap: Snapshot) -> str | None:
    return f"mno-tenant-{snap.tenant_key}" if snap.tenant_tier == "silo" else None


def labels(snap: Snapshot, deploy: int, apps_domain: str | None = None) -> dict[str, str]:
    router = snap.name
    names = [snap.url.split("://", 1)[-1].split("/", 1)[0], *snap.domains]
    rule = " || ".join(f"Host(`{n}`)" for n in names)
    out = {
        runtime_docker.MANAGED: "true",
        "mno.instance": str(snap.id),
        "mno.tenant": snap.tenant_key,
        "mno.app": snap.app_code,
        "mno.deploy": str(deploy),
        "traefik.enable": "true",
        f"traefik.http.routers.{router}.rule": rule,
        f"traefik.http.routers.{router}.service": router,
        f"traefik.http.services.{router}.loadbalancer.server.port": str(snap.port),
    }
    network = network_name(snap)
    if network:
        out["traefik.docker.network"] = network
    return out


def spec(snap: Snapshot, host: platform.HostConfig, deploy: int, opts: Options) -> ContainerSpec:
    from mno import secrets
    from mno.tenancy.apps import memory_bytes

    env = {k: str(secrets.resolve(v)) for k, v in {**snap.app_env, **snap.env}.items()}
    return ContainerSpec(
        name=container_name(snap, deploy),
        image=snap.image,
        port=snap.port,
        labels=labels(snap, deploy),
        publish_address=host.publish_address,
        env=env,
        health_cmd=runtime_docker.health_command(snap.port, snap.health_path)
        if snap.health_path
        else None,
        health_interval_s=opts.health_interval_s,
        health_retries=opts.health_retries,
        health_start_period_s=opts.health_start_period_s,
        memory=memory_bytes(snap.memory),
        nano_cpus=int(float(snap.cpus) * 1e9) if snap.cpus else None,
        pids=snap.pids or opts.pids_default,
        volume=volume_name(snap),
        volume_path=snap.volume_path,
        network=network_name(snap),
        restart_retries=opts.restart_retries,
    )


def endpoint(host: platform.HostConfig, port: int | None) -> str | None:
    if port is None:
        return None
    address = host.publish_address
    if ":" in address:
        address = f"[{address}]"
    return f"http://{address}:{port}"


# -- placement -------------------------------------------------------------------------


def place(
    snap: Snapshot, owner: str, db_url: str | None = None, status: str | None = None
) -> platform.HostConfig:
    """Choose a host for an instance that has none and record it, with the new status
    (one transaction)."""
    from mno.store.db import session_scope
    from mno.store.models.nex import Instance
    from mno.store.models.tenancy import App
    from mno.tenancy.apps import memory_bytes

    config = platform.load()
    candidates = snap.hosts or hosts.configured(config)
    probes = hosts.probe(candidates, max_age_s=5.0)
    reachable = {name for name, p in probes.items() if p.reachable}
    with session_scope(db_url) as s:
        inst = s.get(Instance, snap.id)
        if inst is None or inst.lease_owner != owner:
            raise LeaseLost(f"instance {snap.name} is no longer leased to this process")
        if inst.host:
            if status is not None:
                apply(s, inst, status)
            return hosts.get(inst.host, config, s)
        if not reachable:
            errors = "; ".join(f"{n}: {p.error}" for n, p in probes.items())
            raise HostDown(f"no Docker host is reachable ({errors})")
        app = s.get(App, inst.app_id)
        assert app is not None
        host = hosts.place(s, app, memory_bytes(inst.memory), reachable, config)
        apply(s, inst, status, host=host.name, volume=volume_name(snap), network=network_name(snap))
    snap.host = host.name
    snap.volume = volume_name(snap)
    snap.network = network_name(snap)
    return host


# -- the work --------------------------------------------------------------------------


def reconcile(
    instance_id: uuid.UUID,
    owner: str,
    opts: Options | None = None,
    *,
    db_url: str | None = None,
    should_stop: Any = lambda: False,
) -> None:
    """Bring one instance to its desired state (see the module docstring)."""
    opts = opts or Options()
    snap = load(instance_id, db_url)
    if snap is None:
        return
    if snap.desired == "terminated":
        if snap.status != "terminated":
            _terminate(snap, owner, opts, db_url)
        return
    if snap.desired == "stopped":
        _stop(snap, owner, opts, db_url)
        return
    try:
        _run(snap, owner, opts, db_url, should_stop)
    except (HostDown, LeaseLost):
        raise
    except Exception as exc:
        message = exc.message if isinstance(exc, MnoError) else f"{type(exc).__name__}: {exc}"
        record(
            snap.id,
            owner,
            status="failed",
            last_error=message[:2000],
            db_url=db_url,
            **snap.pending,
        )
        raise


def _host(snap: Snapshot) -> platform.HostConfig:
    known = snap.hosts or hosts.configured()
    return hosts.find(snap.host, known) if snap.host else known[0]


def _run(snap: Snapshot, owner: str, opts: Options, db_url: str | None, should_stop: Any) -> None:
    placed_now = not snap.host  # a first deploy: placement records "provisioning" too
    host = place(snap, owner, db_url, status="provisioning") if placed_now else _host(snap)
    rt = runtime_docker.runtime(host)
    current = rt.inspect(snap.container_id, snap.port) if snap.container_id else None
    if snap.action == "update" and current is not None and current.status == "running":
        _roll(snap, host, rt, current, owner, opts, db_url, should_stop)
        return
    healthy = (
        current is not None
        and current.status == "running"
        and current.health
        in (
            None,
            "healthy",
        )
    )
    if healthy and snap.action != "restart":
        assert current is not None
        if snap.status != "running" or snap.action:
            record(
                snap.id,
                owner,
                status="running",
                endpoint=endpoint(host, current.host_port),
                action=None,
                drift=None,
                last_error=None,
                db_url=db_url,
            )
        return
    if current is not None and snap.action is None and snap.status != "failed":
        if current.status in ("created", "exited", "running"):
            # stopped by us (start) or by someone else (drift): start the same container
            record(snap.id, owner, status="starting", db_url=db_url)
            if current.status == "running":
                rt.restart(current.id, opts.stop_timeout_s)
            else:
                rt.start(current.id)
            ready = rt.wait_ready(
                current.id, snap.port, opts.ready_timeout_s, should_stop=should_stop
            )
            record(
                snap.id,
                owner,
                status="running",
                endpoint=endpoint(host, ready.host_port),
                started_at=clock.now(),
                drift=None,
                last_error=None,
                db_url=db_url,
            )
            return
    if current is not None and snap.action == "restart" and current.status == "running":
        record(snap.id, owner, status="starting", db_url=db_url)
        rt.restart(current.id, opts.stop_timeout_s)
        ready = rt.wait_ready(current.id, snap.port, opts.ready_timeout_s, should_stop=should_stop)
        record(
            snap.id,
            owner,
            status="running",
            endpoint=endpoint(host, ready.host_port),
            started_at=clock.now(),
            action=None,
            last_error=None,
            db_url=db_url,
        )
        return
    # a fresh container: first deploy, a repair after drift, a retry after a failure, or
    # an update of a stopped instance
    first = snap.started_at is None and snap.status in ("staged", "provisioning", "failed")
    if not placed_now:
        record(snap.id, owner, status="provisioning" if first else "starting", db_url=db_url)
    if current is not None:
        rt.remove(current.id)
    _deploy(snap, host, rt, snap.deploy + 1, owner, opts, db_url, should_stop)


def _prepare(snap: Snapshot, rt: Runtime) -> None:
    base = {runtime_docker.MANAGED: "true", "mno.tenant": snap.tenant_key}
    network = network_name(snap)
    if network:
        rt.ensure_network(network, base)
    volume = volume_name(snap)
    if volume:
        rt.ensure_volume(volume, base | {"mno.instance": str(snap.id)})


def _deploy(
    snap: Snapshot,
    host: platform.HostConfig,
    rt: Runtime,
    deploy: int,
    owner: str,
    opts: Options,
    db_url: str | None,
    should_stop: Any,
) -> None:
    _prepare(snap, rt)
    container_spec = spec(snap, host, deploy, opts)
    state = rt.run(container_spec)
    snap.pending = {
        "container_id": state.id,
        "container_name": container_spec.name,
        "deploy": deploy,
        "endpoint": endpoint(host, state.host_port),
    }
    ready = rt.wait_ready(state.id, snap.port, opts.ready_timeout_s, should_stop=should_stop)
    record(
        snap.id,
        owner,
        status="running",
        started_at=clock.now(),
        action=None,
        drift=None,
        last_error=None,
        db_url=db_url,
        **(snap.pending | {"endpoint": endpoint(host, ready.host_port)}),
    )


def _roll(
    snap: Snapshot,
    host: platform.HostConfig,
    rt: Runtime,
    current: runtime_docker.ContainerState,
    owner: str,
    opts: Options,
    db_url: str | None,
    should_stop: Any,
) -> None:
    """Update a running instance: rolling without a volume (new container healthy, then
    the route switches, then the old one stops); stop-first with a volume, so two
    containers never write to one volume."""
    record(snap.id, owner, status="updating", db_url=db_url)
    deploy = snap.deploy + 1
    new_spec = spec(snap, host, deploy, opts)
    if snap.volume_path:
        rt.stop(current.id, opts.stop_timeout_s)
        try:
            state = rt.run(new_spec)
            ready = rt.wait_ready(
                state.id, snap.port, opts.ready_timeout_s, should_stop=should_stop
            )
        except Exception:
            rt.remove(new_spec.name)
            rt.start(current.id)  # the old version serves again while we retry
            raise
    else:
        try:
            state = rt.run(new_spec)
            ready = rt.wait_ready(
                state.id, snap.port, opts.ready_timeout_s, should_stop=should_stop
            )
        except Exception:
            rt.remove(new_spec.name)  # the old container keeps serving
            raise
    record(
        snap.id,
        owner,
        status="running",
        container_id=ready.id,
        container_name=new_spec.name,
        deploy=deploy,
        endpoint=endpoint(host, ready.host_port),
        action=None,
        last_error=None,
        db_url=db_url,
    )
    rt.stop(current.id, opts.stop_timeout_s)
    rt.remove(current.id)


def _stop(snap: Snapshot, owner: str, opts: Options, db_url: str | None) -> None:
    if snap.status == "stopped":
        return
    if not snap.host or not snap.container_id:
        record(snap.id, owner, status="stopped", stopped_at=clock.now(), db_url=db_url)
        return
    rt = runtime_docker.runtime(_host(snap))
    record(snap.id, owner, status="stopping", db_url=db_url)
    rt.stop(snap.container_id, opts.stop_timeout_s)
    record(snap.id, owner, status="stopped", stopped_at=clock.now(), db_url=db_url)


def _terminate(snap: Snapshot, owner: str, opts: Options, db_url: str | None) -> None:
    from mno.nex import backups, provisioning

    if snap.status != "terminating":
        record(snap.id, owner, status="terminating", db_url=db_url)
    if snap.host:
        rt = runtime_docker.runtime(_host(snap))
        volume = volume_name(snap)
        if snap.backup_on_terminate and volume:
            backups.final_backup(rt, snap)
        for c in rt.list_managed():
            if c.labels.get("mno.instance") == str(snap.id):
                rt.remove(c.id)
        if volume and (snap.purge_data or snap.backup_on_terminate):
            rt.remove_volume(volume)
        network = network_name(snap)
        if network and provisioning.last_on_host(snap, db_url):
            rt.remove_network(network)
    record(
        snap.id,
        owner,
        status="terminated",
        terminated_at=clock.now(),
        live_name=None,
        container_id=None,
        endpoint=None,
        db_url=db_url,
    )


# -- drift -----------------------------------------------------------------------------


@dataclass
class DriftReport:
    hosts_down: dict[str, str] = field(default_factory=dict)
    repaired: list[str] = field(default_factory=list)
    reported: list[str] = field(default_factory=list)


def detect_drift(db_url: str | None = None) -> DriftReport:
    """Mark instances whose container vanished or stopped outside mno (see module doc)."""
    from sqlmodel import select

    from mno.store.db import session_scope
    from mno.store.models.nex import Instance

    report = DriftReport()
    now = clock.now()
    with session_scope(db_url, write=False) as s:
        rows = s.exec(
            select(
                Instance.id, Instance.name, Instance.host, Instance.container_id, Instance.desired
            ).where(
                Instance.status.in_(("running", "stopped")),  # type: ignore[attr-defined]
                Instance.work == "idle",
                Instance.host.is_not(None),  # type: ignore[union-attr]
            )
        ).all()
        known = hosts.configured(platform.load(), s)
    by_host: dict[str, list[Any]] = {}
    for row in rows:
        by_host.setdefault(str(row[2]), []).append(row)
    for host in known:
        expected = by_host.get(host.name)
        if not expected:
            continue
        try:
            containers = {c.id: c for c in runtime_docker.runtime(host).list_managed()}
            hosts.mark(host.name, True)
        except (HostDown, runtime_docker.DockerFailure) as exc:
            report.hosts_down[host.name] = exc.message
            hosts.mark(host.name, False, exc.message)
            continue
        repairs: list[tuple[uuid.UUID, str]] = []
        notes: list[tuple[uuid.UUID, str]] = []
        for iid, name, _, cid, desired in expected:
            c = containers.get(cid) if cid else None
            if desired == "running":
                if c is None:
                    repairs.append((iid, "container removed outside mno; recreated"))
                    report.repaired.append(name)
                elif c.status not in ("running", "restarting"):
                    repairs.append((iid, f"container {c.status} outside mno; restarted"))
                    report.repaired.append(name)
            elif desired == "stopped":
                if c is None:
                    notes.append((iid, "container removed outside mno while stopped"))
                    report.reported.append(name)
                elif c.status == "running":
                    notes.append((iid, "container running outside mno although stopped"))
                    report.reported.append(name)
        if repairs or notes:
            _mark_drift(repairs, notes, now, db_url)
    return report


def _mark_drift(
    repairs: list[tuple[uuid.UUID, str]],
    notes: list[tuple[uuid.UUID, str]],
    now: datetime,
    db_url: str | None,
) -> None:
    from mno.store.db import session_scope
    from mno.store.models.nex import Instance

    with session_scope(db_url) as s:
        for iid, text in repairs + notes:
            inst = s.get(Instance, iid)
            if inst is None or inst.work != "idle" or inst.drift == text:
                continue
            repair = (iid, text) in repairs
            inst.drift = text
            if repair:
                inst.work = "pending"
                inst.attempts = 0
                inst.next_attempt_at = now
                inst.spec_version += 1
            inst.touch()
            s.add(inst)
            audit.record(
                s,
                "instance.drift",
                target_type="instance",
                target_id=inst.id,
                target=inst.name,
                after={"drift": text, "repair": repair},
                tenant_id=inst.tenant_id,
                actor="provisioner",
            )
            outbox.emit(
                s,
                "instance.drift_detected",
                {"id": str(inst.id), "name": inst.name, "drift": text, "repair": repair},
                inst.tenant_id,
            )


def orphans(config: platform.PlatformConfig | None = None) -> list[dict[str, Any]]:
    """Labelled containers no live instance owns (unknown, terminated, or a stale deploy)."""
    from sqlmodel import select

    from mno.store.db import session_scope
    from mno.store.models.nex import Instance

    with session_scope(write=False) as s:
        known = {
            str(i): (cid, work, status)
            for i, cid, work, status in s.exec(
                select(Instance.id, Instance.container_id, Instance.work, Instance.status)
            ).all()
        }
        candidates = hosts.configured(config, s)
    out = []
    for host in candidates:
        try:
            containers = runtime_docker.runtime(host).list_managed()
        except (HostDown, runtime_docker.DockerFailure):
            continue
        for c in containers:
            iid = c.labels.get("mno.instance", "")
            entry = known.get(iid)
            if entry is None:
                why = "no instance has this id"
            elif entry[2] == "terminated":
                why = "its instance is terminated"
            elif entry[0] != c.id and entry[1] == "idle":
                why = "not the instance's current container"
            else:
                continue
            out.append(
                {
                    "host": host.name,
                    "container": c.id[:12],
                    "name": c.name,
                    "status": c.status,
                    "instance": iid or None,
                    "tenant": c.labels.get("mno.tenant"),
                    "app": c.labels.get("mno.app"),
                    "why": why,
                }
            )
    return out
