"""Docker hosts: their list, reachability, capacity and placement.

Hosts come from two places: the ``hosts`` of the platform YAML (read by each process
from its own file) and the hosts kept in the store (``mno host add`` or ``DockerHost``
documents applied by GitOps), which every agent sharing the store sees at once. A name
may be in only one of them. With no host anywhere, Nex uses the local engine
(``DOCKER_HOST`` or the default unix socket) under the name ``local``.

No host change orphans a placed instance: adding the first host to the store while
instances run on the implicit ``local`` host keeps the local engine as a stored host
named ``local`` (removable like any other once they are gone); a platform YAML that
stops listing ``local`` keeps it as a host for the instances still placed there (new
ones are not placed on it); removing a host that still has live instances is refused.
One engine is one host: adding a host whose engine (``docker info`` ID) is already a
host is refused, so its capacity is not counted twice.

Placement picks the reachable host with the most free memory whose labels satisfy the
app's labels and
those of the tenant's tier, skipping hosts at their instance limit.
"""

from __future__ import annotations

import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from pydantic import ValidationError
from sqlmodel import Session, col, select

from mno import platform
from mno.errors import BadInput, Conflict, NotFound, Unavailable
from mno.nex import runtime_docker, waiting
from mno.store import audit, leases, outbox
from mno.store.models.nex import DockerHost, Instance
from mno.store.types import table_of
from mno.tenancy.apps import memory_bytes, parse_memory

if TYPE_CHECKING:
    from mno.platform import HostConfig
    from mno.store.models.tenancy import App

LOCAL = "local"
ENGINE_ID_S = 5  # seconds a host add waits for an engine's id
LIVE = ("staged", "provisioning", "starting", "running", "stopping", "stopped", "updating")
LIVE_ALL = (*LIVE, "terminating", "failed")


def configured(
    config: platform.PlatformConfig | None = None, session: Session | None = None
) -> list[HostConfig]:
    """The hosts of the platform YAML, then those kept in the store (when a ``session``
    is given), or the local engine when there are none."""
    config = config or platform.load()
    hosts = list(config.hosts)
    if session is not None:
        listed = {h.name for h in hosts}
        hosts += [h for h in stored(session) if h.name not in listed]
    if not hosts:
        return [implicit_local()]
    if session is not None and LOCAL not in {h.name for h in hosts} and _placed_on_local(session):
        hosts.append(implicit_local())  # kept for the instances still placed there
    return hosts


def implicit_local() -> HostConfig:
    """The local engine as Nex uses it when no host is declared."""
    base_url = os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"
    return platform.HostConfig(name=LOCAL, base_url=base_url)


def _placed_on_local(session: Session) -> bool:
    query = (
        select(Instance.id)
        .where(Instance.host == LOCAL, col(Instance.live_name).is_not(None))
        .limit(1)
    )
    return session.exec(query).first() is not None


def _declared(config: platform.PlatformConfig, session: Session) -> set[str]:
    """The names of the hosts the YAML or the store declare (not the implicit one)."""
    return {h.name for h in config.hosts} | {h.name for h in stored(session)}


def find(name: str, candidates: list[HostConfig]) -> HostConfig:
    """The host called ``name`` among ``candidates``."""
    for host in candidates:
        if host.name == name:
            return host
    names = ", ".join(h.name for h in candidates)
    raise NotFound(f"host {name} is not configured", f"configured hosts: {names}")


def get(
    name: str, config: platform.PlatformConfig | None = None, session: Session | None = None
) -> HostConfig:
    return find(name, configured(config, session))


# -- hosts kept in the store -------------------------------------------------------------

FIELDS = ("base_url", "publish_address", "memory", "max_instances", "labels", "timeout")


def _as_config(row: Any) -> HostConfig:
    return platform.HostConfig(
        name=row.name,
        base_url=row.base_url,
        publish_address=row.publish_address,
        memory=row.memory,
        max_instances=row.max_instances,
        labels=dict(row.labels or {}),
        timeout=row.timeout,
    )


