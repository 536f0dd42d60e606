"""The provisioner's work on an instance that lives on a swarm host: one Swarm service.

An instance is the service ``mno-<namespace>-<name>`` (labels ``mno.namespace``,
``mno.instance``, ``mno.tenant``, and Traefik's router labels on the service, where
Traefik's swarm provider reads them). Its spec carries the instance's replicas, CPU and
memory limits (the tier's or app's limit is also the reservation, so Swarm only places a
task on a node with room), the health check, an ``on-failure`` restart policy and an
``update_config`` that makes Swarm gate rolling updates on health: one task at a time,
``start-first`` (``stop-first`` for an instance with a data volume: one writer), a monitor
window, and ``failure_action: rollback``. ``reconcile`` waits for Swarm's
``UpdateStatus`` and records a rollback like the docker runtime's (the previous version
serves, the store's spec goes back to it, the reason is in ``last_error``).

Networks: a silo tenant's services join an attachable overlay network of its own,
created once under the tenant's lock; pooled tenants share one overlay network.

Secrets: an env value ``secret:NAME`` (the instance's or the app's, such as an OIDC
client secret) becomes a Docker secret mounted at ``/run/secrets/<KEY>`` with
``<KEY>_FILE`` pointing at it; the value is never on the service spec. Secrets are
versioned (``…-<key>-v<N>``) and carry a keyed digest of their value: a pass that finds
a changed value creates the next version, rolls the service onto it and removes the old
one (``mno instance restart`` after ``mno secret set`` rotates).

Volumes: one named volume per instance, created on the manager's node, with a placement
constraint (``node.id == …``) that keeps the service there: Swarm does not move volumes.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import re
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlmodel import col

from mno import clock, crypto, platform, secrets
from mno.errors import MnoError
from mno.nex import containers, namespace, provisioning, runtime_docker, runtime_swarm
from mno.nex.containers import Options, endpoint, network_name, volume_name
from mno.nex.runtime_docker import HostDown, Unhealthy
from mno.nex.runtime_swarm import ServiceSpec, ServiceState, SwarmRuntime, TaskInfo
from mno.nex.snapshot import Snapshot, host_of
from mno.nex.status import LeaseLost, record, rolled_back
from mno.store import leases
from mno.store.db import session_scope
from mno.store.models.nex import Instance
from mno.tenancy.apps import memory_bytes

SECRET_DIR = "/run/secrets"
FAILING_AFTER = 3  # failed tasks in a row that make a wait (or a drift scan) report them


def service_name(snap: Snapshot) -> str:
    return f"{containers._prefix(snap)}{snap.name}"


def overlay_name(snap: Snapshot) -> str:
    """The tenant's overlay network: its own (silo) or the shared pooled one."""
    return network_name(snap) or f"{containers._prefix(snap)}pooled"


def _labels(snap: Snapshot, deploy: int) -> dict[str, str]:
    out = containers.labels(snap, deploy)
    out["traefik.docker.network"] = overlay_name(snap)
    out["traefik.swarm.network"] = overlay_name(snap)
    return out


def _task_labels(snap: Snapshot) -> dict[str, str]:
    """The labels of the tasks' containers: not ``mno.managed`` (the docker runtime's
    drift scan and orphan list leave Swarm's containers alone)."""
    out = {"mno.tenant": snap.tenant_key, "mno.swarm.instance": str(snap.id)}
    if snap.namespace:
        out[namespace.LABEL] = snap.namespace
    return out


def placement_constraints(
    snap: Snapshot, tier: platform.TierConfig | None, node: str | None
) -> list[str]:
    """Swarm placement constraints: the app's and the tier's labels as node labels
    (``node.labels.KEY == VALUE``; the tier's win on a shared key), and the node holding
    a stateful service's volume (``node.id == …``)."""
    labels = {str(k): str(v) for k, v in (snap.app_labels or {}).items()}
    labels |= dict(tier.labels) if tier else {}
    out = [f"node.labels.{key} == {value}" for key, value in sorted(labels.items())]
    if node:
        out.append(f"node.id == {node}")
    return out


