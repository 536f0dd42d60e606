"""Retry schedule, jitter, Retry-After, 410, auto-disable, exhaustion and replay (clock-driven)."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa

from mno import clock
from mno.webhooks.retry import Policy

from .conftest import Receiver
from .test_delivery import add_endpoint, emit, statuses, tick

T0 = datetime(2026, 3, 2, 12, 0, tzinfo=UTC)
SCHEDULE = [5, 300, 1800, 7200, 18000, 36000, 36000]
# subscribe to the events about endpoints too: they must still never come back to it
EVENTS = "tenant.*,webhook.delivery_exhausted,webhook.endpoint_disabled"


def pending(url: str) -> list[Any]:
    from mno.store.db import session_scope
    from mno.store.models.webhooks import WebhookDelivery

    t = WebhookDelivery.__table__
    with session_scope(url, write=False) as s:
        return s.execute(sa.select(t).where(t.c.status == "pending").order_by(t.c.seq)).all()


def endpoint_row(url: str, eid: str) -> Any:
    import uuid

    from mno.store.db import session_scope
    from mno.store.models.webhooks import WebhookEndpoint

    with session_scope(url, write=False) as s:
        e = s.get(WebhookEndpoint, uuid.UUID(eid))
        s.expunge(e)
        return e


def events_of(url: str, event_type: str) -> list[Any]:
    from mno.store import outbox
    from mno.store.db import session_scope

    with session_scope(url, write=False) as s:
        return [e.payload for e in outbox.list_events(s, event_type=event_type, limit=1000)]


def test_policy_schedule_and_jitter_bounds() -> None:
    p = Policy(rng=random.Random(7))
    assert p.max_attempts == 8
    for n, scheduled in enumerate(SCHEDULE, start=1):
        samples = [p.next_delay(n) for _ in range(500)]
        assert all(s is not None and 0.8 * scheduled <= s <= 1.2 * scheduled for s in samples)
        assert max(samples) - min(samples) > 0.2 * scheduled  # jitter really spreads
    assert p.next_delay(8) is None


def test_retry_after_is_clamped_and_throttles_wait_a_minute() -> None:
    p = Policy()
    assert p.next_delay(2, status_code=503, retry_after=10_000) == 600  # 2x of 300
    assert p.next_delay(2, status_code=503, retry_after=1) == 300  # 1x
    assert p.next_delay(2, status_code=429, retry_after=450) == 450
    assert p.next_delay(1, status_code=429, retry_after=7) == 60  # floor after a 429
    assert p.next_delay(1, status_code=500, retry_after=1000) <= 6  # only 429/503 honour it
    assert all(p.next_delay(1, timed_out=True) >= 60 for _ in range(100))
    assert all((p.next_delay(1, status_code=429) or 0) >= 60 for _ in range(100))


def test_schedule_exhaustion_and_replay(store_url: str, receiver: Receiver) -> None:
    clock.set_now(T0)
    receiver.respond = lambda req: (500, {}, b"nope")
    eid, _ = add_endpoint(store_url, receiver.url, events=EVENTS)
    emit(store_url, 1)
    tick(store_url)
    assert len(receiver.requests) == 1
    for n, scheduled in enumerate(SCHEDULE, start=1):
        (row,) = pending(store_url)
        wait = (row.next_attempt_at - clock.now()).total_seconds()
        assert 0.8 * scheduled <= wait <= 1.2 * scheduled, (n, wait)
        clock.set_now(row.next_attempt_at - timedelta(seconds=1))
        assert tick(store_url).claimed == 0  # not due yet
        clock.set_now(row.next_attempt_at)
        tick(store_url)
        assert len(receiver.requests) == n + 1
    assert statuses(store_url).get("exhausted") == 1
    (ex,) = events_of(store_url, "webhook.delivery_exhausted")
    assert ex["endpoint_id"] == eid and ex["attempts"] == 8
    # the exhaustion event is never sent to the endpoint it is about
    clock.advance(timedelta(days=1))
    tick(store_url)
    assert {r.json["type"] for r in receiver.requests} == {"tenant.updated"}
    # every attempt id is the event id, stable across retries
    assert len(set(receiver.ids())) == 1
    # replay re-queues it; now the receiver accepts
    from mno.store.db import session_scope
    from mno.webhooks import delivery_queue

    receiver.respond = None
    with session_scope(store_url) as s:
        assert delivery_queue.replay(s, eid, status="exhausted") == 1
    res = tick(store_url)
    assert res.done == 1
    assert len(receiver.requests) == 9  # 8 scheduled attempts + the replayed one
    assert statuses(store_url).get("succeeded") == 1


def test_retry_after_over_http(sqlite_url: str, receiver: Receiver) -> None:
    clock.set_now(T0)
    receiver.respond = lambda req: (503, {"Retry-After": "3600"}, b"busy")
    add_endpoint(sqlite_url, receiver.url, events=EVENTS)
    emit(sqlite_url, 1)
    tick(sqlite_url)
    (row,) = pending(sqlite_url)
    assert (row.next_attempt_at - T0).total_seconds() == 10  # clamped to 2x of 5 s
    clock.set_now(row.next_attempt_at)
    receiver.respond = lambda req: (429, {"Retry-After": "2"}, b"slow down")
    tick(sqlite_url)
    (row,) = pending(sqlite_url)
    assert (row.next_attempt_at - clock.now()).total_seconds() == 300  # 1x of 5 min


def test_410_disables_the_endpoint(store_url: str, receiver: Receiver) -> None:
    receiver.respond = lambda req: (410, {}, b"gone")
    eid, _ = add_endpoint(store_url, receiver.url, events=EVENTS)
    emit(store_url, 2)
    tick(store_url)
    e = endpoint_row(store_url, eid)
    assert not e.enabled and e.disabled_reason == "410 Gone"
    assert [p["endpoint_id"] for p in events_of(store_url, "webhook.endpoint_disabled")] == [eid]
    # nothing more goes to a disabled endpoint, even when due
    n = len(receiver.requests)
    clock.set_now(datetime.now(UTC) + timedelta(days=2))
    emit(store_url, 1)
    tick(store_url)
    assert len(receiver.requests) == n


def test_auto_disable_after_failing_for_the_window(store_url: str, receiver: Receiver) -> None:
    clock.set_now(T0)
    receiver.respond = lambda req: (500, {}, b"down")
    eid, _ = add_endpoint(store_url, receiver.url, events=EVENTS)
    emit(store_url, 1)
    opts = {"disable_after": "1h"}
    tick(store_url, **opts)
    assert endpoint_row(store_url, eid).failing_since == T0
    while endpoint_row(store_url, eid).enabled:
        (row,) = pending(store_url)
        clock.set_now(row.next_attempt_at)
        tick(store_url, **opts)
    e = endpoint_row(store_url, eid)
    assert clock.now() - T0 >= timedelta(hours=1)
    assert clock.now() - T0 < timedelta(hours=1) + timedelta(hours=2.4)
    assert "failing" in (e.disabled_reason or "")
    assert [p["endpoint_id"] for p in events_of(store_url, "webhook.endpoint_disabled")] == [eid]


def test_a_success_resets_the_failing_clock(sqlite_url: str, receiver: Receiver) -> None:
    clock.set_now(T0)
    fail = {"on": True}
    receiver.respond = lambda req: (500, {}, b"x") if fail["on"] else (200, {}, b"ok")
    eid, _ = add_endpoint(sqlite_url, receiver.url, events=EVENTS)
    emit(sqlite_url, 1)
    tick(sqlite_url)
    assert endpoint_row(sqlite_url, eid).failing_since == T0
    fail["on"] = False
    (row,) = pending(sqlite_url)
    clock.set_now(row.next_attempt_at)
    tick(sqlite_url)
    assert endpoint_row(sqlite_url, eid).failing_since is None
