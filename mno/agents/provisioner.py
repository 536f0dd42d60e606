"""The provisioner: reconciles Nex instances' desired and actual state on Docker hosts.

Each tick (the runner wakes it at once when an instance changes, see ``WAKE_ON``):

1. drift: lists the labelled containers on every host that should hold instances and marks
   instances whose container was removed or stopped outside mno for repair (or reports
   it, when the instance should be stopped); unreachable hosts are recorded and skipped;
2. claims instances whose desired state changed (``work = pending``) through leases and
   reconciles each on ``concurrency`` threads (``mno.nex.reconcile``), with no barrier
   between batches: a finished instance is settled and replaced at once, and the pass
   goes on until nothing is due (at most ``batch_size`` leased at a time). A failure
   marks the instance ``failed`` and retries it with backoff up to ``max_attempts``; an
   unreachable host leaves the instance as it is and retries after ``host_down_retry``.
   Each instance holds one of ``concurrency`` slots, so a slow pull, start or health
   wait delays no other instance.

Under ``mno agents run`` the drift scan is a side job on its own schedule
(``drift_interval``), run at once when a Docker host reports that a managed container
stopped or was removed (``TRIGGERS``), and it repairs what it finds on its own threads,
so a repair is never queued behind a slow reconcile.

Options: ``ready_timeout`` (60s), ``health_interval`` (10s: Docker's checks of a running
container, unless its app sets ``health_interval``), ``health_start_interval`` (1s: checks
while a container starts, by Docker where the engine has ``StartInterval``, else by mno
while it waits), ``health_retries`` (3), ``health_start_period`` (30s: failed checks while
the app boots do not count),
``max_attempts`` (5), ``retry_base`` (10s), ``host_down_retry`` (30s), ``drift`` (true),
``drift_interval`` (2s), ``capacity_interval`` (30s: the capacity check, a side job like
the drift scan), ``capacity_retry`` (30s: how long an instance waiting for room waits
between passes; each pass and each host added or instance terminated tries it at once).

Capacity (``mno.nex.capacity``): an instance no host has room for waits in
``pending_capacity`` (the attempt does not count) and is tried again on every pass; the
platform's ``capacity.scale_out`` command runs on a thread of its own when instances wait.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from datetime import timedelta
from functools import partial
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from mno import clock, platform
from mno.agents.base import TickContext, TickResult
from mno.agents.queue import work_queue
from mno.nex import capacity, hosts, reconcile, runtime_docker, waiting
from mno.nex.containers import Options
from mno.nex.drift import detect_drift
from mno.nex.instances import WAKE
from mno.settings import parse_duration
from mno.store import bulk, leases
from mno.store.models.nex import Instance
from mno.store.types import table_of

if TYPE_CHECKING:
    from sqlmodel import Session

DEFAULT_OPTIONS: dict[str, Any] = {
    "ready_timeout": "60s",
    "health_interval": "10s",
    "health_start_interval": "1s",
    "health_retries": 3,
    "health_start_period": "30s",
    "max_attempts": 5,
    "retry_base": "10s",
    "host_down_retry": "30s",
    "drift": True,
    "drift_interval": "2s",
    "capacity_interval": "30s",
    "capacity_retry": "30s",
}
WAKE_ON = (WAKE,)  # instances.enqueue and drift repairs wake the provisioner at once

# seconds spent outside Docker calls while reconciling (store, events, leases), for the bench
stats: dict[str, float] = {
    "handled": 0,
    "handle_s": 0.0,
    "docker_s": 0.0,
    "handle_cpu_s": 0.0,
    "docker_cpu_s": 0.0,
}
_stats_lock = threading.Lock()


def queue_depth(session: Session) -> tuple[int, int]:
    return leases.depth(session, Instance)


def tick(ctx: TickContext) -> TickResult:
    options = {**DEFAULT_OPTIONS, **ctx.options}
    result = TickResult()
    if "drift" not in ctx.apart:
        result.add(drift(ctx))
    if "capacity" not in ctx.apart and _capacity_due(ctx, options):
        result.add(capacity_pass(ctx))  # before the work: retry backoffs start after it
    with ctx.session(write=False) as s:
        waits = waiting.waiting_count(s)
    if waits:  # instances waiting for room are tried on every pass
        with ctx.session() as s:
            waiting.room_appeared(s, wake_up=False)
    result.add(_work(ctx, options))
    with ctx.session(write=False) as s:
        waits = waiting.waiting_count(s)
    if waits:  # placement failed for lack of room: the scale-out hook (cooldown permitting)
        result.details["waiting_for_room"] = waits
        capacity.scale_out_soon(ctx.db_url, ctx.owner)
    return result


_capacity_at: dict[str | None, float] = {}  # when this process last checked each store


def _capacity_due(ctx: TickContext, options: dict[str, Any]) -> bool:
    every = parse_duration(str(options["capacity_interval"])).total_seconds()
    last = _capacity_at.get(ctx.db_url)
    return last is None or time.monotonic() - last >= every


def capacity_pass(ctx: TickContext) -> TickResult:
    """The capacity check (``mno.nex.capacity.follow``): headroom of every host and the
    ``nex.capacity_low`` / exhausted transitions; starts the scale-out command when
    instances wait for room (the runner runs it every ``capacity_interval``)."""
    _capacity_at[ctx.db_url] = time.monotonic()
    result = TickResult()
    found = capacity.follow(ctx.db_url)
    if found["waiting"]:
        result.details["waiting_for_room"] = found["waiting"]
        capacity.scale_out_soon(ctx.db_url, ctx.owner)
    if found["emitted"]:
        result.details["capacity_low"] = len(found["emitted"])
    return result


def drift(ctx: TickContext) -> TickResult:
    """The drift scan on its own (the runner runs it every ``drift_interval``). It also
    repairs what it found, on its own threads, so a repair never waits for a free slot
    behind slow reconciles (a pass with a free slot may take it first: either way once)."""
    options = {**DEFAULT_OPTIONS, **ctx.options}
    result = TickResult()
    if not options.get("drift", True):
        return result
    marked = _detect_drift(ctx, result)
    if marked and "drift" in ctx.apart:
        t = table_of(Instance)
        repaired = _work(ctx, options, where=t.c.id.in_(marked))
        result.add(repaired)
    return result


SIDE_JOBS = {"drift": drift, "capacity": capacity_pass}


def watch_containers(ctx: TickContext, fire: Callable[[], None]) -> None:
    """Run the drift scan at once when a managed container stops, dies or is removed on
    any host (the engines' event streams), instead of at the next ``drift_interval``.
    Returns when the agent stops; the runner restarts it with backoff after an error."""
    threads: dict[str, threading.Thread] = {}
    while not ctx.stopping():
        with ctx.session(write=False) as s:
            known = hosts.configured(platform.load(), s)
        for host in known:
            thread = threads.get(host.name)
            if thread is None or not thread.is_alive():
                threads[host.name] = thread = threading.Thread(
                    target=_watch_host, args=(ctx, host, fire), daemon=True
                )
                thread.start()
        ctx.stop_event.wait(30)


def _watch_host(ctx: TickContext, host: Any, fire: Callable[[], None]) -> None:
    while not ctx.stopping():
        try:
            for _ in runtime_docker.runtime(host).managed_changes(30):
                fire()
        except Exception:  # an unreachable host: the scan on its interval reports it
            ctx.stop_event.wait(5)


TRIGGERS = {"drift": watch_containers}


def reconcile_now(ctx: TickContext, instance_id: uuid.UUID) -> TickResult:
    """Reconcile one instance in this process, under the provisioner's lease, exactly as
    a pass would (retries, failure and settling included); nothing is claimed when
    another process holds it or it is not due (``mno instance create … --wait --inline``)."""
    options = {**DEFAULT_OPTIONS, **ctx.options}
    return _work(ctx, options, where=table_of(Instance).c.id == instance_id)


def _work(ctx: TickContext, options: dict[str, Any], where: Any = None) -> TickResult:
    opts = Options.from_dict(options)
    return work_queue(
        ctx,
        Instance,
        partial(_reconcile_one, ctx, opts),
        returning=("spec_version", "host"),
        where=where,
        done_status="idle",
        failed_status="failed",
        retry_base=parse_duration(str(options["retry_base"])),
        retry_cap=timedelta(minutes=30),
        max_attempts=int(options["max_attempts"]),
        finish=partial(_settle, opts),
        stream=True,
    )


def _detect_drift(ctx: TickContext, result: TickResult) -> list[uuid.UUID]:
    """Mark drifted instances for repair; count them and the unreachable hosts. Returns
    the instances marked for repair."""
    drift = detect_drift(ctx.db_url)
    if drift.repaired:
        result.details["drift_repairs"] = len(drift.repaired)
    if drift.reported:
        result.details["drift_reported"] = len(drift.reported)
    if drift.endpoints:
        result.details["endpoints_changed"] = len(drift.endpoints)
    if drift.hosts_down:
        result.details["hosts_down"] = sorted(drift.hosts_down)
        for name, error in drift.hosts_down.items():
            ctx.log.warning("host %s unreachable: %s", name, error)
    return drift.repair_ids


def _reconcile_one(ctx: TickContext, opts: Options, item: dict[str, Any]) -> None:
    """Reconcile one claimed instance; an unreachable host defers it (see ``_settle``)."""
    started, cpu = time.perf_counter(), time.thread_time()
    docker_before = runtime_docker.docker_seconds()
    docker_cpu_before = runtime_docker.docker_cpu_seconds()
    item["tried_at"] = clock.now()
    try:
        reconcile.reconcile(
            item["id"], ctx.owner, opts, db_url=ctx.db_url, should_stop=ctx.stopping
        )
    except runtime_docker.HostDown as exc:
        if item.get("host"):
            hosts.mark(str(item["host"]), False, exc.message)
        item["deferred"] = exc.message
    except capacity.WaitingForRoom as exc:
        item["deferred"] = exc.message
        item["waiting"] = True
    finally:
        with _stats_lock:
            stats["handled"] += 1
            stats["handle_s"] += time.perf_counter() - started
            stats["docker_s"] += runtime_docker.docker_seconds() - docker_before
            stats["handle_cpu_s"] += time.thread_time() - cpu
            stats["docker_cpu_s"] += runtime_docker.docker_cpu_seconds() - docker_cpu_before


def _waiting_retry(t: Any, item: dict[str, Any], now: Any, opts: Options) -> Any:
    """When an instance waiting for room is tried next: after ``capacity_retry``, unless
    room appeared while it was tried (``waiting.room_appeared`` made it due again)."""
    later = now + timedelta(seconds=opts.capacity_retry_s)
    return sa.case((t.c.next_attempt_at >= item["tried_at"], t.c.next_attempt_at), else_=later)


def _settle(opts: Options, session: Session, items: list[dict[str, Any]]) -> None:
    """Put deferred instances back in the queue (the attempt does not count); mark the
    others' spec applied."""
    t = table_of(Instance)
    now = clock.now()
    for item in items:
        if item.get("deferred"):
            session.execute(
                sa.update(t)
                .where(t.c.id == item["id"])
                .values(
                    work="pending",
                    attempts=bulk.greatest(session, t.c.attempts - 1, 0),
                    next_attempt_at=_waiting_retry(t, item, now, opts)
                    if item.get("waiting")
                    else now + timedelta(seconds=opts.host_down_retry_s),
                    last_error=str(item["deferred"])[:2000],
                )
            )
            continue
        # the spec this pass worked from is applied; a newer one is pending again
        session.execute(
            sa.update(t)
            .where(t.c.id == item["id"])
            .values(
                applied_version=item["spec_version"],
                attempts=0,
                work=sa.case((t.c.spec_version > item["spec_version"], "pending"), else_="idle"),
            )
        )
