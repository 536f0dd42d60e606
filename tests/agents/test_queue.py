"""work_queue(): the claim → handle → complete loop agents share, on SQLite and PostgreSQL."""

from __future__ import annotations

import threading

import sqlalchemy as sa

from mno.agents import probe
from mno.agents.base import TickContext
from mno.agents.queue import work_queue
from mno.store.models.agents import ProbeEffect, ProbeItem


def _status(session) -> dict[str, int]:
    with session(write=False) as s:
        rows = s.execute(
            sa.select(ProbeItem.status, sa.func.count()).group_by(ProbeItem.status)
        ).all()
    return {k: int(v) for k, v in rows}


def _effects(session) -> tuple[int, int]:
    with session(write=False) as s:
        total = s.execute(sa.select(sa.func.count()).select_from(ProbeEffect)).scalar_one()
        distinct = s.execute(
            sa.select(sa.func.count(sa.distinct(ProbeEffect.item_id)))
        ).scalar_one()
    return int(total), int(distinct)


def _finish(s, items) -> None:
    s.execute(
        sa.insert(ProbeEffect),
        [{"id": ProbeEffect().id, "item_id": i["id"], "owner": "t"} for i in items],
    )


def test_concurrent_handlers_complete_each_item_once(session, store_url):
    with session() as s:
        probe.enqueue(s, 50)
    seen: list[str] = []
    lock = threading.Lock()

    def handle(item):
        with lock:
            seen.append(item["id"])

    ctx = TickContext(agent="t", db_url=store_url, batch_size=20, concurrency=4, max_items=1000)
    result = work_queue(ctx, ProbeItem, handle, finish=_finish)
    assert (result.claimed, result.done, result.retried) == (50, 50, 0)
    assert len(set(seen)) == 50 and len(seen) == 50
    assert _status(session) == {"done": 50}
    assert _effects(session) == (50, 50)


def test_a_failing_item_is_retried_then_failed(session, store_url):
    with session() as s:
        probe.enqueue(s, 10, fail_times=1)
        probe.enqueue(s, 2, fail_times=99)

    def handle(item):
        if item["attempts"] <= item["fail_times"]:
            raise RuntimeError("boom")

    ctx = TickContext(agent="t", db_url=store_url, batch_size=100, concurrency=1)
    first = work_queue(ctx, ProbeItem, handle, returning=("fail_times",), max_attempts=2)
    assert (first.claimed, first.done, first.retried, first.failed) == (12, 0, 12, 0)
    with session() as s:  # make the retries due now
        s.execute(sa.update(ProbeItem).values(next_attempt_at=sa.func.now()))
    with session(write=False) as s:
        errors = set(s.execute(sa.select(ProbeItem.last_error)).scalars())
    assert errors == {"RuntimeError: boom"}
    ctx = TickContext(agent="t", db_url=store_url, batch_size=100, concurrency=1)
    second = work_queue(ctx, ProbeItem, handle, returning=("fail_times",), max_attempts=2)
    assert (second.claimed, second.done, second.failed) == (12, 10, 2)
    assert _status(session) == {"done": 10, "failed": 2}


def test_warm_stop_releases_unstarted_items(session, store_url):
    with session() as s:
        probe.enqueue(s, 30)
    stop = threading.Event()
    handled = []

    def handle(item):
        handled.append(item["id"])
        if len(handled) == 5:
            stop.set()  # a signal arrives while the fifth item is in flight

    ctx = TickContext(agent="t", db_url=store_url, batch_size=30, concurrency=1, stop_event=stop)
    result = work_queue(ctx, ProbeItem, handle, finish=_finish)
    assert (result.claimed, result.done) == (30, 5)
    assert result.details["released"] == 25
    assert _status(session) == {"done": 5, "pending": 25}
    with session(write=False) as s:
        leased = s.execute(
            sa.select(sa.func.count()).where(ProbeItem.lease_owner.is_not(None))  # type: ignore[union-attr]
        ).scalar_one()
        attempts = set(
            s.execute(sa.select(ProbeItem.attempts).where(ProbeItem.status == "pending")).scalars()
        )
    assert leased == 0 and attempts == {0}


def test_complete_and_claim_in_one_transaction(session, store_url):
    from datetime import timedelta

    from mno.store import leases

    with session() as s:
        probe.enqueue(s, 25)
    done_total, ids, batches = 0, [], 0
    while True:
        with session() as s:
            n, ids = leases.complete_and_claim(s, ProbeItem, ids, "w1", 10, timedelta(seconds=30))
        done_total += n
        if not ids:
            break
        batches += 1
    assert (done_total, batches) == (25, 3)
    assert _status(session) == {"done": 25}
    with session() as s:  # rows another owner holds are not completed
        probe.enqueue(s, 3)
        _, mine = leases.complete_and_claim(s, ProbeItem, [], "w1", 3, timedelta(seconds=30))
    with session() as s:
        n, _ = leases.complete_and_claim(s, ProbeItem, mine, "w2", 0, timedelta(seconds=30))
    assert n == 0 and _status(session) == {"done": 25, "pending": 3}


def test_stream_keeps_threads_busy_and_handles_each_item_once(session, store_url):
    """Streaming has no barrier between batches: while one slow item runs, the other
    threads go on claiming and finishing items, and a warm stop releases the rest."""
    with session() as s:
        probe.enqueue(s, 40)
    release_slow = threading.Event()
    seen: list[str] = []
    lock = threading.Lock()
    stop = threading.Event()

    def handle(item):
        with lock:
            seen.append(item["id"])
            first = len(seen) == 1
        if first:  # the first item holds its thread until every other item is done
            assert release_slow.wait(30)
        elif len(seen) == 40:
            release_slow.set()

    ctx = TickContext(agent="t", db_url=store_url, batch_size=4, concurrency=2)
    result = work_queue(ctx, ProbeItem, handle, finish=_finish, stream=True)
    # with a barrier per batch of 4, the slow item would have held the pass at 4 items
    assert release_slow.is_set()
    assert (result.claimed, result.done, result.retried) == (40, 40, 0)
    assert len(set(seen)) == 40
    assert _status(session) == {"done": 40}
    assert _effects(session) == (40, 40)

    with session() as s:
        probe.enqueue(s, 20)
    handled: list[str] = []

    def stop_after_three(item):
        with lock:
            handled.append(item["id"])
            if len(handled) == 3:
                stop.set()

    ctx = TickContext(agent="t", db_url=store_url, batch_size=8, concurrency=2, stop_event=stop)
    result = work_queue(ctx, ProbeItem, stop_after_three, finish=_finish, stream=True)
    assert result.done == len(handled) and 3 <= len(handled) <= 4
    # a streaming pass claims only as many as it has threads: little or nothing to give back
    assert result.details.get("released", 0) == result.claimed - result.done
    assert _status(session) == {"done": 40 + result.done, "pending": 20 - result.done}
