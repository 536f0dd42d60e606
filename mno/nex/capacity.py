"""Capacity: headroom per host, instances waiting for room, and the scale-out hook.

Headroom is what the store has placed set against what each engine reports. For a
``docker`` host: memory is the host's ``memory`` setting, else the engine's ``MemTotal``
(``docker info``), less the memory limits of the instances placed on it; CPUs are the
engine's ``NCPU`` less the instances' ``cpus`` limits; slots are ``max_instances`` less
the live instances. For a ``swarm`` host (a manager's engine) each node's resources
(``docker node ls``/``inspect``) are set against the reservations of the tasks that should
run on it; the host's figures add up the nodes that are ready and active.

Placement that fails for lack of room (``mno.nex.hosts.NoRoom``) puts the instance in
``pending_capacity`` instead of failing it; the provisioner tries it again on every pass
and at once when room appears (a host added or changed, an instance terminated). The
checks emit each event once per transition, never on every pass (the state lives in
``nex_capacity_signal``):

- ``nex.capacity_exhausted`` when instances start waiting (cleared once none waits);
- ``nex.capacity_low`` when a host's headroom falls under the platform's thresholds
  (``capacity: {low_memory_pct, low_slots}``), again only after it recovered;
- ``nex.scale_out_ran`` after the ``capacity.scale_out`` command ran: at most once per
  ``cooldown`` across every agent host (a store lock), killed after ``timeout``, its
  output logged and audited with secrets redacted.
"""

from __future__ import annotations

import logging
import os
import re
import signal
import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import timedelta
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any

from sqlmodel import Session, col, select

from mno import clock, platform
from mno.errors import MnoError
from mno.nex import hosts, runtime_docker
from mno.nex.waiting import EXHAUSTED, WAITING, get_signal, lock_signal, turn
from mno.settings import parse_duration
from mno.store import audit, leases, outbox
from mno.store.db import session_scope
from mno.store.models.nex import Instance
from mno.store.models.tenancy import App, Tenant
from mno.tenancy.apps import memory_bytes

if TYPE_CHECKING:
    from mno.platform import HostConfig

log = logging.getLogger("mno.nex.capacity")

SCALE_OUT_LOCK = "mno.nex.scale_out"
OUTPUT_KEPT = 4000  # characters of the scale-out command's output kept in the audit row
ENGINE_TIMEOUT_S = 10


class WaitingForRoom(MnoError):
    """The instance was put in ``pending_capacity``: no host has room for it yet."""


# -- what the engines report ---------------------------------------------------------------


def _cpus(value: Any) -> Decimal:
    try:
        return Decimal(str(value)) if value not in (None, "") else Decimal(0)
    except InvalidOperation:
        return Decimal(0)


def engine_docker(host: HostConfig) -> dict[str, Any]:
    """``docker info`` figures of a host's engine: CPUs and memory."""
    rt = runtime_docker.Runtime(host.name, host.base_url, min(host.timeout, ENGINE_TIMEOUT_S))
    try:
        data = rt.call(lambda: rt.client.info())
    finally:
        rt.close()
    return {"cpus": int(data.get("NCPU") or 0), "memory": int(data.get("MemTotal") or 0)}


def engine_swarm(host: HostConfig) -> dict[str, Any]:
    """A swarm manager's nodes with their resources and the reservations of the tasks
    that should run on each (see ``mno.nex.swarm_nodes``)."""
    from mno.nex import swarm_nodes

    return {"nodes": swarm_nodes.nodes(host)}


def engines(candidates: list[HostConfig]) -> dict[str, dict[str, Any]]:
    """Each host's engine figures, asked in parallel; ``{"error": …}`` when unreachable."""

    def one(host: HostConfig) -> tuple[str, dict[str, Any]]:
        try:
            if host.runtime == "swarm":
                return host.name, engine_swarm(host)
            return host.name, engine_docker(host)
        except (runtime_docker.HostDown, runtime_docker.DockerFailure) as exc:
            return host.name, {"error": exc.message}

    if not candidates:
        return {}
    with ThreadPoolExecutor(min(8, len(candidates))) as pool:
        return dict(pool.map(one, candidates))


# -- what the store has placed -------------------------------------------------------------