def stored(session: Session) -> list[HostConfig]:
    """The hosts kept in the store, by name."""
    table = table_of(DockerHost)
    return [_as_config(r) for r in session.execute(sa.select(table).order_by(table.c.name))]


def check(name: str, fields: dict[str, Any]) -> HostConfig:
    """A host's settings checked by the platform YAML's own model (``BadInput`` naming
    the field otherwise)."""
    try:
        host = platform.HostConfig.model_validate({"name": name, **fields})
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise BadInput(f"host {name}: {where}: {first['msg']}") from None
    host.memory = parse_memory(host.memory)
    if not host.base_url.startswith(("unix://", "tcp://", "ssh://", "http://", "https://")):
        raise BadInput(
            f"host {name}: invalid base_url {host.base_url!r}", "unix://, tcp:// or ssh://"
        )
    return host


def _row(session: Session, name: str) -> Any:
    row = session.exec(select(DockerHost).where(DockerHost.name == name)).first()
    if row is None:
        listed = {h.name for h in platform.load().hosts}
        hint = "it is listed in the platform YAML; change it there" if name in listed else None
        raise NotFound(f"host {name} is not kept in the store", hint or "see `mno host list`")
    return row


def _snapshot(row: Any) -> dict[str, Any]:
    return {"name": row.name} | {k: getattr(row, k) for k in FIELDS}


def add(
    session: Session, name: str, config: platform.PlatformConfig | None = None, **fields: Any
) -> HostConfig:
    """Keep a new Docker host in the store; placement may use it at once."""
    unknown = set(fields) - set(FIELDS)
    if unknown:
        raise BadInput(f"unknown host field(s): {', '.join(sorted(unknown))}")
    host = check(name, fields)
    config = config or platform.load()
    if name in {h.name for h in config.hosts}:
        raise Conflict(
            f"host {name} is listed in the platform YAML", "keep each host in one place only"
        )
    if session.exec(select(DockerHost).where(DockerHost.name == name)).first() is not None:
        raise Conflict(f"host {name} already exists")
    declared = _declared(config, session)
    # local is the implicit host and instances run there: it stays a host, in the store
    keep_local = name != LOCAL and not declared and _placed_on_local(session)
    others = [h for h in configured(config, session) if h.name != name]
    if not keep_local:  # an implicit local host with nothing on it is not kept
        others = [h for h in others if h.name in declared]
    same_engine(host, others)
    if keep_local:
        _keep_local(session)
    return _insert(session, host)


def _keep_local(session: Session) -> None:
    """Keep the implicit local host in the store as a real host."""
    _insert(session, implicit_local(), note="kept as a host when others were declared")


def _insert(session: Session, host: HostConfig, note: str | None = None) -> HostConfig:
    name = host.name
    row = DockerHost(**host.model_dump(exclude={"runtime", "publish_mode"}))
    session.add(row)
    session.flush()
    after = _snapshot(row)
    audit.record(
        session,
        "host.create",
        target_type="host",
        target_id=row.id,
        target=name,
        after=after | ({"note": note} if note else {}),
    )
    outbox.emit(session, "host.created", after)
    _room_appeared(session)
    return host


def _room_appeared(session: Session) -> None:
    """A host added or changed may take the instances waiting for room."""
    session.flush()
    waiting.room_appeared(session)


def engine_ids(hosts: list[HostConfig]) -> dict[str, str]:
    """Each reachable host's engine id (``docker info`` ID), asked in parallel."""

    def one(host: HostConfig) -> tuple[str, str | None]:
        # a short timeout of its own: an engine that does not answer is not checked
        rt = runtime_docker.Runtime(host.name, host.base_url, min(host.timeout, ENGINE_ID_S))
        try:
            return host.name, rt.engine_id() or None
        except (runtime_docker.HostDown, runtime_docker.DockerFailure):
            return host.name, None
        finally:
            rt.close()

    if not hosts:
        return {}
    with ThreadPoolExecutor(min(8, len(hosts))) as pool:
        return {name: eid for name, eid in pool.map(one, hosts) if eid}


