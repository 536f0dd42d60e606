"""The provisioner's work on one instance: bring Docker to the instance's desired state.

``reconcile(instance_id, owner, options)`` reads the instance (``mno.nex.snapshot``), does
what Docker work is needed and records each status change in its own short transaction
(with its audit row and event), fenced on the provisioner's lease (``mno.nex.status``). It
is idempotent: a crash at any point is repaired by running it again (containers have
deterministic names, see ``mno.nex.containers``, and are looked up before anything is
created). Drift detection lives in ``mno.nex.drift``.
"""

from __future__ import annotations

import contextlib
import uuid
from typing import Any

from mno import clock, platform
from mno.errors import MnoError
from mno.nex import (
    backups,
    capacity,
    hosts,
    namespace,
    provisioning,
    restores,
    runtime_docker,
    waiting,
)
from mno.nex.containers import Options, endpoint, network_name, prepare, spec, volume_name
from mno.nex.runtime_docker import HostDown, Runtime
from mno.nex.snapshot import Snapshot, host_of, load
from mno.nex.status import LeaseLost, apply, record, rolled_back
from mno.store.db import session_scope
from mno.store.models.nex import Instance
from mno.store.models.tenancy import App
from mno.tenancy.apps import memory_bytes

# -- placement -------------------------------------------------------------------------


def place(
    snap: Snapshot, owner: str, db_url: str | None = None, status: str | None = None
) -> platform.HostConfig:
    """Choose a host for an instance that has none and record it, with the new status
    (one transaction)."""
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
        labels = config.tier(snap.tenant_tier).labels
        no_room: str | None = None
        try:
            host = hosts.place(s, app, memory_bytes(inst.memory), reachable, config, labels)
        except hosts.NoRoom as exc:  # waits for room instead of failing
            no_room = str(exc)
            capacity.wait_for_room(s, inst, no_room)
        else:
            waited = inst.status == waiting.WAITING
            volume, network = volume_name(snap), network_name(snap)
            apply(s, inst, status, host=host.name, volume=volume, network=network)
            if waited:
                waiting.left_waiting(s)
    if no_room is not None:
        raise capacity.WaitingForRoom(f"instance {snap.name} waits for room: {no_room}")
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
    if _on_swarm(snap, owner, db_url):
        from mno.nex import services

        services.reconcile(
            snap,
            owner,
            opts,
            db_url=db_url,
            should_stop=should_stop,
            final_backup=backups.final_backup,
        )
        if snap.restore_volume and snap.host:
            # only now: the service is back on the volume the store names
            _clear_restore(snap, owner, db_url)
        return
    if snap.restore_volume and snap.host:
        _clear_restore(snap, owner, db_url)
    if snap.desired == "terminated":
        if snap.status != "terminated":
            _terminate(snap, owner, opts, db_url)
        return
    if snap.desired == "stopped":
        _stop(snap, owner, opts, db_url)
        return
    try:
        _run(snap, owner, opts, db_url, should_stop)
    except (HostDown, LeaseLost, capacity.WaitingForRoom):
        raise
    except Exception as exc:  # recorded on the instance, re-raised for the retry
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


def _on_swarm(snap: Snapshot, owner: str, db_url: str | None) -> bool:
    """Whether the instance lives (or, placed now, will live) on a swarm host. Only a
    platform with a swarm host places here; the docker path places in ``_run``."""
    if not any(h.runtime == "swarm" for h in snap.hosts):
        return False
    if not snap.host:
        if snap.desired != "running":
            return False
        place(snap, owner, db_url, status="provisioning")
    return host_of(snap).runtime == "swarm"


def _clear_restore(snap: Snapshot, owner: str, db_url: str | None) -> None:
    """A restore died before its swap (its lease expired): the store still names the
    previous container and volume; remove what the restore left, so that nothing else
    mounts its volume or takes its container's name (see ``mno.nex.restores``)."""
    rt = runtime_docker.runtime(host_of(snap))
    if restores.clear_restore(rt, snap):
        record(snap.id, owner, restore_volume=None, db_url=db_url)
        snap.restore_volume = None


def _ready(
    rt: Runtime, ref: str, snap: Snapshot, opts: Options, should_stop: Any
) -> runtime_docker.ContainerState:
    return rt.wait_ready(
        ref,
        snap.port,
        opts.ready_timeout_s,
        start_interval_s=opts.health_start_interval_s,
        should_stop=should_stop,
    )


def _deployed(snap: Snapshot) -> dict[str, Any]:
    """What a new container is created from, kept for a later rollback."""
    return {"image": snap.image, "env": dict(snap.env)}