def placed(session: Session) -> dict[str, dict[str, Any]]:
    """Per host: live instances, and the memory (bytes) and CPUs their limits reserve."""
    rows = session.exec(
        select(Instance.host, Instance.memory, Instance.cpus).where(
            col(Instance.host).is_not(None), col(Instance.live_name).is_not(None)
        )
    ).all()
    out: dict[str, dict[str, Any]] = {}
    for host, memory, cpus in rows:
        entry = out.setdefault(str(host), {"instances": 0, "memory": 0, "cpus": Decimal(0)})
        entry["instances"] += 1
        entry["memory"] += memory_bytes(memory) or 0
        entry["cpus"] += _cpus(cpus)
    return out


def waiting(session: Session) -> list[dict[str, Any]]:
    """The instances waiting for room, oldest first."""
    rows = session.exec(
        select(Instance, App.code, Tenant.key, Tenant.tier)
        .join(App, col(App.id) == Instance.app_id)
        .join(Tenant, col(Tenant.id) == Instance.tenant_id)
        .where(Instance.status == WAITING, col(Instance.live_name).is_not(None))
        .order_by(col(Instance.created_at))
    ).all()
    return [
        {
            "name": inst.name,
            "app": code,
            "tenant": key,
            "tier": tier,
            "memory": memory_bytes(inst.memory) or 0,
            "cpus": _cpus(inst.cpus),
            "since": inst.updated_at,
            "reason": inst.last_error,
        }
        for inst, code, key, tier in rows
    ]


def waiting_summary(items: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "instances": len(items),
        "memory": sum(i["memory"] for i in items),
        "cpus": str(sum((i["cpus"] for i in items), Decimal(0))),
        "apps": sorted({i["app"] for i in items}),
        "tiers": sorted({i["tier"] for i in items}),
    }


# -- headroom ------------------------------------------------------------------------------


@dataclass
class Headroom:
    """One host's (or swarm node's) headroom."""

    host: str
    runtime: str
    reachable: bool
    node: str | None = None
    role: str | None = None
    availability: str | None = None
    instances: int = 0
    max_instances: int | None = None
    memory_capacity: int | None = None
    memory_source: str | None = None  # config|engine
    memory_reserved: int = 0
    cpus: Decimal | None = None
    cpus_reserved: Decimal = Decimal(0)
    low: list[str] = field(default_factory=list)
    error: str | None = None

    @property
    def memory_free(self) -> int | None:
        if self.memory_capacity is None:
            return None
        return max(self.memory_capacity - self.memory_reserved, 0)

    @property
    def memory_free_pct(self) -> float | None:
        if not self.memory_capacity:
            return None
        return round(100.0 * (self.memory_free or 0) / self.memory_capacity, 1)

    @property
    def cpus_free(self) -> Decimal | None:
        if self.cpus is None:
            return None
        return max(self.cpus - self.cpus_reserved, Decimal(0))

    @property
    def slots_free(self) -> int | None:
        if self.max_instances is None:
            return None
        return max(self.max_instances - self.instances, 0)

    def as_dict(self) -> dict[str, Any]:
        return {
            "host": self.host,
            "node": self.node,
            "runtime": self.runtime,
            "role": self.role,
            "availability": self.availability,
            "reachable": self.reachable,
            "instances": self.instances,
            "max_instances": self.max_instances,
            "slots_free": self.slots_free,
            "memory_capacity": self.memory_capacity,
            "memory_source": self.memory_source,
            "memory_reserved": self.memory_reserved,
            "memory_free": self.memory_free,
            "memory_free_pct": self.memory_free_pct,
            "cpus": None if self.cpus is None else str(self.cpus),
            "cpus_reserved": str(self.cpus_reserved),
            "cpus_free": None if self.cpus_free is None else str(self.cpus_free),
            "low": list(self.low),
            "error": self.error,
        }


def _low(room: Headroom, thresholds: platform.CapacityConfig) -> list[str]:
    reasons = []
    pct = room.memory_free_pct
    if pct is not None and pct < thresholds.low_memory_pct:
        reasons.append(f"memory {pct}% free < {thresholds.low_memory_pct}%")
    slots = room.slots_free
    if slots is not None and slots <= thresholds.low_slots:
        reasons.append(f"{slots} slot(s) free <= {thresholds.low_slots}")
    return reasons


