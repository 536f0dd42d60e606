"""Docker hosts: the list from the platform YAML, their reachability, capacity and placement.

With no host configured, Nex uses the local engine (``DOCKER_HOST`` or the default unix
socket) under the name ``local``. Placement picks the reachable host with the most free
memory whose labels satisfy the app's labels, skipping hosts at their instance limit.
"""

from __future__ import annotations

import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from mno import platform
from mno.errors import NotFound, Unavailable
from mno.nex import runtime_docker

if TYPE_CHECKING:
    from sqlmodel import Session

    from mno.platform import HostConfig
    from mno.store.models.tenancy import App

LOCAL = "local"
LIVE = ("staged", "provisioning", "starting", "running", "stopping", "stopped", "updating")
LIVE_ALL = (*LIVE, "terminating", "failed")


def configured(config: platform.PlatformConfig | None = None) -> list[HostConfig]:
    """The configured hosts, or the local engine when none is listed."""
    config = config or platform.load()
    if config.hosts:
        return list(config.hosts)
    base_url = os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"
    return [platform.HostConfig(name=LOCAL, base_url=base_url)]


def get(name: str, config: platform.PlatformConfig | None = None) -> HostConfig:
    for host in configured(config):
        if host.name == name:
            return host
    names = ", ".join(h.name for h in configured(config))
    raise NotFound(f"host {name} is not configured", f"configured hosts: {names}")


@dataclass
class Probe:
    reachable: bool
    version: str | None = None
    error: str | None = None
    at: float = 0.0


_probes: dict[str, Probe] = {}
_probes_lock = threading.Lock()


def probe(hosts: list[HostConfig], max_age_s: float = 0.0) -> dict[str, Probe]:
    """Ping each host (in parallel); results younger than ``max_age_s`` are reused."""
    now = time.monotonic()
    out: dict[str, Probe] = {}
    todo = []
    with _probes_lock:
        for host in hosts:
            cached = _probes.get(host.name)
            if cached is not None and max_age_s and now - cached.at <= max_age_s:
                out[host.name] = cached
            else:
                todo.append(host)

    def one(host: HostConfig) -> tuple[str, Probe]:
        rt = runtime_docker.runtime(host)
        try:
            return host.name, Probe(True, rt.version(), at=time.monotonic())
        except (runtime_docker.HostDown, runtime_docker.DockerFailure) as exc:
            return host.name, Probe(False, error=exc.message, at=time.monotonic())

    if todo:
        with ThreadPoolExecutor(min(8, len(todo))) as pool:
            for name, result in pool.map(one, todo):
                out[name] = result
        with _probes_lock:
            _probes.update({n: out[n] for n in (h.name for h in todo)})
    return out


def mark(host: str, reachable: bool, error: str | None = None) -> None:
    """Record what a call just learnt about a host (saves a ping on the next placement)."""
    with _probes_lock:
        old = _probes.get(host)
        _probes[host] = Probe(reachable, old.version if old else None, error, time.monotonic())


def usage(session: Session) -> dict[str, dict[str, int]]:
    """Per host: live instances and the memory their limits reserve (bytes)."""
    from sqlmodel import select

    from mno.store.models.nex import Instance
    from mno.tenancy.apps import memory_bytes

    rows = session.exec(
        select(Instance.host, Instance.memory).where(
            Instance.host.is_not(None),  # type: ignore[union-attr]
            Instance.live_name.is_not(None),  # type: ignore[union-attr]
        )
    ).all()
    out: dict[str, dict[str, int]] = {}
    for host, memory in rows:
        entry = out.setdefault(str(host), {"instances": 0, "memory": 0})
        entry["instances"] += 1
        entry["memory"] += memory_bytes(memory) or 0
    return out


def capacity(host: HostConfig) -> int | None:
    from mno.tenancy.apps import memory_bytes

    return memory_bytes(host.memory) if host.memory else None


def fits(host: HostConfig, app_labels: dict[str, Any]) -> bool:
    return all(str(host.labels.get(k)) == str(v) for k, v in (app_labels or {}).items())


def place(
    session: Session,
    app: App,
    memory: int | None,
    reachable: set[str],
    config: platform.PlatformConfig | None = None,
) -> HostConfig:
    """The host for a new instance; ``Unavailable`` when none can take it.

    Call it in the transaction that records the choice: on PostgreSQL it takes a
    transaction-scoped advisory lock so concurrent placements see each other's choices
    (SQLite writers are serialised already)."""
    import sqlalchemy as sa

    if session.get_bind().dialect.name == "postgresql":
        session.execute(sa.text("SELECT pg_advisory_xact_lock(hashtext('mno.nex.placement'))"))
    hosts = configured(config)
    used = usage(session)
    best: tuple[int, int, HostConfig] | None = None
    reasons = []
    for index, host in enumerate(hosts):
        if host.name not in reachable:
            reasons.append(f"{host.name}: unreachable")
            continue
        if not fits(host, app.labels):
            reasons.append(f"{host.name}: labels do not match {app.labels}")
            continue
        taken = used.get(host.name, {"instances": 0, "memory": 0})
        if host.max_instances is not None and taken["instances"] >= host.max_instances:
            reasons.append(f"{host.name}: at its limit of {host.max_instances} instances")
            continue
        cap = capacity(host)
        free = (cap - taken["memory"]) if cap is not None else 2**62
        if memory and free < memory:
            reasons.append(f"{host.name}: {free} bytes free")
            continue
        # most free memory first; ties keep the configured order
        if best is None or free > best[0]:
            best = (free, -index, host)
    if best is None:
        raise Unavailable(f"no host can take an instance of {app.code}", "; ".join(reasons))
    return best[2]


def host_rows(session: Session, config: platform.PlatformConfig | None = None) -> list[dict]:
    """What ``mno host list`` shows: reachability, version, instances, used/free memory."""
    hosts = configured(config)
    probes = probe(hosts)
    used = usage(session)
    rows = []
    for host in hosts:
        p = probes[host.name]
        taken = used.get(host.name, {"instances": 0, "memory": 0})
        cap = capacity(host)
        rows.append(
            {
                "name": host.name,
                "base_url": host.base_url,
                "reachable": p.reachable,
                "version": p.version,
                "instances": taken["instances"],
                "max_instances": host.max_instances,
                "memory_used": taken["memory"],
                "memory_capacity": cap,
                "memory_free": (cap - taken["memory"]) if cap is not None else None,
                "labels": dict(host.labels),
                "error": p.error,
            }
        )
    return rows
