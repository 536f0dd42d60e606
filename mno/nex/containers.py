"""The container an instance runs as: its name, labels, volume, network and spec.

Names are deterministic and carry the store's namespace (``mno-<ns>-<name>-<deploy>``,
``mno-<ns>-<name>-<id8>-data``, ``mno-<ns>-tenant-<key>`` for a silo tenant's network,
see ``mno.nex.namespace``), so a pass that crashed finds its work again by looking names
up, and two stores on one engine never pick the same name. Labels carry the namespace
and the instance id; a container found under an instance's name is reused only when both
match (``runtime_docker.Runtime.create``). ``Options`` holds the provisioner's settings
for running containers (health checks, timeouts, restart policy, default pids limit).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from mno import platform, secrets
from mno.nex import namespace, runtime_docker
from mno.nex.runtime_docker import ContainerSpec
from mno.settings import parse_duration
from mno.store import leases
from mno.store.db import session_scope
from mno.tenancy.apps import memory_bytes

if TYPE_CHECKING:
    from mno.nex.runtime_docker import Runtime
    from mno.nex.snapshot import Snapshot


@dataclass
class Options:
    """How the provisioner runs containers (``options`` of the provisioner agent)."""

    ready_timeout_s: float = 60.0
    health_interval_s: float = 10.0  # Docker's checks once healthy, unless the app sets it
    health_start_interval_s: float = 1.0  # checks while a container starts
    health_retries: int = 3
    health_start_period_s: float = 30.0
    stop_timeout_s: int = 10
    restart_retries: int = 5
    host_down_retry_s: float = 30.0
    capacity_retry_s: float = 30.0  # an instance waiting for room, between passes
    pids_default: int | None = 512

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Options:
        opts = cls()
        for key in (
            "ready_timeout",
            "health_interval",
            "health_start_interval",
            "health_start_period",
            "host_down_retry",
            "capacity_retry",
        ):
            if key in data:
                setattr(opts, f"{key}_s", parse_duration(data[key]).total_seconds())
        for key in ("health_retries", "stop_timeout_s", "restart_retries", "pids_default"):
            if key in data:
                setattr(opts, key, data[key])
        return opts


def _prefix(snap: Snapshot) -> str:
    return f"mno-{snap.namespace}-" if snap.namespace else "mno-"


def container_name(snap: Snapshot, deploy: int) -> str:
    return f"{_prefix(snap)}{snap.name}-{deploy}"


def volume_name(snap: Snapshot) -> str | None:
    """The instance's data volume: the one recorded at placement (an instance placed
    before namespaces keeps its old name), else a new name."""
    if not snap.volume_path:
        return None
    return snap.volume or f"{_prefix(snap)}{snap.name}-{str(snap.id)[:8]}-data"


def network_name(snap: Snapshot) -> str | None:
    """A silo tenant's network (the one recorded at placement, else a new name)."""
    if platform.load().tier(snap.tenant_tier).isolation != "silo":
        return None
    return snap.network or f"{_prefix(snap)}tenant-{snap.tenant_key}"


def base_labels(snap: Snapshot) -> dict[str, str]:
    """The labels every Docker object of the instance's tenant carries."""
    out = {runtime_docker.MANAGED: "true", "mno.tenant": snap.tenant_key}
    if snap.namespace:
        out[namespace.LABEL] = snap.namespace
    return out


def labels(snap: Snapshot, deploy: int, apps_domain: str | None = None) -> dict[str, str]:
    # the namespace keeps two stores' routers apart on one Traefik
    router = f"{snap.namespace}-{snap.name}" if snap.namespace else snap.name
    names = [snap.url.split("://", 1)[-1].split("/", 1)[0], *snap.domains]
    rule = " || ".join(f"Host(`{n}`)" for n in names)
    out = {
        **base_labels(snap),
        "mno.instance": str(snap.id),
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
        health_interval_s=health_interval_s(snap, opts),
        health_start_interval_s=min(opts.health_start_interval_s, health_interval_s(snap, opts)),
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


def helper_spec(
    snap: Snapshot, host: platform.HostConfig, kind: str, labels: dict[str, str]
) -> ContainerSpec:
    """A container that only mounts the instance's volume (``snap.volume``) to read or
    fill it through the engine's archive API: created, never started. It names no
    network (a swarm's tenant network is an overlay the docker runtime does not make),
    carries no env (no secret value lands in its config) and has no health check."""
    return ContainerSpec(
        name=f"mno-{snap.name}-{kind}-{uuid.uuid4().hex[:6]}",
        image=snap.image,
        port=snap.port,
        labels=labels,
        publish_address=host.publish_address,
        volume=volume_name(snap),
        volume_path=snap.volume_path,
    )


def health_interval_s(snap: Snapshot, opts: Options) -> float:
    """Seconds between Docker's health checks of a running container: the app's
    ``health_interval``, else the provisioner's ``health_interval`` option."""
    if snap.health_interval:
        return parse_duration(snap.health_interval).total_seconds()
    return opts.health_interval_s


def endpoint(host: platform.HostConfig, port: int | None) -> str | None:
    if port is None:
        return None
    address = host.publish_address
    if ":" in address:
        address = f"[{address}]"
    return f"http://{address}:{port}"


def prepare(snap: Snapshot, rt: Runtime, db_url: str | None = None) -> str | None:
    """Create the tenant network and the instance's volume when they are missing; the
    network's id (None without one). The network is created under the tenant's lock,
    held in the store, so provisioners of several processes create it once."""
    base = base_labels(snap)
    network = network_name(snap)
    network_id = None
    if network:

        @contextmanager
        def tenant_lock() -> Iterator[None]:
            with session_scope(db_url) as s:  # SQLite: its writers are serialised already
                leases.advisory_lock(s, f"mno.nex.network:{snap.namespace}:{snap.tenant_key}")
                yield

        network_id = rt.ensure_network(network, base, guard=tenant_lock)
    volume = volume_name(snap)
    if volume:
        rt.ensure_volume(volume, base | {"mno.instance": str(snap.id)})
    return network_id