def _node_rooms(host: HostConfig, nodes: list[dict[str, Any]]) -> list[Headroom]:
    out = []
    for node in nodes:
        out.append(
            Headroom(
                host=host.name,
                runtime="swarm",
                reachable=node["state"] == "ready",
                node=node["hostname"],
                role=node["role"],
                availability=node["availability"],
                instances=node["tasks"],
                memory_capacity=node["memory"],
                memory_source="engine",
                memory_reserved=node["memory_reserved"],
                cpus=Decimal(str(node["cpus"])),
                cpus_reserved=Decimal(str(node["cpus_reserved"])),
            )
        )
    return out


def headroom(
    session: Session,
    config: platform.PlatformConfig | None = None,
    engine: dict[str, dict[str, Any]] | None = None,
) -> list[Headroom]:
    """Each declared host's headroom (a swarm host then its nodes). ``engine`` holds the
    engines' figures (``engines()``): asked here when not given."""
    config = config or platform.load()
    thresholds = config.capacity
    candidates = hosts.configured(config, session)
    engine = engines(candidates) if engine is None else engine
    used = placed(session)
    out: list[Headroom] = []
    for host in candidates:
        facts = engine.get(host.name, {"error": "not asked"})
        taken = used.get(host.name, {"instances": 0, "memory": 0, "cpus": Decimal(0)})
        room = Headroom(
            host=host.name,
            runtime=host.runtime,
            reachable="error" not in facts,
            instances=taken["instances"],
            max_instances=host.max_instances,
            memory_reserved=taken["memory"],
            cpus_reserved=taken["cpus"],
            error=facts.get("error"),
        )
        configured_memory = hosts.capacity(host)
        nodes: list[Headroom] = []
        if host.runtime == "swarm" and room.reachable:
            nodes = _node_rooms(host, facts.get("nodes", []))
            usable = [n for n in nodes if n.reachable and n.availability == "active"]
            room.memory_capacity = sum(n.memory_capacity or 0 for n in usable)
            room.memory_reserved = max(room.memory_reserved, sum(n.memory_reserved for n in usable))
            room.cpus = sum((n.cpus or Decimal(0) for n in usable), Decimal(0))
            room.cpus_reserved = max(
                room.cpus_reserved, sum((n.cpus_reserved for n in usable), Decimal(0))
            )
            room.memory_source = "engine"
        elif room.reachable:
            room.memory_capacity = facts["memory"] or None
            room.memory_source = "engine" if room.memory_capacity else None
            room.cpus = Decimal(facts["cpus"]) if facts["cpus"] else None
        if configured_memory is not None:
            room.memory_capacity, room.memory_source = configured_memory, "config"
        if room.reachable:
            room.low = _low(room, thresholds)
            for node in nodes:
                node.low = _low(node, thresholds) if node.availability == "active" else []
        out.append(room)
        out.extend(nodes)
    return out


def report(session: Session, config: platform.PlatformConfig | None = None) -> dict[str, Any]:
    """What ``mno host capacity`` shows: each host's (and node's) headroom, what waits for
    room, and the thresholds in force."""
    config = config or platform.load()
    rooms = headroom(session, config)
    items = waiting(session)
    exhausted = get_signal(session, EXHAUSTED)
    return {
        "hosts": [r.as_dict() for r in rooms],
        "waiting": waiting_summary(items) | {"items": items},
        "exhausted": bool(exhausted and exhausted.active),
        "thresholds": {
            "low_memory_pct": config.capacity.low_memory_pct,
            "low_slots": config.capacity.low_slots,
        },
        "scale_out": _scale_out_state(session, config),
    }


def _scale_out_state(session: Session, config: platform.PlatformConfig) -> dict[str, Any] | None:
    hook = config.capacity.scale_out
    if hook is None:
        return None
    last = get_signal(session, "scale_out")
    return {
        "command": hook.command[0],
        "timeout": hook.timeout,
        "cooldown": hook.cooldown,
        "last_run": dict(last.detail) if last is not None else None,
    }


# -- signals: one event per transition ---------------------------------------------------


