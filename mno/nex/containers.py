"""The container an instance runs as: its name, labels, volume, network and spec.

Names are deterministic (``mno-<name>-<deploy>``, ``mno-<name>-<id8>-data``,
``mno-tenant-<key>`` for a silo tenant's network), so a pass that crashed finds its work
again by looking names up. ``Options`` holds the provisioner's settings for running
containers (health checks, timeouts, restart policy, default pids limit).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from mno import platform, secrets
from mno.nex import runtime_docker
from mno.nex.runtime_docker import ContainerSpec
from mno.settings import parse_duration
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
        ):
            if key in data:
                setattr(opts, f"{key}_s", parse_duration(data[key]).total_seconds())
        for key in ("health_retries", "stop_timeout_s", "restart_retries", "pids_default"):
            if key in data:
                setattr(opts, key, data[key])
        return opts


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


def prepare(snap: Snapshot, rt: Runtime) -> None:
    """Create the tenant network and the instance's volume when they are missing."""
    base = {runtime_docker.MANAGED: "true", "mno.tenant": snap.tenant_key}
    network = network_name(snap)
    if network:
        rt.ensure_network(network, base)
    volume = volume_name(snap)
    if volume:
        rt.ensure_volume(volume, base | {"mno.instance": str(snap.id)})
