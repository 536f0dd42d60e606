"""The probe agent: handles ``agent_probe_item`` rows and records a side effect for each.

It proves a deployment processes each item exactly once across hosts (``mno agents probe
enqueue N``, then watch ``mno agents status``), and it is the work the runtime's own tests
and benchmark use. An item may be told to fail its first attempts (``fail_times``) or to
take some time (``work_ms``). Its ``tick`` is the worked example of ``work_queue``.
"""

from __future__ import annotations

import time
from datetime import timedelta
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from mno import clock
from mno.agents.base import TickContext, TickResult
from mno.agents.queue import work_queue
from mno.errors import BadInput
from mno.store import leases
from mno.store.models.agents import ProbeEffect, ProbeItem
from mno.store.types import new_id

if TYPE_CHECKING:
    from sqlmodel import Session


def enqueue(
    session: Session, count: int, *, batch: str = "default", fail_times: int = 0, work_ms: int = 0
) -> int:
    if not 1 <= count <= 1_000_000:
        raise BadInput("count must be between 1 and 1,000,000")
    now = clock.now()
    rows = [
        {
            "id": new_id(),
            "created_at": now,
            "updated_at": now,
            "status": "pending",
            "attempts": 0,
            "next_attempt_at": now,
            "batch": batch,
            "fail_times": fail_times,
            "work_ms": work_ms,
        }
        for _ in range(count)
    ]
    for start in range(0, len(rows), 5000):
        session.execute(sa.insert(ProbeItem), rows[start : start + 5000])
    return count


def queue_depth(session: Session) -> tuple[int, int]:
    return leases.depth(session, ProbeItem)


def _handle(item: dict[str, Any]) -> None:
    if item["work_ms"]:
        time.sleep(item["work_ms"] / 1000)
    if item["attempts"] <= item["fail_times"]:
        raise RuntimeError("probe asked to fail")


def _record_effects(session: Session, items: list[dict[str, Any]]) -> None:
    """The side effect, written in the transaction that completes the items (so a
    process whose lease was taken back writes none)."""
    now = clock.now()
    session.execute(
        sa.insert(ProbeEffect),
        [
            {
                "id": new_id(),
                "item_id": i["id"],
                "owner": i["owner"],
                "created_at": now,
                "updated_at": now,
            }
            for i in items
        ],
    )


def tick(ctx: TickContext) -> TickResult:
    def handle(item: dict[str, Any]) -> None:
        item["owner"] = ctx.owner
        _handle(item)

    return work_queue(
        ctx,
        ProbeItem,
        handle,
        returning=("fail_times", "work_ms"),
        retry_base=timedelta(milliseconds=100),
        retry_cap=timedelta(seconds=2),
        finish=_record_effects,
    )