def wait_for_room(session: Session, inst: Instance, reason: str) -> None:
    """Put ``inst`` in ``pending_capacity`` (in the caller's transaction), and emit
    ``nex.capacity_exhausted`` when it is the first to wait."""
    from mno.nex.status import apply

    apply(session, inst, WAITING, last_error=reason[:2000])
    items = waiting(session)
    summary = waiting_summary(items)
    if turn(session, EXHAUSTED, True, {"first": inst.name, "reason": reason[:400]}):
        app = session.get(App, inst.app_id)
        data = {
            "instance": inst.name,
            "app": app.code if app else None,
            "reason": reason[:1000],
            "waiting": summary,
        }
        audit.record(
            session,
            "capacity.exhausted",
            target_type="instance",
            target_id=inst.id,
            target=inst.name,
            after=data,
            actor="provisioner",
        )
        outbox.emit(session, "nex.capacity_exhausted", data)


def follow(
    db_url: str | None = None, config: platform.PlatformConfig | None = None
) -> dict[str, Any]:
    """One capacity check: headroom of every host (engines asked outside any
    transaction), then the signals' transitions in one transaction: ``nex.capacity_low``
    for a host newly under a threshold, the exhausted signal cleared once nothing waits.
    Returns the figures and what was emitted."""
    config = config or platform.load()
    with session_scope(db_url, write=False) as s:
        facts = engines(hosts.configured(config, s))
    emitted: list[str] = []
    with session_scope(db_url) as s:
        rooms = headroom(s, config, facts)
        for room in rooms:
            if not room.reachable and room.node is None:
                continue  # an unreachable host keeps its state until it answers
            if room.node is not None and room.availability != "active":
                continue
            name = f"low:{room.host}" + (f"/{room.node}" if room.node else "")
            if room.low:
                if turn(s, name, True, {"low": room.low}):
                    data = room.as_dict() | {"thresholds": config.capacity.model_dump()}
                    audit.record(
                        s,
                        "capacity.low",
                        target_type="host",
                        target_id=name,
                        target=room.host,
                        after={"node": room.node, "low": room.low},
                        actor="provisioner",
                    )
                    outbox.emit(s, "nex.capacity_low", data)
                    emitted.append(name)
            else:
                turn(s, name, False)
        items = waiting(s)
        if not items:
            turn(s, EXHAUSTED, False)
    return {"hosts": len(rooms), "waiting": len(items), "emitted": emitted}


# -- the scale-out hook ----------------------------------------------------------------------

_running = threading.Lock()  # one run at a time in this process
_SECRET_NAME = re.compile(r"(SECRET|PASSWORD|PASSWD|TOKEN|KEY|CREDENTIAL)", re.I)
_SECRET_PAIR = re.compile(
    r"(?i)\b([A-Z0-9_.-]*(?:password|passwd|secret|token|api[_-]?key)[A-Z0-9_.-]*)"
    r"(\s*[=:]\s*)(\"[^\"]*\"|'[^']*'|\S+)"
)
_URL_PASSWORD = re.compile(r"(://[^:/@\s]+:)([^@\s]+)(@)")
_HIDDEN_ENV = ("MNO_MASTER_KEY", "MNO_DB_URL", "MNO_TOKEN")


def redact(text: str, env: dict[str, str] | None = None) -> str:
    """``text`` with secrets replaced by ``***``: the values of secret-looking variables
    of ``env`` (and of this process), ``name=value`` pairs whose name says secret, and
    passwords in URLs."""
    values = []
    for name, value in {**os.environ, **(env or {})}.items():
        if len(value) >= 6 and (_SECRET_NAME.search(name) or name in _HIDDEN_ENV):
            values.append(value)
    for value in sorted(set(values), key=len, reverse=True):
        text = text.replace(value, "***")
    text = _SECRET_PAIR.sub(lambda m: f"{m.group(1)}{m.group(2)}***", text)
    return _URL_PASSWORD.sub(r"\1***\3", text)


