"""Serving on-demand requests (``mno.store.requests``) inside an agent's pass.

An agent that serves a kind lists ``requests.channel(kind)`` in its ``WAKE_ON``, so a
committed request starts a pass at once, and calls ``serve(ctx, kind, handle)`` in its
``tick``. ``handle(args)`` does the work through domain functions and returns a JSON-able
result; a result with an ``error`` key, or an exception, records the request as
``failed`` with that error (the user asked for this run: it is not retried behind their
back). A request whose agent died mid-way is taken back when its lease expires and done
again (handlers are idempotent), up to ``MAX_ATTEMPTS`` times.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

from sqlmodel import col

from mno.agents.base import TickContext, TickResult
from mno.agents.queue import Item, work_queue
from mno.store import requests
from mno.store.models.agents import WorkRequest

MAX_ATTEMPTS = 3


def serve(
    ctx: TickContext,
    kind: str,
    handle: Callable[[dict[str, Any]], dict[str, Any]],
    *,
    concurrency: int | None = None,
) -> TickResult:
    """Claim the due requests of ``kind`` and do each once (see the module docstring)."""

    def one(item: Item) -> None:
        try:
            result = handle(dict(item["args"] or {}))
        except Exception as exc:  # recorded on the request: the user sees it with --wait
            item["result"] = {}
            item["error"] = f"{type(exc).__name__}: {exc}" if not str(exc) else str(exc)
            return
        item["result"] = result
        if result.get("error"):
            item["error"] = str(result["error"])

    if concurrency is not None:
        ctx = replace(ctx, concurrency=concurrency)
    return work_queue(
        ctx,
        WorkRequest,
        one,
        where=col(WorkRequest.kind) == kind,
        order_by=[col(WorkRequest.created_at)],
        returning=("kind", "args"),
        max_attempts=MAX_ATTEMPTS,
        finish=requests.finish,
    )
