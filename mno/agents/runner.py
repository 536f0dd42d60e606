"""The agent runtime: one APScheduler ``BlockingScheduler`` running every enabled agent.

- Each agent's ``tick`` runs on its interval or cron schedule (with jitter), with
  ``coalesce=True``, ``max_instances=1`` and a ``misfire_grace_time``.
- Singleton agents (``SINGLETON = True``) hold a named lease lock, so only one host in the
  fleet runs them at a time; ``tick_once`` (``mno agents tick``) runs one pass outside the
  daemon and holds that lock through the same helpers.
- A heartbeat row (host, pid, agents, start time, last beat) is written every few seconds.
- Signals only set flags: the first SIGTERM/SIGINT stops warm (no new claims, in-flight
  items finish, leases are released, exit 0); the second stops cold (exit 1 at once; the
  leases expire and other hosts take the work back).
- An exception in a tick is recorded and logged and never kills the process. A store that
  cannot be reached is retried with backoff.
- ``--metrics-port`` serves Prometheus metrics and ``/healthz`` (see ``mno.agents.http``).
- Wake-ups: one ``mno.store.wake.Listener`` per process listens on the channels of the
  agents' ``WAKE_ON``; a wake-up starts a pass at once, or, when one is running, makes it
  look for the new work (``ctx.wake``) and run again when it ends; a pass that claimed a
  full batch is followed by another at once, so a backlog drains without waiting for the
  interval between batches. Only one pass of an agent runs at a time in a process.
  ``SIDE_JOBS`` (e.g. the provisioner's drift scan) run on their own schedule, so a slow
  pass never delays them.

APScheduler is imported only where the daemon builds and stops its scheduler, so a
single ``mno agents tick`` does not load it.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import signal
import socket
import sys
import threading
import time
from dataclasses import dataclass, field
from datetime import timedelta
from types import ModuleType, SimpleNamespace
from typing import TYPE_CHECKING, Any, TextIO, cast

import sqlalchemy as sa
from sqlalchemy.engine import CursorResult
from sqlalchemy.exc import SQLAlchemyError

from mno import clock
from mno.agents import registry
from mno.agents.base import TickContext, TickResult
from mno.agents.config import AgentConfig, AgentsFile
from mno.agents.http import serve_in_thread
from mno.agents.metrics import Metrics
from mno.errors import Conflict, MnoError, Unavailable
from mno.settings import parse_duration
from mno.store import leases, wake
from mno.store.audit import jsonable
from mno.store.db import session_scope
from mno.store.leases import make_owner
from mno.store.models.agents import AgentTick, Heartbeat
from mno.store.types import table_of

if TYPE_CHECKING:
    from sqlmodel import Session

log = logging.getLogger("mno.agents")
MISSED_BEATS = 3  # a process is stale, and unhealthy, after this many missed heartbeats


# -- logging ----------------------------------------------------------------------------


class JsonFormatter(logging.Formatter):
    FIELDS = ("agent", "item", "outcome", "duration_ms", "claimed", "done", "failed", "retried")

    def format(self, record: logging.LogRecord) -> str:
        data: dict[str, Any] = {
            "ts": clock.now().isoformat().replace("+00:00", "Z"),
            "level": record.levelname.lower(),
            "msg": record.getMessage(),
        }
        for name in self.FIELDS:
            if hasattr(record, name):
                data[name] = getattr(record, name)
        if record.exc_info:
            data["error"] = self.formatException(record.exc_info).splitlines()[-1]
        return json.dumps(data, separators=(",", ":"))


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        agent = getattr(record, "agent", None)
        prefix = f"{self.formatTime(record, '%Y-%m-%dT%H:%M:%S')} {record.levelname:<7}"
        line = f"{prefix} {agent + ': ' if agent else ''}{record.getMessage()}"
        if record.exc_info:
            line += "\n" + self.formatException(record.exc_info)
        return line


class _QuietScheduler(logging.Filter):
    """A pass still running when its next run is due is skipped (``max_instances=1``); that
    is by design, so APScheduler's warning about it is dropped."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not (
            record.name.startswith("apscheduler")
            and "maximum number of running instances" in record.getMessage()
        )


class RuntimeLogHandler(logging.StreamHandler[TextIO]):
    """The stderr handler ``setup_logging`` installs (a second call replaces it)."""


