"""``--async`` and ``--wait`` for commands whose work an agent does on demand
(``mno billing run --async``, ``mno sync run CONNECTION --async``): queue the request
(``mno.store.requests``), print its id, and with ``--wait`` follow it to its outcome.

``--wait`` refuses before writing anything when no process runs the serving agent (exit
3), and stops with exit 3 if it goes away; a failed request exits 1 with its error.
"""

from __future__ import annotations

import time
from typing import Annotated, Any

import typer

from mno.cli.output import Format, render, spinner, success
from mno.errors import MnoError, Unavailable
from mno.settings import parse_duration

AsyncOpt = Annotated[
    bool,
    typer.Option(
        "--async",
        help="Queue the run for the agents instead (the serving agent wakes at once); "
        "print the request id.",
    ),
]
WaitOpt = Annotated[
    bool,
    typer.Option("--wait", help="With --async: follow the request until its outcome."),
]
TimeoutOpt = Annotated[str, typer.Option(help="How long --wait waits, e.g. 30m.")]


def _live(agent: str) -> bool:
    from mno.agents import status
    from mno.store.db import session_scope

    with session_scope(write=False) as s:
        return status.live(s, agent)


def queue(kind: str, args: dict[str, Any], agent: str, *, wait: bool) -> dict[str, Any]:
    """Queue a request of ``kind``; with ``wait``, first check that ``agent`` runs."""
    from mno.store import requests
    from mno.store.db import session_scope

    if wait and not _live(agent):
        raise Unavailable(
            f"no {agent} is running, so --wait would never end",
            "start one with `mno agents run`, or run without --async",
        )
    with session_scope() as s:
        return requests.view(requests.enqueue(s, kind, args))


def follow(request_id: str, agent: str, timeout: str) -> dict[str, Any]:
    """Poll the request until it is done or failed (MnoError), the timeout passes, or no
    ``agent`` runs any more (Unavailable)."""
    from mno.store import requests
    from mno.store.db import session_scope

    deadline = time.monotonic() + parse_duration(timeout).total_seconds()
    checked = time.monotonic()
    with spinner(f"waiting for request {request_id[:8]}"):
        while True:
            with session_scope(write=False) as s:
                view = requests.view(requests.get(s, request_id))
            if view["status"] == "done":
                return view
            if view["status"] == "failed":
                raise MnoError(f"request {request_id} failed: {view['error']}")
            if time.monotonic() >= deadline:
                raise MnoError(
                    f"request {request_id} is still {view['status']} after {timeout}",
                    "see `mno agents status`",
                )
            if time.monotonic() - checked > 5:
                checked = time.monotonic()
                if not _live(agent):
                    raise Unavailable(
                        f"no {agent} is running; request {request_id} stays queued",
                        "start one with `mno agents run`",
                    )
            time.sleep(0.05)


def run_async(
    kind: str, args: dict[str, Any], agent: str, wait: bool, timeout: str, output: Format
) -> dict[str, Any]:
    """Queue, print the request id, and with ``wait`` follow it; the request's view."""
    view = queue(kind, args, agent, wait=wait)
    if not wait:
        if output is Format.table:
            success(f"request {view['id']} queued for the {agent}")
        render(view, output)
        return view
    if output is Format.table:
        success(f"request {view['id']} queued for the {agent}")
    view = follow(view["id"], agent, timeout)
    if output is Format.table:
        success(f"request {view['id']} done")
    render(view, output)
    return view
