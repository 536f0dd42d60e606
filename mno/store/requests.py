"""On-demand work: a command asks the agent that serves a kind of work to do it now.

``enqueue(session, kind, args)`` writes a ``WorkRequest`` row (``agent_request``, status
``pending``) with its audit row and a ``request.queued`` event, and wakes the agents that
listen on ``channel(kind)`` when the transaction commits (``mno.store.wake``): on
PostgreSQL a ``NOTIFY`` in the writing transaction, on SQLite a datagram after the
commit. A rollback writes nothing and wakes nobody.

The serving agent claims requests through ``store.leases`` (``UPDATE … WHERE id IN
(SELECT … FOR UPDATE SKIP LOCKED)`` on PostgreSQL, ``BEGIN IMMEDIATE`` on SQLite), so
however many processes wake, one of them does each request; ``finish()`` records each
outcome (``done`` or ``failed``, a JSON result, the error) and a ``request.finished``
event in the agent's completing transaction, which is fenced on its lease. The agent's
interval stays the safety net: a lost wake-up delays a request by one interval at most.

Kinds: ``billing_run`` (served by the biller, ``mno billing run --async``) and
``sync_run`` (the poller, ``mno sync run CONNECTION --async``).
"""

from __future__ import annotations

import re
import uuid
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from mno import clock
from mno.store import audit, outbox, wake
from mno.store.audit import jsonable
from mno.store.lookup import by_id_or_prefix
from mno.store.models.agents import WorkRequest
from mno.store.types import table_of

if TYPE_CHECKING:
    from sqlmodel import Session

KINDS = ("billing_run", "sync_run")
FINAL = ("done", "failed")
_KIND = re.compile(r"^[a-z][a-z0-9_]{0,30}$")


def channel(kind: str) -> str:
    """The wake-up channel of requests of ``kind``."""
    if not _KIND.match(kind):
        raise ValueError(f"invalid request kind {kind!r}")
    return f"request_{kind}"


def enqueue(
    session: Session, kind: str, args: dict[str, Any], *, actor: str | None = None
) -> WorkRequest:
    """Queue a request of ``kind`` and wake its agents once the transaction commits."""
    if kind not in KINDS:
        raise ValueError(f"unknown request kind {kind!r}")
    req = WorkRequest(kind=kind, args=jsonable(args), actor=actor)
    session.add(req)
    audit.record(
        session,
        "request.queue",
        target_type="request",
        target_id=req.id,
        target=kind,
        after={"kind": kind, "args": req.args},
        actor=actor,
    )
    outbox.emit(session, "request.queued", {"id": str(req.id), "kind": kind, "args": req.args})
    wake.notify(session, channel(kind))
    return req


def finish(session: Session, items: list[dict[str, Any]]) -> None:
    """Record the outcome of requests an agent completed (``agents.queue.work_queue``'s
    ``finish``: the same transaction as the completion, for the items still ours).

    Each item carries ``result`` (a dict) and, when the work failed, ``error``."""
    t = table_of(WorkRequest)
    now = clock.now()
    for item in items:
        error = item.get("error")
        status = "failed" if error else "done"
        result = jsonable(item.get("result") or {})
        session.execute(
            sa.update(t)
            .where(t.c.id == item["id"])
            .values(
                status=status,
                result=result,
                last_error=str(error)[:2000] if error else None,
                finished_at=now,
                updated_at=now,
            )
        )
        outbox.emit(
            session,
            "request.finished",
            {
                "id": str(item["id"]),
                "kind": item.get("kind"),
                "status": status,
                "result": result,
                "error": error,
            },
        )


def get(session: Session, ref: str | uuid.UUID) -> WorkRequest:
    """The request ``ref`` names (a UUID or a unique prefix); NotFound otherwise."""
    return by_id_or_prefix(session, WorkRequest, ref, "request")


def view(req: WorkRequest) -> dict[str, Any]:
    """The request as the CLI shows it (stable keys)."""
    return {
        "id": str(req.id),
        "kind": req.kind,
        "status": req.status,
        "args": req.args,
        "result": req.result,
        "error": req.last_error,
        "attempts": req.attempts,
        "created_at": req.created_at,
        "finished_at": req.finished_at,
    }