def same_engine(host: HostConfig, others: list[HostConfig]) -> None:
    """``Conflict`` when ``host`` reaches the engine of one of ``others`` (another URL of
    one engine would count its capacity twice). An unreachable host is not checked."""
    ids = engine_ids([host, *others])
    mine = ids.pop(host.name, None)
    for other, eid in ids.items():
        if mine and eid == mine:
            raise Conflict(
                f"host {host.name} is the Docker engine of host {other} (engine id {mine[:12]})",
                f"one engine is one host: change host {other} instead",
            )


def update(session: Session, name: str, **fields: Any) -> HostConfig:
    """Change a stored host's settings (fields not given stay)."""
    unknown = set(fields) - set(FIELDS)
    if unknown:
        raise BadInput(f"unknown host field(s): {', '.join(sorted(unknown))}")
    if name == LOCAL and name not in _declared(platform.load(), session):
        _keep_local(session)  # the implicit local host is changed as a stored one
    row = _row(session, name)
    before = _snapshot(row)
    host = check(name, {k: v for k, v in before.items() if k != "name"} | fields)
    if host.base_url != before["base_url"]:
        same_engine(host, [h for h in configured(None, session) if h.name != name])
    for key in FIELDS:
        setattr(row, key, getattr(host, key))
    after = _snapshot(row)
    if after == before:
        return host
    row.touch()
    session.add(row)
    audit.record(
        session,
        "host.update",
        target_type="host",
        target_id=row.id,
        target=name,
        before=before,
        after=after,
    )
    outbox.emit(session, "host.updated", {"name": name, "changes": audit.diff(before, after)})
    _room_appeared(session)
    return host


def remove(session: Session, name: str) -> None:
    """Forget a stored host; refused while live instances are placed on it."""
    row = _row(session, name)
    live = sorted(
        session.exec(
            select(Instance.name).where(
                Instance.host == name,
                col(Instance.live_name).is_not(None),
            )
        ).all()
    )
    if live:
        shown = ", ".join(live[:5]) + (f" and {len(live) - 5} more" if len(live) > 5 else "")
        raise Conflict(
            f"host {name} still has {len(live)} live instance(s): {shown}",
            "terminate them first (`mno instance terminate NAME`)",
        )
    before = _snapshot(row)
    session.delete(row)
    audit.record(
        session, "host.delete", target_type="host", target_id=row.id, target=name, before=before
    )
    outbox.emit(session, "host.deleted", {"name": name})
    session.flush()


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
    rows = session.exec(
        select(Instance.host, Instance.memory).where(
            col(Instance.host).is_not(None),
            col(Instance.live_name).is_not(None),
        )
    ).all()
    out: dict[str, dict[str, int]] = {}
    for host, memory in rows:
        entry = out.setdefault(str(host), {"instances": 0, "memory": 0})
        entry["instances"] += 1
        entry["memory"] += memory_bytes(memory) or 0
    return out


def capacity(host: HostConfig) -> int | None:
    return memory_bytes(host.memory) if host.memory else None


SWARM_MEMORY_TTL_S = 2.0
_swarm_memory: dict[str, tuple[float, int | None]] = {}


def placement_memory(host: HostConfig) -> int | None:
    """The memory placement counts on a host: its ``memory`` setting; for a swarm host
    without one, the memory of its ready and active nodes, read live (cached for
    ``SWARM_MEMORY_TTL_S``) so that a node joining or coming back from a drain makes room
    for waiting instances at once."""
    if host.memory or host.runtime != "swarm":
        return capacity(host)
    now = time.monotonic()
    hit = _swarm_memory.get(host.name)
    if hit is not None and now - hit[0] < SWARM_MEMORY_TTL_S:
        return hit[1]
    rt = runtime_docker.runtime(host)
    try:
        found = rt.call(lambda: rt.client.api.nodes())
    except (runtime_docker.HostDown, runtime_docker.DockerFailure):
        return None  # placement refuses an unreachable host before asking
    total = sum(
        int(((n.get("Description") or {}).get("Resources") or {}).get("MemoryBytes") or 0)
        for n in found
        if (n.get("Status") or {}).get("State") == "ready"
        and (n.get("Spec") or {}).get("Availability") == "active"
    )
    _swarm_memory[host.name] = (now, total)
    return total