def spec(
    snap: Snapshot,
    host: platform.HostConfig,
    deploy: int,
    opts: Options,
    *,
    replicas: int,
    secret_refs: list[tuple[str, str, str]],
    node: str | None,
    force_update: int = 0,
    tier: platform.TierConfig | None = None,
) -> ServiceSpec:
    env: dict[str, str] = {}
    for key, value in {**snap.app_env, **snap.env}.items():
        if secrets.is_ref(value):
            env[f"{key}_FILE"] = f"{SECRET_DIR}/{key}"
        else:
            env[key] = str(value)
    memory = memory_bytes(snap.memory)
    cpus = int(float(snap.cpus) * 1e9) if snap.cpus else None
    volume = volume_name(snap)
    interval = containers.health_interval_s(snap, opts)
    return ServiceSpec(
        name=service_name(snap),
        image=snap.image,
        port=snap.port,
        labels=_labels(snap, deploy),
        container_labels=_task_labels(snap),
        replicas=replicas,
        env=env,
        secrets=secret_refs,
        health_cmd=runtime_docker.health_command(snap.port, snap.health_path)
        if snap.health_path
        else None,
        # one interval for both phases (the engine has no StartInterval before API 1.44):
        # the faster one, so a task turns healthy (and running) soon after it starts
        health_interval_s=min(opts.health_start_interval_s, interval),
        health_retries=opts.health_retries,
        health_start_period_s=opts.health_start_period_s,
        memory_limit=memory,
        memory_reservation=memory,
        nano_cpus_limit=cpus,
        nano_cpus_reservation=cpus,
        pids=snap.pids or opts.pids_default,
        volume=volume,
        volume_path=snap.volume_path,
        network=overlay_name(snap),
        constraints=placement_constraints(snap, tier, node if volume else None),
        spread=[f"node.labels.{label}" for label in (tier.spread if tier else [])],
        restart_attempts=opts.restart_retries,
        monitor_s=max(2.0, 2 * interval),
        stop_grace_s=float(opts.stop_timeout_s),
        publish_mode=host.publish_mode,
        stateful=bool(volume),
        force_update=force_update,
    )


