"""Nodes of a Docker Swarm host: list them, drain or activate them, set their labels.

A swarm host is a host of the platform YAML with ``runtime: swarm``: its ``base_url``
reaches a manager node's engine. Everything here goes through the Docker SDK's nodes
API on that manager (``docker node ls/inspect/update``); mno keeps no copy of the
nodes in the store. Tiers place their instances with node labels (``tier=silo``), so
``set_labels`` is how an operator marks nodes for a tier.

Draining a node (``availability: drain``) makes Swarm move its tasks to other nodes; on a
single-node swarm they stop until the node is active again. Every change is audited and
emits ``host.node_updated``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sqlmodel import Session

from mno import platform
from mno.errors import BadInput, Conflict, NotFound
from mno.nex import hosts, runtime_docker
from mno.store import audit, outbox

if TYPE_CHECKING:
    from mno.platform import HostConfig

AVAILABILITY = ("active", "pause", "drain")
_LABEL_KEY = r"^[A-Za-z0-9]([A-Za-z0-9._-]{0,126}[A-Za-z0-9])?$"


def swarm_hosts(
    session: Session | None = None, config: platform.PlatformConfig | None = None
) -> list[HostConfig]:
    """The hosts whose runtime is ``swarm``."""
    return [h for h in hosts.configured(config, session) if h.runtime == "swarm"]


def host_for(session: Session, name: str | None = None) -> HostConfig:
    """The swarm host ``name``, or the only swarm host when none is named."""
    candidates = swarm_hosts(session)
    if name is not None:
        host = hosts.get(name, None, session)
        if host.runtime != "swarm":
            raise BadInput(f"host {name} is not a swarm host", "its runtime is docker")
        return host
    if not candidates:
        raise NotFound("no swarm host is configured", "a host with `runtime: swarm`")
    if len(candidates) > 1:
        names = ", ".join(h.name for h in candidates)
        raise BadInput("several swarm hosts are configured", f"pass --host: {names}")
    return candidates[0]


def _runtime(host: HostConfig) -> runtime_docker.Runtime:
    return runtime_docker.runtime(host)


def _row(node: dict[str, Any], tasks: dict[str, dict[str, Any]]) -> dict[str, Any]:
    spec = node.get("Spec") or {}
    desc = node.get("Description") or {}
    res = desc.get("Resources") or {}
    status = node.get("Status") or {}
    manager = node.get("ManagerStatus") or {}
    used = tasks.get(node["ID"], {"tasks": 0, "cpus": 0, "memory": 0})
    return {
        "id": node["ID"],
        "hostname": desc.get("Hostname"),
        "role": spec.get("Role"),
        "availability": spec.get("Availability"),
        "state": status.get("State"),
        "address": status.get("Addr"),
        "leader": bool(manager.get("Leader")),
        "labels": dict(spec.get("Labels") or {}),
        "engine": (desc.get("Engine") or {}).get("EngineVersion"),
        "tasks": used["tasks"],
        "cpus": (res.get("NanoCPUs") or 0) / 1e9,
        "memory": int(res.get("MemoryBytes") or 0),
        "cpus_reserved": used["cpus"] / 1e9,
        "memory_reserved": used["memory"],
    }


def nodes(host: HostConfig) -> list[dict[str, Any]]:
    """The swarm's nodes (by hostname) with their role, availability, state, labels,
    the tasks that should run on each and the resources those reserve."""
    rt = _runtime(host)
    raw = rt.call(lambda: rt.client.api.nodes())
    listed = rt.call(lambda: rt.client.api.tasks(filters={"desired-state": "running"}))
    tasks: dict[str, dict[str, Any]] = {}
    for task in listed:
        node_id = task.get("NodeID")
        if not node_id:
            continue  # not scheduled yet (no node has room)
        reserve = ((task.get("Spec") or {}).get("Resources") or {}).get("Reservations") or {}
        entry = tasks.setdefault(node_id, {"tasks": 0, "cpus": 0, "memory": 0})
        entry["tasks"] += 1
        entry["cpus"] += int(reserve.get("NanoCPUs") or 0)
        entry["memory"] += int(reserve.get("MemoryBytes") or 0)
    rows = [_row(n, tasks) for n in raw]
    return sorted(rows, key=lambda r: (r["hostname"] or "", r["id"]))


def node_rows(session: Session, host_rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The nodes of the reachable swarm hosts among ``host_rows`` (``hosts.host_rows``),
    each with its host's name; each swarm host's row gets its ``nodes`` too."""
    out = []
    for row in host_rows:
        if row.get("runtime") != "swarm" or not row.get("reachable"):
            continue
        try:
            found = nodes(hosts.get(row["name"], None, session))
        except (runtime_docker.HostDown, runtime_docker.DockerFailure) as exc:
            row["error"] = exc.message
            continue
        row["nodes"] = found
        out += [{"host": row["name"]} | n for n in found]
    return out