def fits(host: HostConfig, app_labels: dict[str, Any]) -> bool:
    return all(str(host.labels.get(k)) == str(v) for k, v in (app_labels or {}).items())


class NoRoom(Unavailable):
    """No host can take an instance for lack of room: every host it may go on is at its
    instance limit or short of memory (the instance waits in ``pending_capacity``)."""


def place(
    session: Session,
    app: App,
    memory: int | None,
    reachable: set[str],
    config: platform.PlatformConfig | None = None,
    labels: dict[str, str] | None = None,
) -> HostConfig:
    """The host for a new instance; ``Unavailable`` when none can take it, ``NoRoom``
    when hosts it may go on exist but all are full. The host's labels must satisfy the
    app's and ``labels`` (those of the tenant's tier).

    Call it in the transaction that records the choice: on PostgreSQL it takes a
    transaction-scoped advisory lock so concurrent placements see each other's choices
    (SQLite writers are serialised already)."""
    leases.advisory_lock(session, "mno.nex.placement")
    config = config or platform.load()
    hosts = configured(config, session)
    declared = _declared(config, session)
    used = usage(session)
    best: tuple[int, int, HostConfig] | None = None
    reasons = []
    full = 0  # hosts the instance may go on that have no room
    for index, host in enumerate(hosts):
        if host.name not in reachable:
            reasons.append(f"{host.name}: unreachable")
            continue
        if declared and host.name not in declared:
            reasons.append(f"{host.name}: no longer declared, kept for its instances")
            continue
        # a swarm's labels are its nodes': Swarm places by them (services.placement_constraints)
        swarm = host.runtime == "swarm"
        if not swarm and not fits(host, app.labels):
            reasons.append(f"{host.name}: labels do not match {app.labels}")
            continue
        if not swarm and not fits(host, labels or {}):
            reasons.append(f"{host.name}: labels do not match the tier's {labels}")
            continue
        taken = used.get(host.name, {"instances": 0, "memory": 0})
        if host.max_instances is not None and taken["instances"] >= host.max_instances:
            reasons.append(f"{host.name}: at its limit of {host.max_instances} instances")
            full += 1
            continue
        cap = placement_memory(host)
        free = (cap - taken["memory"]) if cap is not None else 2**62
        if memory and free < memory:
            reasons.append(f"{host.name}: {free} bytes free")
            full += 1
            continue
        # most free memory first; ties keep the configured order
        if best is None or free > best[0]:
            best = (free, -index, host)
    if best is None:
        if full:  # hosts it may go on exist, and all of them are full
            raise NoRoom(f"no host has room for an instance of {app.code}", "; ".join(reasons))
        raise Unavailable(f"no host can take an instance of {app.code}", "; ".join(reasons))
    return best[2]


def host_rows(
    session: Session, config: platform.PlatformConfig | None = None
) -> list[dict[str, Any]]:
    """What ``mno host list`` shows: where each host is declared, reachability, version,
    instances, used/free memory."""
    from mno.nex import namespace

    config = config or platform.load()
    hosts = configured(config, session)
    listed = {h.name for h in config.hosts}
    kept = {h.name for h in stored(session)}
    probes = probe(hosts)
    used = usage(session)
    ns = namespace.get(session)
    rows = []
    for host in hosts:
        p = probes[host.name]
        taken = used.get(host.name, {"instances": 0, "memory": 0})
        cap = capacity(host)
        rows.append(
            {
                "name": host.name,
                "source": "platform"
                if host.name in listed
                else ("store" if host.name in kept else "default"),
                "base_url": host.base_url,
                "runtime": host.runtime,
                "reachable": p.reachable,
                "version": p.version,
                "instances": taken["instances"],
                "max_instances": host.max_instances,
                "memory_used": taken["memory"],
                "memory_capacity": cap,
                "memory_free": (cap - taken["memory"]) if cap is not None else None,
                "labels": dict(host.labels),
                "namespace": ns,
                "error": p.error,
            }
        )
    return rows