def _run(snap: Snapshot, owner: str, opts: Options, db_url: str | None, should_stop: Any) -> None:
    placed_now = not snap.host  # a first deploy: placement records "provisioning" too
    host = place(snap, owner, db_url, status="provisioning") if placed_now else host_of(snap)
    rt = runtime_docker.runtime(host)
    current = rt.inspect(snap.container_id, snap.port) if snap.container_id else None
    if current is not None and not namespace.owns(snap.namespace, str(snap.id), current.labels):
        current = None  # not this instance's container: never touched, a new one is made
    if snap.action == "update" and current is not None and current.status == "running":
        _roll(snap, host, rt, current, owner, opts, db_url, should_stop)
        return
    if (
        current is not None
        and current.status == "running"
        and current.health != "unhealthy"
        and snap.action != "restart"
    ):
        if current.health == "starting":  # Docker has not checked it yet: mno does
            current = _ready(rt, current.id, snap, opts, should_stop)
        ep = endpoint(host, current.host_port)
        if snap.status != "running" or snap.action:
            record(
                snap.id,
                owner,
                status="running",
                endpoint=ep,
                action=None,
                drift=None,
                last_error=None,
                db_url=db_url,
            )
        elif ep != snap.endpoint:  # restarted outside mno: a new host port
            record(snap.id, owner, endpoint=ep, db_url=db_url)
        return
    if current is not None and snap.action is None and snap.status != "failed":
        if current.status in ("created", "exited", "running"):
            # stopped by us (start) or by someone else (drift): start the same container
            record(snap.id, owner, status="starting", db_url=db_url)
            if current.status == "running":
                rt.restart(current.id, opts.stop_timeout_s)
            else:
                rt.start(current.id)
            ready = _ready(rt, current.id, snap, opts, should_stop)
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
        ready = _ready(rt, current.id, snap, opts, should_stop)
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
    prepare(snap, rt, db_url)
    container_spec = spec(snap, host, deploy, opts)
    state = rt.run(container_spec)
    snap.pending = {
        "container_id": state.id,
        "container_name": container_spec.name,
        "deploy": deploy,
        "endpoint": endpoint(host, state.host_port),
    }
    ready = _ready(rt, state.id, snap, opts, should_stop)
    record(
        snap.id,
        owner,
        status="running",
        started_at=clock.now(),
        action=None,
        drift=None,
        last_error=None,
        deployed=_deployed(snap),
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
    containers never write to one volume (the old one is only stopped, and removed once
    the new one is healthy).

    A new container that fails its health gate (or cannot be created) is removed and the
    old one serves again at once; the instance's spec goes back to what the old one runs
    and the reason is kept in ``last_error``. The pass ends without an
    error, so the work item is settled and the same update is not retried; a new update
    is a new request. An interrupted wait (the agent stops) puts the old container back
    and leaves the update pending."""
    record(snap.id, owner, status="updating", db_url=db_url)
    deploy = snap.deploy + 1
    new_spec = spec(snap, host, deploy, opts)
    stopped = bool(snap.volume_path)
    if stopped:
        rt.stop(current.id, opts.stop_timeout_s)
    try:
        state = rt.run(new_spec)
        ready = _ready(rt, state.id, snap, opts, should_stop)
    except (HostDown, LeaseLost, runtime_docker.Interrupted):
        with contextlib.suppress(HostDown):  # an unreachable host is repaired later
            _put_back(rt, new_spec.name, current.id, stopped)
        raise
    except (runtime_docker.Unhealthy, runtime_docker.DockerFailure) as exc:
        _put_back(rt, new_spec.name, current.id, stopped)
        old = _ready(rt, current.id, snap, opts, should_stop) if stopped else current
        rolled_back(snap, owner, endpoint(host, old.host_port), old.image, exc, db_url)
        return
    except Exception:  # cleaned up and re-raised
        _put_back(rt, new_spec.name, current.id, stopped)
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
        deployed=_deployed(snap),
        db_url=db_url,
    )
    rt.stop(current.id, opts.stop_timeout_s)
    rt.remove(current.id)


def _put_back(rt: Runtime, new_name: str, old_id: str, stopped: bool) -> None:
    """Remove the new container; start the old one again when it was stopped."""
    rt.remove(new_name)
    if stopped:
        rt.start(old_id)


def _stop(snap: Snapshot, owner: str, opts: Options, db_url: str | None) -> None:
    if snap.status == "stopped":
        return
    if not snap.host or not snap.container_id:
        record(snap.id, owner, status="stopped", stopped_at=clock.now(), db_url=db_url)
        return
    rt = runtime_docker.runtime(host_of(snap))
    record(snap.id, owner, status="stopping", db_url=db_url)
    rt.stop(snap.container_id, opts.stop_timeout_s)
    record(snap.id, owner, status="stopped", stopped_at=clock.now(), db_url=db_url)


def _terminate(snap: Snapshot, owner: str, opts: Options, db_url: str | None) -> None:
    if snap.status != "terminating":
        record(snap.id, owner, status="terminating", db_url=db_url)
    if snap.host:
        rt = runtime_docker.runtime(host_of(snap))
        volume = volume_name(snap)
        if snap.backup_on_terminate and volume:
            backups.final_backup(rt, snap)
        for c in rt.list_managed(instance=str(snap.id)):
            if namespace.owns(snap.namespace, str(snap.id), c.labels):
                rt.remove(c.id)
        if volume and (snap.purge_data or snap.backup_on_terminate):
            rt.remove_volume(volume)
            if snap.previous_volume:  # the data a restore replaced goes too
                rt.remove_volume(snap.previous_volume)
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