def setup_logging(fmt: str = "text", level: int | str = logging.INFO) -> None:
    """Send the runtime's logs, and those of APScheduler and uvicorn, to stderr in one
    format (``json``: one object per line)."""
    handler = RuntimeLogHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    handler.addFilter(_QuietScheduler())
    root = logging.getLogger()
    root.handlers[:] = [h for h in root.handlers if not isinstance(h, RuntimeLogHandler)] + [
        handler
    ]
    root.setLevel(logging.WARNING)
    log.handlers[:] = []
    log.setLevel(level)
    log.propagate = True


# -- one tick ---------------------------------------------------------------------------


@dataclass
class TickOutcome:
    agent: str
    result: TickResult
    outcome: str  # ok | error | skipped
    error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"agent": self.agent, "outcome": self.outcome, "error": self.error}


def run_tick(module: ModuleType, ctx: TickContext, *, record: bool = True) -> TickOutcome:
    """Run one pass of one agent, time it and record it in ``agent_tick``."""
    started = clock.now()
    t0 = time.perf_counter()
    error: str | None = None
    try:
        result = module.tick(ctx)
        outcome = "ok"
    except Exception as exc:  # a failed pass is recorded, never fatal
        result = TickResult()
        outcome = "error"
        error = f"{type(exc).__name__}: {exc}"
        log.error("tick failed: %s", error, extra={"agent": ctx.agent, "outcome": "error"})
        if isinstance(exc, Unavailable) or type(exc).__module__.startswith("sqlalchemy"):
            result.duration_ms = (time.perf_counter() - t0) * 1000
            return TickOutcome(ctx.agent, result, outcome, error)
    result.duration_ms = (time.perf_counter() - t0) * 1000
    if record:
        _record(ctx, started, result, outcome, error)
    return TickOutcome(ctx.agent, result, outcome, error)


def tick_once(module: ModuleType, ctx: TickContext) -> TickOutcome:
    """Run one pass of one agent outside the daemon (``mno agents tick``).

    A singleton agent holds its fleet-wide lock for the pass, as in the ``Runner``, and
    gives it back afterwards; a lock another process holds is a ``Conflict``. Nothing
    renews the lock during the pass, so it lasts three leases."""
    if not is_singleton(module):
        return run_tick(module, ctx)
    with ctx.session() as s:
        if not hold_singleton(s, ctx.agent, ctx.owner, ctx.lease_for * 3):
            holder = leases.lock_holder(s, singleton_lock(ctx.agent))
            who = holder[0] if holder else "another process"
            raise Conflict(f"{ctx.agent} runs on one host at a time and {who} holds it")
    try:
        return run_tick(module, ctx)
    finally:
        with ctx.session() as s:
            release_singleton(s, ctx.agent, ctx.owner)


# -- singleton agents -------------------------------------------------------------------


def is_singleton(module: ModuleType) -> bool:
    """True for an agent that only one process in the fleet may run at a time."""
    return bool(getattr(module, "SINGLETON", False))


def singleton_lock(name: str) -> str:
    """The name of the lease lock a singleton agent holds."""
    return f"agent:{name}"


def hold_singleton(session: Session, name: str, owner: str, ttl: timedelta) -> bool:
    """Take or renew the lock of singleton agent ``name`` for ``owner``; False while
    another live owner holds it."""
    return leases.acquire_lock(session, singleton_lock(name), owner, ttl)


def release_singleton(session: Session, name: str, owner: str) -> None:
    leases.release_lock(session, singleton_lock(name), owner)


def _record(
    ctx: TickContext, started: Any, result: TickResult, outcome: str, error: str | None
) -> None:
    try:
        with ctx.session() as s:
            s.add(
                AgentTick(
                    agent=ctx.agent,
                    owner=ctx.owner,
                    started_at=started,
                    duration_ms=result.duration_ms,
                    outcome=outcome,
                    claimed=result.claimed,
                    done=result.done,
                    failed=result.failed,
                    retried=result.retried,
                    error=error,
                    details=_jsonable(result.details),
                )
            )
    except Exception as exc:  # reported: the store may be down; the tick's outcome stands
        log.warning("could not record the tick: %s", exc, extra={"agent": ctx.agent})


def _jsonable(data: dict[str, Any]) -> dict[str, Any]:
    safe: dict[str, Any] = jsonable(data)
    return safe


