"""Drift: containers changed outside mno, and containers no instance owns.

``detect_drift()`` compares the labelled containers on every reachable host with the
instances the store expects there. An instance that should run and whose container was
removed or stopped is marked for repair (the provisioner recreates or restarts it); a
stopped instance whose container vanished or runs again is only reported. ``orphans()``
lists labelled containers that no live instance owns.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlmodel import col, select

from mno import clock, platform
from mno.nex import hosts, runtime_docker
from mno.nex.instances import WAKE
from mno.nex.runtime_docker import HostDown
from mno.store import audit, outbox, wake
from mno.store.db import session_scope
from mno.store.models.nex import Instance


@dataclass
class DriftReport:
    hosts_down: dict[str, str] = field(default_factory=dict)
    repaired: list[str] = field(default_factory=list)
    reported: list[str] = field(default_factory=list)
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
            ).where(
                col(Instance.status).in_(("running", "stopped")),
                col(Instance.work) == "idle",
                col(Instance.host).is_not(None),
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
            report.repair_ids += _mark_drift(repairs, notes, now, db_url)
    return report


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
    """Labelled containers no live instance owns (unknown, terminated, or a stale deploy)."""
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
