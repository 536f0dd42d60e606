"""Drift: containers changed outside mno, and containers no instance owns.

On a swarm host the same scan compares services instead (``mno.nex.services.scan``):
a service removed or scaled outside mno is put back, tasks that keep failing are
reported with their last error, and each instance's running task count is kept.

``detect_drift()`` compares the labelled containers on every reachable host with the
instances the store expects there. An instance that should run and whose container was
removed or stopped is marked for repair (the provisioner recreates or restarts it); a
stopped instance whose container vanished or runs again is only reported. A running
container restarted outside mno (``docker restart``, the engine's restart) publishes its
port on a new random host port: the instance's ``endpoint`` is re-read from the same
container list and updated, with an ``instance.endpoint_changed`` event that routers
follow. ``orphans()`` lists labelled containers of this store that no live instance owns.

Only the store's own containers count: labelled with its namespace and one of its
instance ids (``mno.nex.namespace``). Another store's containers on the same engine are
neither repaired nor listed as orphans.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlmodel import col, select

from mno import clock, platform
from mno.nex import hosts, namespace, runtime_docker
from mno.nex.containers import endpoint
from mno.nex.instances import WAKE
from mno.nex.runtime_docker import HostDown
from mno.nex.status import endpoint_changed
from mno.store import audit, outbox, wake
from mno.store.db import session_scope
from mno.store.models.nex import Instance


@dataclass
class DriftReport:
    hosts_down: dict[str, str] = field(default_factory=dict)
    repaired: list[str] = field(default_factory=list)
    reported: list[str] = field(default_factory=list)
    endpoints: list[str] = field(default_factory=list)  # instances whose endpoint moved
    repair_ids: list[uuid.UUID] = field(default_factory=list)  # marked for repair now


def detect_drift(db_url: str | None = None) -> DriftReport:
    """Mark instances whose container vanished or stopped outside mno (see module doc)."""
    report = DriftReport()
    now = clock.now()
    with session_scope(db_url, write=False) as s:
        rows = s.execute(
            sa.select(
                col(Instance.id),
                col(Instance.name),
                col(Instance.host),
                col(Instance.container_id),
                col(Instance.desired),
                col(Instance.port),
                col(Instance.endpoint),
                col(Instance.replicas),
            ).where(
                col(Instance.status).in_(("running", "stopped")),
                col(Instance.work) == "idle",
                col(Instance.host).is_not(None),
            )
        ).all()
        known = hosts.configured(platform.load(), s)
        ns = namespace.get(s)
    by_host: dict[str, list[Any]] = {}
    for row in rows:
        by_host.setdefault(str(row[2]), []).append(row)
    for host in known:
        expected = by_host.get(host.name)
        if not expected:
            continue
        if host.runtime == "swarm":
            _swarm(host, expected, ns, report, now, db_url)
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
        moved: list[tuple[uuid.UUID, str, str]] = []
        for iid, name, _, cid, desired, port, current_endpoint, _ in expected:
            c = containers.get(cid) if cid else None
            if c is not None and not namespace.owns(ns, str(iid), c.labels):
                c = None
            if desired == "running":
                if c is not None and c.status == "running" and port in c.published:
                    now_at = endpoint(host, c.published[port])
                    if now_at and now_at != current_endpoint:
                        moved.append((iid, str(cid), now_at))
                        report.endpoints.append(name)
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
            report.repair_ids += _mark_drift(repairs, notes, now, db_url)
        if moved:
            _move_endpoints(moved, db_url)
    return report


def _swarm(
    host: platform.HostConfig,
    expected: list[Any],
    ns: str,
    report: DriftReport,
    now: datetime,
    db_url: str | None,
) -> None:
    """The drift of a swarm host's services (``mno.nex.services.scan``)."""
    from mno.nex import services

    rows = [(r[0], r[1], r[4], r[5], r[7]) for r in expected]
    try:
        seen = services.scan(host, rows, ns)
        hosts.mark(host.name, True)
    except (HostDown, runtime_docker.DockerFailure) as exc:
        report.hosts_down[host.name] = exc.message
        hosts.mark(host.name, False, exc.message)
        return
    repairs = [(s.id, s.repair) for s in seen if s.repair]
    notes = [(s.id, s.note) for s in seen if s.note and not s.repair]
    report.repaired += [s.name for s in seen if s.repair]
    report.reported += [s.name for s in seen if s.note and not s.repair]
    if repairs or notes:
        report.repair_ids += _mark_drift(repairs, notes, now, db_url)
    services.observe(seen, db_url)


def _move_endpoints(moved: list[tuple[uuid.UUID, str, str]], db_url: str | None) -> None:
    """Record the new endpoints of running containers (idle instances whose container is
    still the one listed), each with its audit row and event, in one transaction."""
    with session_scope(db_url) as s:
        for iid, cid, new in moved:
            inst = s.get(Instance, iid)
            if inst is None or inst.work != "idle" or inst.status != "running":
                continue
            if inst.container_id != cid or inst.endpoint == new:
                continue
            before = inst.endpoint
            inst.endpoint = new
            inst.touch()
            s.add(inst)
            endpoint_changed(s, inst, before)


def _mark_drift(
    repairs: list[tuple[uuid.UUID, str]],
    notes: list[tuple[uuid.UUID, str]],
    now: datetime,
    db_url: str | None,
) -> list[uuid.UUID]:
    """Record the drift; returns the instances marked for repair."""
    marked: list[uuid.UUID] = []
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
                wake.notify(s, WAKE)
                marked.append(iid)
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
    return marked


def orphans(config: platform.PlatformConfig | None = None) -> list[dict[str, Any]]:
    """This store's labelled containers no live instance owns (unknown, terminated, or a
    stale deploy). A container without a namespace label (made before namespaces) is
    listed only when its instance id is one of this store's."""
    with session_scope(write=False) as s:
        ns = namespace.get(s)
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
            theirs = c.labels.get(namespace.LABEL)
            if theirs != ns and (theirs is not None or entry is None):
                continue  # another store's (or unknown to this one's)
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