def spec_digest(service: ServiceSpec) -> str:
    """A digest of what a rolling update changes: the task template (not the replicas,
    nor the service's own labels). The volume counts by its placement-time name (a
    restore's ``…-r<N>`` suffix dropped): a restore moves the mount itself and the
    provisioner compares the mount with the store's volume (``_run``)."""
    data = {k: v for k, v in service.__dict__.items() if k not in ("replicas", "labels")}
    if service.volume:
        data["volume"] = re.sub(r"-r\d+$", "", service.volume)
    text = json.dumps(data, sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


OWN_LABELS = ("mno.spec", "mno.deploy")


def _routing(labels: dict[str, str]) -> dict[str, str]:
    """The service labels that say how it is routed (Traefik's and mno's own)."""
    return {k: v for k, v in labels.items() if k not in OWN_LABELS}


def endpoint_of(
    rt: SwarmRuntime,
    host: platform.HostConfig,
    state: ServiceState | None,
    tasks: list[TaskInfo],
    port: int,
) -> str | None:
    """The routing mesh's port (ingress), or the port of the oldest running task (host
    publishing: every task has its own; the edge balances over them)."""
    if host.publish_mode == "ingress":
        return endpoint(host, state.ingress_port if state else None)
    running = sorted((t for t in tasks if t.state == "running"), key=lambda t: t.timestamp)
    for task in running:
        found = rt.task_port(task, port)
        if found:
            return endpoint(host, found)
    return None


# -- secrets -----------------------------------------------------------------------------


@dataclass
class SecretPlan:
    refs: list[tuple[str, str, str]] = field(default_factory=list)  # (id, name, file)
    stale: list[str] = field(default_factory=list)  # ids to remove once unused
    created: list[str] = field(default_factory=list)


def _digest(snap: Snapshot, value: str) -> str:
    """A keyed digest of a secret's value (the master key; the namespace without one):
    it tells a changed value apart without revealing it."""
    key = (crypto.current_key() or f"mno-{snap.namespace}").encode()
    return hmac.new(key, value.encode(), hashlib.sha256).hexdigest()[:24]


def plan_secrets(rt: SwarmRuntime, snap: Snapshot) -> SecretPlan:
    """The Docker secrets the instance's ``secret:`` env values need, created when
    missing or changed (a new version); the older versions are ``stale``."""
    plan = SecretPlan()
    wanted = {k: v for k, v in {**snap.app_env, **snap.env}.items() if secrets.is_ref(v)}
    existing = rt.secrets(instance=str(snap.id))
    for key, ref in sorted(wanted.items()):
        value = str(secrets.resolve(ref))
        digest = _digest(snap, value)
        mine = [s for s in existing if s["labels"].get("mno.secret") == key]
        current = next((s for s in mine if s["labels"].get("mno.digest") == digest), None)
        if current is None:
            version = 1 + max((int(s["labels"].get("mno.version", 0)) for s in mine), default=0)
            name = f"{containers._prefix(snap)}{snap.name}-{key.lower()}-v{version}"
            labels = containers.base_labels(snap) | {
                "mno.instance": str(snap.id),
                "mno.secret": key,
                "mno.version": str(version),
                "mno.digest": digest,
            }
            sid = rt.create_secret(name, value, labels)
            current = {"id": sid, "name": name, "labels": labels}
            plan.created.append(sid)
        plan.refs.append((current["id"], current["name"], key))
    used = {r[0] for r in plan.refs}
    plan.stale = [s["id"] for s in existing if s["id"] not in used]
    return plan


def _remove_secrets(rt: SwarmRuntime, ids: list[str]) -> None:
    for sid in ids:
        rt.remove_secret(sid)


# -- the work ------------------------------------------------------------------------------


def reconcile(
    snap: Snapshot,
    owner: str,
    opts: Options,
    *,
    db_url: str | None = None,
    should_stop: Any = lambda: False,
    final_backup: Any = None,
) -> None:
    """Bring the instance's service to its desired state (see the module docstring).
    ``final_backup(rt, snap)`` writes the backup a termination asks for (without it,
    such a termination keeps the volume)."""
    host = host_of(snap)
    rt = runtime_swarm.runtime(host)
    if snap.desired == "terminated":
        if snap.status != "terminated":
            _terminate(snap, rt, owner, db_url, final_backup)
        return
    try:
        if snap.desired == "stopped":
            _stop(snap, rt, owner, db_url)
        else:
            _run(snap, host, rt, owner, opts, db_url, should_stop)
    except (HostDown, LeaseLost):
        raise
    except Exception as exc:  # recorded on the instance, re-raised for the retry
        message = exc.message if isinstance(exc, MnoError) else f"{type(exc).__name__}: {exc}"
        record(snap.id, owner, status="failed", last_error=message[:2000], db_url=db_url)
        raise


def _prepare(snap: Snapshot, rt: SwarmRuntime, db_url: str | None) -> str | None:
    """The tenant's overlay network (under the tenant's lock) and the instance's volume;
    the node the volume lives on (None without a volume)."""
    silo = network_name(snap) is not None
    labels = containers.base_labels(snap)
    if not silo:
        labels = {k: v for k, v in labels.items() if k != "mno.tenant"} | {"mno.pool": "true"}
    lock = f"mno.nex.network:{snap.namespace}:{snap.tenant_key if silo else '-pooled'}"

    @contextmanager
    def tenant_lock() -> Iterator[None]:
        with session_scope(db_url) as s:
            leases.advisory_lock(s, lock)
            yield

    rt.ensure_network(overlay_name(snap), labels, guard=tenant_lock, driver="overlay")
    volume = volume_name(snap)
    if not volume:
        return None
    rt.ensure_volume(volume, containers.base_labels(snap) | {"mno.instance": str(snap.id)})
    return rt.node_id()


def _node_of(current: ServiceState | None) -> str | None:
    """The node a stateful service is pinned to (its placement constraint)."""
    if current is None:
        return None
    placement = (current.spec.get("TaskTemplate") or {}).get("Placement") or {}
    for c in placement.get("Constraints") or []:
        if c.replace(" ", "").startswith("node.id=="):
            return str(c.split("==", 1)[1].strip())
    return None


def volume_node(snap: Snapshot) -> tuple[SwarmRuntime, ServiceState | None]:
    """Check that the manager mno talks to runs on the node holding the stateful
    instance's volume (the node its service is pinned to), so that a helper container
    created through that engine mounts the volume itself, not a new empty one of the
    same name; the swarm runtime and the service (None when it is gone)."""
    volume = volume_name(snap)
    host = host_of(snap)
    rt = runtime_swarm.runtime(host)
    assert volume, "a stateful instance"
    here = rt.node_id()
    current = rt.service(service_name(snap))
    pinned = _node_of(current)
    if pinned and pinned != here:
        raise runtime_docker.DockerFailure(
            f"instance {snap.name}: its volume {volume} is on node {pinned}, not on node "
            f"{here} that host {host.name}'s base_url reaches",
            "point base_url at the manager on the volume's node (Swarm does not move volumes)",
        )
    if not rt.volume_exists(volume):
        raise runtime_docker.DockerFailure(
            f"instance {snap.name}: its volume {volume} is not on node {here} that host "
            f"{host.name}'s base_url reaches",
            "it was removed, or is on another node (Swarm does not move volumes); "
            "restore a backup into a new instance",
        )
    return rt, current


def _run(
    snap: Snapshot,
    host: platform.HostConfig,
    rt: SwarmRuntime,
    owner: str,
    opts: Options,
    db_url: str | None,
    should_stop: Any,
) -> None:
    name = service_name(snap)
    current = rt.service(name)
    if current is not None and current.labels.get("mno.instance") != str(snap.id):
        raise runtime_docker.NameClash(
            f"host {host.name}: service {name} exists and is not this instance's",
            "remove or rename that service",
        )
    node = _prepare(snap, rt, db_url)
    node = _node_of(current) or node
    plan = plan_secrets(rt, snap)
    force = 0
    if current is not None:
        force = int((current.spec.get("TaskTemplate") or {}).get("ForceUpdate") or 0)
        if snap.action == "restart":
            force += 1
    deploy = snap.deploy + 1 if current is None else snap.deploy
    wanted = spec(
        snap,
        host,
        deploy,
        opts,
        replicas=snap.replicas,
        secret_refs=plan.refs,
        node=node,
        force_update=force,
        tier=platform.load().tier(snap.tenant_tier),
    )
    digest = spec_digest(wanted)
    wanted.labels["mno.spec"] = digest
    wait = opts.ready_timeout_s + snap.replicas * opts.health_start_period_s / 2
    if current is None:
        first = snap.started_at is None
        record(snap.id, owner, status="provisioning" if first else "starting", db_url=db_url)
        state = rt.create_service(wanted)
        tasks = rt.wait_converged(
            name, snap.replicas, snap.port, wait, failures=FAILING_AFTER, should_stop=should_stop
        )
        _running(snap, owner, rt, host, state, tasks, deploy, db_url, started=True)
        _remove_secrets(rt, plan.stale)
        return
    mounted = runtime_swarm.mounted_volume(current.spec, snap.volume_path)
    if current.labels.get("mno.spec") != digest or mounted != wanted.volume:
        # a changed spec, or the mount of a restore that did not finish
        _update(snap, host, rt, owner, current, wanted, plan, wait, db_url, should_stop)
        return
    if _routing(current.labels) != _routing(wanted.labels):
        # a new domain: the labels change, the tasks do not (no rolling update)
        rt.update_service(current, wanted)
    elif current.replicas != snap.replicas:
        record(snap.id, owner, status="starting" if current.replicas == 0 else None, db_url=db_url)
        rt.scale(current, snap.replicas)
    tasks = rt.wait_converged(
        name, snap.replicas, snap.port, wait, failures=FAILING_AFTER, should_stop=should_stop
    )
    _running(snap, owner, rt, host, rt.service(name), tasks, deploy, db_url)
    _remove_secrets(rt, plan.stale)


def _running(
    snap: Snapshot,
    owner: str,
    rt: SwarmRuntime,
    host: platform.HostConfig,
    state: ServiceState | None,
    tasks: list[TaskInfo],
    deploy: int,
    db_url: str | None,
    *,
    started: bool = False,
    **fields: Any,
) -> None:
    extra: dict[str, Any] = {"started_at": clock.now()} if started else {}
    record(
        snap.id,
        owner,
        status="running",
        endpoint=endpoint_of(rt, host, state, tasks, snap.port),
        container_id=None,
        container_name=service_name(snap),
        deploy=deploy,
        action=None,
        drift=None,
        last_error=None,
        tasks_running=len(tasks),
        task_error=None,
        deployed={"image": snap.image, "env": dict(snap.env)},
        db_url=db_url,
        **extra,
        **fields,
    )


def _update(
    snap: Snapshot,
    host: platform.HostConfig,
    rt: SwarmRuntime,
    owner: str,
    current: ServiceState,
    wanted: ServiceSpec,
    plan: SecretPlan,
    wait: float,
    db_url: str | None,
    should_stop: Any,
) -> None:
    """A rolling update gated by Swarm; a rollback is recorded as the docker runtime's."""
    record(snap.id, owner, status="updating", db_url=db_url)
    deploy = snap.deploy + 1
    wanted.labels["mno.deploy"] = str(deploy)
    rt.update_service(current, wanted)
    done = rt.wait_update(
        wanted.name, current.update_started, wait * 2 + 30, should_stop=should_stop
    )
    if done.update_state in runtime_swarm.DONE:
        tasks = rt.wait_converged(
            wanted.name, snap.replicas, snap.port, wait, should_stop=should_stop
        )
        _running(snap, owner, rt, host, done, tasks, deploy, db_url)
        _remove_secrets(rt, plan.stale)
        return
    # rolled back (or paused): the previous version serves; why is on a failed task
    failed = [t for t in rt.tasks(wanted.name, snap.port) if t.error and t.image == wanted.image]
    reason = failed[0].error if failed else (done.update_message or done.update_state)
    tasks = rt.wait_converged(
        wanted.name, current.replicas, snap.port, wait, should_stop=should_stop
    )
    rolled_back(
        snap,
        owner,
        endpoint_of(rt, host, done, tasks, snap.port),
        current.image,
        Unhealthy(f"health check failed: {reason} (swarm: {done.update_message})"),
        db_url,
    )
    record(snap.id, owner, tasks_running=len(tasks), task_error=(reason or "")[:500], db_url=db_url)
    _remove_secrets(rt, plan.created)


def _stop(snap: Snapshot, rt: SwarmRuntime, owner: str, db_url: str | None) -> None:
    """A stopped instance keeps its service at 0 replicas (its spec, volume, secrets)."""
    if snap.status == "stopped":
        return
    current = rt.service(service_name(snap)) if snap.host else None
    if current is not None and current.replicas:
        record(snap.id, owner, status="stopping", db_url=db_url)
        rt.scale(current, 0)
        rt.wait_converged(current.name, 0, snap.port, 60.0)
    record(snap.id, owner, status="stopped", stopped_at=clock.now(), tasks_running=0, db_url=db_url)


def _retry(fn: Any, *args: Any, attempts: int = 50) -> Any:
    """Retry a removal while Swarm still tears the service's tasks down."""
    for _ in range(attempts - 1):
        try:
            return fn(*args)
        except runtime_docker.DockerFailure:
            time.sleep(0.2)
    return fn(*args)


def _released(rt: SwarmRuntime, volume: str, timeout_s: float = 60.0) -> None:
    """Wait until no running container mounts the volume (a removed service's tasks
    stop asynchronously)."""
    deadline = time.monotonic() + timeout_s
    while any(
        state is not None and state.status in ("running", "restarting", "removing")
        for state in (rt.inspect(cid) for cid in rt.volume_users(volume))
    ):
        if time.monotonic() >= deadline:
            raise Unhealthy(f"volume {volume} is still in use {timeout_s:g}s after the removal")
        time.sleep(0.2)


def _terminate(
    snap: Snapshot, rt: SwarmRuntime, owner: str, db_url: str | None, final_backup: Any
) -> None:
    if snap.status != "terminating":
        record(snap.id, owner, status="terminating", db_url=db_url)
    if snap.host:
        name = service_name(snap)
        current = rt.service(name)
        if current is not None and current.labels.get("mno.instance") == str(snap.id):
            rt.remove_service(current.id)
        for secret in rt.secrets(instance=str(snap.id)):
            _retry(rt.remove_secret, secret["id"])
        volume = volume_name(snap)
        backed_up = False
        if volume and snap.backup_on_terminate and final_backup is not None:
            _released(rt, volume)  # the tasks stopped writing: a consistent final backup
            final_backup(rt, snap)
            backed_up = True
        if volume and (backed_up or (snap.purge_data and not snap.backup_on_terminate)):
            _retry(rt.remove_volume, volume)
            if snap.previous_volume:  # the data a restore replaced goes too
                _retry(rt.remove_volume, snap.previous_volume)
        network = network_name(snap)
        if network and provisioning.last_on_host(snap, db_url):
            with contextlib.suppress(runtime_docker.DockerFailure):
                _retry(rt.remove_network, network)
    record(
        snap.id,
        owner,
        status="terminated",
        terminated_at=clock.now(),
        live_name=None,
        container_id=None,
        endpoint=None,
        tasks_running=0,
        db_url=db_url,
    )


# -- drift -----------------------------------------------------------------------------------


@dataclass
class Seen:
    """What a drift scan learnt about one instance's service."""

    id: uuid.UUID
    name: str
    repair: str | None = None
    note: str | None = None
    running: int | None = None
    error: str | None = None


def scan(host: platform.HostConfig, expected: list[Any], ns: str) -> list[Seen]:
    """Compare the services on a swarm with the instances expected there (rows of id,
    name, desired, port, replicas): a service removed or scaled outside mno is marked for
    repair; tasks that keep failing are reported with their last error."""
    rt = runtime_swarm.runtime(host)
    found = {s.labels.get("mno.instance"): s for s in rt.services(namespace=ns)}
    out = []
    for iid, name, desired, port, replicas in expected:
        seen = Seen(iid, name)
        service = found.get(str(iid))
        want = replicas if desired == "running" else 0
        if service is None:
            if desired == "running":
                seen.repair = "service removed outside mno; recreated"
            else:
                seen.note = "service removed outside mno while stopped"
            out.append(seen)
            continue
        if service.replicas != want:
            seen.repair = f"service scaled to {service.replicas} outside mno; scaled back to {want}"
        tasks = rt.tasks(service.id, int(port))
        seen.running = sum(1 for t in tasks if t.state == "running")
        failed = [t for t in tasks if t.state in runtime_swarm.FAILED_TASK]
        if failed and seen.running < want:
            seen.error = (failed[0].error or failed[0].state)[:500]
            if len(failed) >= FAILING_AFTER:
                seen.note = f"{len(failed)} tasks failed; last error: {seen.error}"[:500]
        out.append(seen)
    return out


def observe(seen: list[Seen], db_url: str | None = None) -> None:
    """Keep each instance's running task count and last task error (an observation of
    Swarm's state, like an endpoint: no audit row; a repair or a report is audited by the
    drift scan)."""
    from mno.store.types import table_of

    table = table_of(Instance)
    with session_scope(db_url) as s:
        for item in seen:
            if item.running is None and item.error is None:
                continue
            s.execute(
                sa.update(table)
                .where(col(Instance.id) == item.id)
                .values(tasks_running=item.running, task_error=item.error)
            )