def _find(rt: runtime_docker.Runtime, ref: str) -> Any:
    """The node whose id, id prefix or hostname is ``ref``."""
    import docker

    try:
        return rt.call(lambda: rt.client.nodes.get(ref))
    except docker.errors.NotFound:
        pass
    found = [
        n
        for n in rt.call(lambda: rt.client.nodes.list())
        if (n.attrs.get("Description") or {}).get("Hostname") == ref or n.id.startswith(ref)
    ]
    if not found:
        raise NotFound(f"node {ref} not found on host {rt.name}", "see `mno host list`") from None
    if len(found) > 1:
        raise BadInput(f"node {ref} is ambiguous on host {rt.name}", "use the node id")
    return found[0]


def _update(
    session: Session, host: HostConfig, ref: str, change: dict[str, Any], action: str
) -> dict[str, Any]:
    rt = _runtime(host)
    node = _find(rt, ref)
    spec = dict(node.attrs.get("Spec") or {})
    before = {"availability": spec.get("Availability"), "labels": dict(spec.get("Labels") or {})}
    new = dict(spec)
    if "availability" in change:
        new["Availability"] = change["availability"]
    if "labels" in change:
        labels = dict(spec.get("Labels") or {})
        for key, value in change["labels"].items():
            if value is None:
                labels.pop(key, None)
            else:
                labels[key] = value
        new["Labels"] = labels
    after = {"availability": new.get("Availability"), "labels": dict(new.get("Labels") or {})}
    hostname = (node.attrs.get("Description") or {}).get("Hostname") or node.id[:12]
    if after != before:
        import docker

        try:
            rt.call(lambda: node.update(new))
        except docker.errors.APIError as exc:  # e.g. the node's version moved on
            raise Conflict(f"node {hostname}: {exc.explanation or exc}") from None
        target = f"{host.name}/{hostname}"
        audit.record(
            session,
            action,
            target_type="node",
            target_id=node.id,
            target=target,
            before=before,
            after=after,
        )
        outbox.emit(
            session,
            "host.node_updated",
            {"host": host.name, "node": hostname, "id": node.id} | after,
        )
    rt.call(lambda: node.reload())
    row = next((r for r in nodes(host) if r["id"] == node.id), None)
    return row or {"id": node.id, "hostname": hostname} | after


def set_availability(
    session: Session, ref: str, availability: str, host_name: str | None = None
) -> dict[str, Any]:
    """Drain, pause or activate a node of a swarm host; returns the node as listed."""
    if availability not in AVAILABILITY:
        raise BadInput(f"invalid availability {availability!r}", "active, pause or drain")
    host = host_for(session, host_name)
    return _update(session, host, ref, {"availability": availability}, f"node.{availability}")


def set_labels(
    session: Session, ref: str, labels: dict[str, str | None], host_name: str | None = None
) -> dict[str, Any]:
    """Set (or, with a None value, remove) labels of a node of a swarm host."""
    import re

    if not labels:
        raise BadInput("no label given", "key=value, or key- to remove it")
    for key in labels:
        if not re.match(_LABEL_KEY, key):
            raise BadInput(f"invalid label key {key!r}")
    host = host_for(session, host_name)
    return _update(session, host, ref, {"labels": labels}, "node.label")