def _child_env(summary: dict[str, Any], reason: str) -> dict[str, str]:
    """The command's environment: this process's, without mno's own secrets, and what
    waits for room."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in _HIDDEN_ENV and not k.startswith("MNO_SECRET_")
    }
    env |= {
        "MNO_WAITING_INSTANCES": str(summary["instances"]),
        "MNO_WAITING_MEMORY": str(summary["memory"]),
        "MNO_WAITING_CPUS": str(summary["cpus"]),
        "MNO_WAITING_APPS": ",".join(summary["apps"]),
        "MNO_WAITING_TIERS": ",".join(summary["tiers"]),
        "MNO_CAPACITY_REASON": reason[:1000],
    }
    return env


def _run(
    command: list[str], env: dict[str, str], timeout_s: float, cwd: str | None
) -> dict[str, Any]:
    started = time.monotonic()
    try:
        proc = subprocess.Popen(
            command,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            cwd=cwd,
            start_new_session=True,  # its own process group: a timeout kills its children
        )
    except OSError as exc:
        return {"exit_code": 127, "timed_out": False, "output": f"cannot run: {exc}", "s": 0.0}
    timed_out = False
    try:
        out, _ = proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        timed_out = True
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        out, _ = proc.communicate()
    return {
        "exit_code": None if timed_out else proc.returncode,
        "timed_out": timed_out,
        "output": out.decode(errors="replace"),
        "s": round(time.monotonic() - started, 3),
    }


def scale_out(
    db_url: str | None, owner: str, config: platform.PlatformConfig | None = None
) -> dict[str, Any] | None:
    """Run the ``capacity.scale_out`` command when instances wait for room, unless it ran
    within its ``cooldown`` or another process runs it (a store lock); records the run
    (audit row and ``nex.scale_out_ran``). Returns the outcome, None when it did not run."""
    config = config or platform.load()
    hook = config.capacity.scale_out
    if hook is None or not _running.acquire(blocking=False):
        return None
    try:
        timeout = parse_duration(hook.timeout)
        cooldown = parse_duration(hook.cooldown)
        with session_scope(db_url) as s:
            items = waiting(s)
            if not items:
                return None
            if not leases.take_lock(s, SCALE_OUT_LOCK, owner, timeout + timedelta(minutes=1)):
                return None
            last = lock_signal(s, "scale_out")
            now = clock.now()
            if last.since is not None and now - last.since < cooldown:
                leases.release_lock(s, SCALE_OUT_LOCK, owner)
                return None
            summary = waiting_summary(items)
            reason = str(items[0]["reason"] or "no host has room")
            last.since, last.active = now, True
            last.detail = {"started_at": now.isoformat(), "owner": owner, "running": True}
            last.touch()
            s.add(last)
        env = _child_env(summary, reason)
        log.info("scale-out: running %s (%d instance(s) waiting)", hook.command[0], len(items))
        ran = _run(hook.command, env, timeout.total_seconds(), hook.workdir)
        output = redact(ran["output"], env)
        for line in output.splitlines()[-200:]:
            log.info("scale-out: %s", line)
        outcome = {
            "command": hook.command[0],
            "exit_code": ran["exit_code"],
            "timed_out": ran["timed_out"],
            "duration_s": ran["s"],
            "waiting": summary,
        }
        if ran["timed_out"]:
            log.warning("scale-out: %s timed out after %s", hook.command[0], hook.timeout)
        with session_scope(db_url) as s:
            last = lock_signal(s, "scale_out")
            last.active = False
            last.detail = outcome | {"started_at": last.detail.get("started_at"), "owner": owner}
            last.touch()
            s.add(last)
            audit.record(
                s,
                "capacity.scale_out",
                target_type="platform",
                target_id="scale_out",
                target="scale_out",
                after=outcome
                | {"argv": [redact(a, env) for a in hook.command], "output": output[-OUTPUT_KEPT:]},
                actor="provisioner",
            )
            outbox.emit(s, "nex.scale_out_ran", outcome)
            leases.release_lock(s, SCALE_OUT_LOCK, owner)
        return outcome
    finally:
        _running.release()


def scale_out_soon(db_url: str | None, owner: str) -> threading.Thread | None:
    """``scale_out`` on a daemon thread, so the provisioner's pass does not wait for it;
    None when no hook is configured or a run is under way in this process."""
    config = platform.load()
    hook = config.capacity.scale_out
    if hook is None or _running.locked():
        return None
    with session_scope(db_url, write=False) as s:  # within the cooldown: nothing to write
        last = get_signal(s, "scale_out")
        if last is not None and last.since is not None:
            if clock.now() - last.since < parse_duration(hook.cooldown):
                return None

    def run() -> None:
        try:
            scale_out(db_url, owner, config)
        except Exception:  # recorded in the log; the next pass tries again
            log.exception("scale-out failed")

    thread = threading.Thread(target=run, name="mno-scale-out", daemon=True)
    thread.start()
    return thread