def context_for(
    name: str,
    cfg: AgentConfig,
    *,
    owner: str | None = None,
    db_url: str | None = None,
    stop_event: threading.Event | None = None,
    max_items: int | None = None,
    on_item: Any = None,
    wake: threading.Event | None = None,
    apart: frozenset[str] = frozenset(),
) -> TickContext:
    module = registry.load(name)
    options = dict(getattr(module, "DEFAULT_OPTIONS", {})) | cfg.options
    return TickContext(
        agent=name,
        owner=owner or make_owner(),
        db_url=db_url,
        batch_size=cfg.batch_size,
        concurrency=cfg.concurrency,
        lease_for=cfg.lease,
        max_items=max_items,
        options=options,
        stop_event=stop_event or threading.Event(),
        log=log,
        on_item=on_item,
        wake=wake,
        interval_s=cfg.interval.total_seconds() if cfg.interval else None,
        apart=apart,
    )


def side_jobs(module: ModuleType) -> dict[str, Any]:
    """The passes an agent has the runner schedule apart from its ``tick``."""
    return dict(getattr(module, "SIDE_JOBS", {}))


def side_interval(module: ModuleType, cfg: AgentConfig, job: str) -> timedelta:
    """``<job>_interval`` from the agent's options, else the agent's own interval."""
    options = dict(getattr(module, "DEFAULT_OPTIONS", {})) | cfg.options
    value = options.get(f"{job}_interval")
    if value:
        return parse_duration(str(value))
    return cfg.interval or timedelta(seconds=10)


# -- the long-running process -----------------------------------------------------------


