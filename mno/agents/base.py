"""The contract between the runner and the agents.

An agent is a module listed in ``mno.agents.registry.AGENTS`` with:

- ``tick(ctx: TickContext) -> TickResult``: one pass. It claims a batch of work through
  ``mno.store.leases``, does it through domain functions and records the outcome. An
  exception in one item marks only that item for retry; ``tick`` raises only when the
  whole pass failed (e.g. the store is unreachable).
- ``queue_depth(session) -> tuple[int, int]`` (optional): items due now, items leased.
- ``SINGLETON = True`` (optional): only one process in the fleet runs it at a time.
- ``DEFAULT_OPTIONS: dict`` (optional): agent-specific options and their defaults.
- ``WAKE_ON: tuple[str, ...]`` (optional): wake-up channels (``mno.store.wake``). The
  runner starts a pass at once when a writer notifies one, and a pass already running
  sees ``ctx.wake`` set (``work_queue`` then claims the new work in a free slot); the
  interval stays as the safety net.
- ``SIDE_JOBS: dict[str, Callable[[TickContext], TickResult]]`` (optional): passes the
  runner schedules apart from ``tick`` (every ``<name>_interval`` option, else the
  agent's interval), so that a slow ``tick`` never delays them. ``tick`` skips the jobs
  named in ``ctx.apart`` and runs the others itself (``mno agents tick`` runs them all).
- ``TRIGGERS: dict[str, Callable[[TickContext, Callable[[], None]], None]]`` (optional):
  for a side job, a watcher the runner runs on its own thread (restarted with backoff);
  it calls ``fire()`` to run that side job at once (e.g. on a Docker event).

Most queue agents can write ``tick`` as one call to ``mno.agents.queue.work_queue(ctx,
Model, handle)``: claim in batches, handle on ``ctx.concurrency`` threads, retry failures
with backoff, complete in batches, release unstarted items on a warm stop.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import asdict, dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from mno.store.db import session_scope
from mno.store.leases import make_owner

if TYPE_CHECKING:
    from sqlmodel import Session


@dataclass
class TickContext:
    agent: str
    owner: str = field(default_factory=make_owner)
    db_url: str | None = None
    batch_size: int = 100
    concurrency: int = 4
    lease_for: timedelta = timedelta(seconds=60)
    max_items: int | None = None
    options: dict[str, Any] = field(default_factory=dict)
    stop_event: threading.Event = field(default_factory=threading.Event)
    log: logging.Logger = field(default_factory=lambda: logging.getLogger("mno.agents"))
    on_item: Callable[[str, str, float, str | None], None] | None = None
    wake: threading.Event | None = None  # set when a writer woke the agent mid-pass
    interval_s: float | None = None  # the agent's interval: a long pass looks again this often
    apart: frozenset[str] = frozenset()  # side jobs the runner schedules apart from tick

    def woken(self) -> bool:
        """True (once) when a wake-up arrived since the last call."""
        if self.wake is None or not self.wake.is_set():
            return False
        self.wake.clear()
        return True

    def session(self, write: bool = True) -> AbstractContextManager[Session]:
        return session_scope(self.db_url, write=write)

    def stopping(self) -> bool:
        """True once a warm stop was asked: claim nothing new."""
        return self.stop_event.is_set()

    def option(self, name: str, default: Any = None) -> Any:
        return self.options.get(name, default)

    def item_done(self, outcome: str, seconds: float, item: str | None = None) -> None:
        """Report one item's outcome (done, failed, retried) for logs and metrics."""
        if self.on_item is not None:
            self.on_item(self.agent, outcome, seconds, item)


@dataclass
class TickResult:
    claimed: int = 0
    done: int = 0
    failed: int = 0
    retried: int = 0
    duration_ms: float = 0.0
    details: dict[str, Any] = field(default_factory=dict)

    def add(self, other: TickResult) -> None:
        self.claimed += other.claimed
        self.done += other.done
        self.failed += other.failed
        self.retried += other.retried
        for key, value in other.details.items():
            if isinstance(value, int | float) and isinstance(self.details.get(key, 0), int | float):
                self.details[key] = self.details.get(key, 0) + value
            else:
                self.details[key] = value

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class Timer:
    """``with Timer() as t: …`` then ``t.ms``."""

    def __enter__(self) -> Timer:
        self.start = time.perf_counter()
        self.ms = 0.0
        return self

    def __exit__(self, *exc: object) -> None:
        self.ms = (time.perf_counter() - self.start) * 1000


def iter_batches(items: list[Any], size: int) -> Iterator[list[Any]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]