@dataclass
class Runner:
    config: AgentsFile
    only: list[str] | None = None
    metrics_port: int | None = None
    metrics_host: str = "127.0.0.1"
    db_url: str | None = None
    owner: str = field(default_factory=make_owner)
    stop_event: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        self.metrics = Metrics()
        self.modules: dict[str, ModuleType] = {}
        self.agent_configs: dict[str, AgentConfig] = {}
        self.started_at = clock.now()
        self.last_beat_ok: float | None = None
        self._store_backoff_until = 0.0
        self._store_failures = 0
        self._locks: set[str] = set()
        self._lock = threading.Lock()
        self._passes: dict[str, threading.Lock] = {}  # one pass of an agent at a time
        self._wakes: dict[str, threading.Event] = {}
        self._side_again: dict[str, threading.Event] = {}  # a trigger fired mid-pass
        self._kicks: Any = None  # the executor of passes started by wake-ups
        self.listener: wake.Listener | None = None

    # agents ------------------------------------------------------------------------

    def select_agents(self) -> None:
        wanted = self.only or [n for n, c in self.config.agents.items() if c.enabled]
        for name in wanted:
            cfg = self.config.agents.get(name) or AgentConfig(name=name)
            if name not in registry.AGENTS:
                log.warning("agent %s is not available in this build; skipped", name)
                continue
            self.modules[name] = registry.load(name)
            self.agent_configs[name] = cfg

    def tick(self, name: str) -> None:
        """Run a pass of ``name`` unless one is running (which then sees the wake-up); run
        again while wake-ups arrived during the pass, or while passes claim a full batch
        (a backlog is drained at once, not one batch per interval)."""
        pass_lock = self._passes.setdefault(name, threading.Lock())
        woke = self._wakes.setdefault(name, threading.Event())
        if not pass_lock.acquire(blocking=False):
            return
        try:
            while not self.stop_event.is_set():
                woke.clear()
                full = self._pass(name, woke)
                if not woke.is_set() and not full:
                    break
        finally:
            pass_lock.release()
        if woke.is_set():  # arrived between the last look and the release
            self._kick(name)

    def wake(self, name: str) -> None:
        """A writer notified one of the agent's channels: run a pass now."""
        self._wakes.setdefault(name, threading.Event()).set()
        self._kick(name)

    def _kick(self, name: str) -> None:
        if self.stop_event.is_set() or self._kicks is None:
            return
        lock = self._passes.get(name)
        if lock is not None and lock.locked():
            return  # the running pass sees the wake-up
        try:
            self._kicks.submit(self.tick, name)
        except RuntimeError:  # shut down: stopping
            pass

    def start_listener(self) -> None:
        """Listen on the wake-up channels of the selected agents (one connection)."""
        from concurrent.futures import ThreadPoolExecutor

        self._kicks = ThreadPoolExecutor(max(1, len(self.modules)), thread_name_prefix="wake")
        channels = {
            name: tuple(getattr(module, "WAKE_ON", ()))
            for name, module in self.modules.items()
            if getattr(module, "WAKE_ON", ())
        }
        if not channels:
            return
        from mno import settings
        from mno.store.db import normalize_url

        url = normalize_url(self.db_url or settings.db_url())
        self.listener = wake.Listener(url, name=f"mno-agents {self.owner}"[:63])
        for name, names in channels.items():
            for channel in names:
                self.listener.subscribe(channel, functools.partial(self.wake, name))
        self.listener.start()

    def start_triggers(self) -> None:
        """Run each agent's ``TRIGGERS`` watchers on daemon threads (see ``base``)."""
        for name, module in self.modules.items():
            for job, watch in dict(getattr(module, "TRIGGERS", {})).items():
                if job not in side_jobs(module):
                    continue
                thread = threading.Thread(
                    target=self._watch,
                    args=(name, job, watch),
                    name=f"{name}.{job}.trigger",
                    daemon=True,
                )
                thread.start()

    def _watch(self, name: str, job: str, watch: Any) -> None:
        failures = 0
        ctx = context_for(
            name,
            self.agent_configs[name],
            owner=self.owner,
            db_url=self.db_url,
            stop_event=self.stop_event,
        )
        while not self.stop_event.is_set():
            try:
                watch(ctx, functools.partial(self._run_side_now, name, job))
                failures = 0
            except Exception as exc:  # logged; restarted with backoff
                failures += 1
                log.warning("%s trigger failed: %s", job, exc, extra={"agent": name})
            self.stop_event.wait(min(60.0, 0.5 * 2 ** min(failures, 7)))

    def _run_side_now(self, name: str, job: str) -> None:
        if self.stop_event.is_set():
            return
        self._side_again.setdefault(f"{name}.{job}", threading.Event()).set()
        try:
            self.scheduler.modify_job(f"{name}.{job}", next_run_time=clock.now())
        except Exception:  # the scheduler is stopping; the interval covers it
            log.debug("could not run %s now", job, extra={"agent": name})

    def stop_listener(self) -> None:
        if self.listener is not None:
            self.listener.stop()
        if self._kicks is not None:
            self._kicks.shutdown(wait=True)

    def side(self, name: str, job: str) -> None:
        """Passes of an agent's side job (see ``SIDE_JOBS``): one, and another while a
        trigger fired during the last."""
        again = self._side_again.setdefault(f"{name}.{job}", threading.Event())
        for _ in range(10):
            again.clear()
            self._side_once(name, job)
            if not again.is_set() or self.stop_event.is_set():
                break

    def _side_once(self, name: str, job: str) -> None:
        if self.stop_event.is_set() or time.monotonic() < self._store_backoff_until:
            return
        module, cfg = self.modules[name], self.agent_configs[name]
        if is_singleton(module) and name not in self._locks:
            return
        ctx = context_for(
            name,
            cfg,
            owner=self.owner,
            db_url=self.db_url,
            stop_event=self.stop_event,
            on_item=self._on_item,
            apart=frozenset(side_jobs(module)),
        )
        fn = side_jobs(module)[job]
        outcome = run_tick(SimpleNamespace(tick=fn), ctx, record=False)  # type: ignore[arg-type]
        r = outcome.result
        self.metrics.tick(f"{name}.{job}", outcome.outcome, r.duration_ms / 1000)
        if r.claimed or r.details:
            log.info(
                "%s %s: %s; claimed %d, done %d, failed %d, retried %d in %.0f ms",
                job,
                outcome.outcome,
                json.dumps(_jsonable(r.details), separators=(",", ":")),
                r.claimed,
                r.done,
                r.failed,
                r.retried,
                r.duration_ms,
                extra={"agent": name, "outcome": outcome.outcome},
            )

    def _pass(self, name: str, woke: threading.Event) -> bool:
        """One pass; True when it claimed a full batch (more work is likely due)."""
        if self.stop_event.is_set() or time.monotonic() < self._store_backoff_until:
            return False
        module, cfg = self.modules[name], self.agent_configs[name]
        if is_singleton(module) and not self._hold_singleton(name):
            return False
        ctx = context_for(
            name,
            cfg,
            owner=self.owner,
            db_url=self.db_url,
            stop_event=self.stop_event,
            on_item=self._on_item,
            wake=woke,
            apart=frozenset(side_jobs(module)),
        )
        outcome = run_tick(module, ctx)
        r = outcome.result
        self.metrics.tick(name, outcome.outcome, r.duration_ms / 1000)
        if outcome.outcome == "error" and outcome.error and _is_store_error(outcome.error):
            self._store_down(outcome.error)
        else:
            self._store_up()
        if r.claimed or outcome.outcome != "ok":
            log.info(
                "tick %s: claimed %d, done %d, failed %d, retried %d in %.0f ms",
                outcome.outcome,
                r.claimed,
                r.done,
                r.failed,
                r.retried,
                r.duration_ms,
                extra={
                    "agent": name,
                    "outcome": outcome.outcome,
                    "claimed": r.claimed,
                    "done": r.done,
                    "failed": r.failed,
                    "retried": r.retried,
                    "duration_ms": round(r.duration_ms, 1),
                },
            )
        self._update_depth(name, module)
        return outcome.outcome == "ok" and r.claimed >= cfg.batch_size

    def _on_item(self, agent: str, outcome: str, seconds: float, item: str | None) -> None:
        self.metrics.item(agent, outcome, seconds)
        if log.isEnabledFor(logging.DEBUG) or outcome == "failed":
            log.log(
                logging.WARNING if outcome == "failed" else logging.DEBUG,
                "item %s %s",
                item,
                outcome,
                extra={
                    "agent": agent,
                    "item": item,
                    "outcome": outcome,
                    "duration_ms": round(seconds * 1000, 2),
                },
            )

    def _hold_singleton(self, name: str) -> bool:
        try:
            with session_scope(self.db_url) as s:
                held = hold_singleton(s, name, self.owner, self._singleton_ttl(name))
        except Exception as exc:  # reported: logged as the store being down, with backoff
            self._store_down(str(exc))
            return False
        with self._lock:
            (self._locks.add if held else self._locks.discard)(name)
        return held

    def _singleton_ttl(self, name: str) -> timedelta:
        """Held across passes and renewed by every heartbeat, so it outlives a few missed
        beats but a dead host's lock expires soon."""
        cfg = self.agent_configs[name]
        beats = self.config.heartbeat * (MISSED_BEATS + 1)
        return max(beats, min(cfg.lease, (cfg.interval or timedelta(minutes=1)) * 3))

    def _update_depth(self, name: str, module: ModuleType) -> None:
        depth_fn = getattr(module, "queue_depth", None)
        if depth_fn is None:
            return

        try:
            with session_scope(self.db_url, write=False) as s:
                due, leased = depth_fn(s)
            self.metrics.depth(name, due, leased)
        except (SQLAlchemyError, MnoError):  # best effort; the tick reports the store
            pass

    # store health ------------------------------------------------------------------

    def _store_down(self, error: str) -> None:
        with self._lock:
            self._store_failures += 1
            delay = min(60.0, 0.5 * 2 ** min(self._store_failures, 7))
            self._store_backoff_until = time.monotonic() + delay
        log.warning("store unreachable (%s); retrying in %.1fs", error.splitlines()[0], delay)

    def _store_up(self) -> None:
        if self._store_failures:
            log.info("store reachable again")
        self._store_failures = 0
        self._store_backoff_until = 0.0

    # heartbeats --------------------------------------------------------------------

    def beat(self) -> None:
        now = clock.now()
        try:
            with session_scope(self.db_url) as s:
                t = table_of(Heartbeat)
                updated = cast(
                    "CursorResult[Any]",
                    s.execute(
                        sa.update(t)
                        .where(t.c.owner == self.owner)
                        .values(last_beat=now, updated_at=now, agents=sorted(self.modules))
                    ),
                ).rowcount
                if not updated:
                    s.add(
                        Heartbeat(
                            owner=self.owner,
                            host=socket.gethostname(),
                            pid=os.getpid(),
                            agents=sorted(self.modules),
                            started_at=self.started_at,
                            last_beat=now,
                            interval_s=self.config.heartbeat.total_seconds(),
                        )
                    )
                for name in sorted(self._locks):  # a long singleton pass keeps its lock
                    if not hold_singleton(s, name, self.owner, self._singleton_ttl(name)):
                        log.warning("lost the singleton lock", extra={"agent": name})
                        with self._lock:
                            self._locks.discard(name)
            self.last_beat_ok = time.monotonic()
            self._store_up()
        except Exception as exc:  # reported: logged as the store being down, with backoff
            self._store_down(str(exc))

    def healthy(self) -> bool:
        interval = self.config.heartbeat.total_seconds()
        return (
            self.last_beat_ok is not None
            and time.monotonic() - self.last_beat_ok < MISSED_BEATS * interval
            and not self.stop_event.is_set()
        )

    # lifecycle -------------------------------------------------------------------

    def _on_signal(self, signum: int, _frame: Any) -> None:
        if self.stop_event.is_set():
            log.warning("second signal: cold stop")
            os._exit(1)
        log.info(
            "%s: warm stop; finishing in-flight work (signal again to stop at once)",
            signal.Signals(signum).name,
        )
        self.stop_event.set()
        threading.Thread(target=self._shutdown_scheduler, daemon=True).start()

    def _shutdown_scheduler(self) -> None:
        from apscheduler.schedulers import SchedulerNotRunningError

        try:
            self.scheduler.shutdown(wait=True)
        except SchedulerNotRunningError:  # already stopped
            pass

    def build_scheduler(self) -> Any:
        from apscheduler.executors.pool import ThreadPoolExecutor
        from apscheduler.schedulers.blocking import BlockingScheduler
        from apscheduler.triggers.cron import CronTrigger
        from apscheduler.triggers.interval import IntervalTrigger

        grace = max(
            (c.misfire_grace for c in self.agent_configs.values()), default=timedelta(seconds=30)
        )
        sides = sum(len(side_jobs(m)) for m in self.modules.values())
        scheduler = BlockingScheduler(
            timezone="UTC",
            executors={"default": ThreadPoolExecutor(max(2, len(self.modules) + sides + 1))},
            job_defaults={
                "coalesce": True,
                "max_instances": 1,
                "misfire_grace_time": int(grace.total_seconds()),
            },
        )
        for name, cfg in self.agent_configs.items():
            jitter = int(cfg.jitter.total_seconds()) or None
            grace_s = max(1, int(cfg.misfire_grace.total_seconds()))
            if cfg.cron:
                trigger: Any = CronTrigger.from_crontab(cfg.cron, timezone=cfg.timezone)
                trigger.jitter = jitter
                scheduler.add_job(
                    self.tick,
                    trigger,
                    args=[name],
                    id=name,
                    name=name,
                    misfire_grace_time=grace_s,
                )
            else:
                assert cfg.interval is not None
                trigger = IntervalTrigger(seconds=cfg.interval.total_seconds(), jitter=jitter)
                scheduler.add_job(
                    self.tick,
                    trigger,
                    args=[name],
                    id=name,
                    name=name,
                    next_run_time=clock.now(),
                    misfire_grace_time=grace_s,
                )
        for name, module in self.modules.items():
            for job in side_jobs(module):
                every = side_interval(module, self.agent_configs[name], job)
                scheduler.add_job(
                    self.side,
                    IntervalTrigger(seconds=every.total_seconds()),
                    args=[name, job],
                    id=f"{name}.{job}",
                    name=f"{name}.{job}",
                    next_run_time=clock.now(),
                )
        scheduler.add_job(
            self.beat,
            IntervalTrigger(seconds=self.config.heartbeat.total_seconds()),
            id="_heartbeat",
            name="heartbeat",
        )
        return scheduler

    def run(self) -> int:
        self.select_agents()
        if not self.modules:
            log.error("no agent to run")
            return 2
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._on_signal)
        server = None
        if self.metrics_port is not None:
            server = serve_in_thread(self, self.metrics_host, self.metrics_port)
        self.scheduler = self.build_scheduler()
        self.beat()
        try:
            self.start_listener()
        except Exception as exc:  # reported: the interval still runs every agent
            log.warning("no wake-ups (%s); agents run on their intervals", exc)
        self.start_triggers()
        log.info("agents %s running as %s", ", ".join(sorted(self.modules)), self.owner)
        try:
            self.scheduler.start()
        finally:
            self.stop_listener()
            self._cleanup()
            if server is not None:
                server.should_exit = True
        log.info("stopped")
        return 0

    def _cleanup(self) -> None:
        try:
            with session_scope(self.db_url) as s:
                for name in list(self._locks):
                    release_singleton(s, name, self.owner)
                t = table_of(Heartbeat)
                s.execute(sa.delete(t).where(t.c.owner == self.owner))
        except Exception as exc:  # reported (logged); the leases expire on their own
            log.warning("could not clean up on stop: %s", exc)


def _is_store_error(error: str) -> bool:
    return error.startswith(("Unavailable", "OperationalError", "InterfaceError"))
