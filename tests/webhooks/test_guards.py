"""SSRF guard, ordered endpoints, late-committing events in fan-out."""

from __future__ import annotations

import ipaddress
from datetime import UTC, datetime, timedelta

import pytest
import sqlalchemy as sa

from mno import clock
from mno.webhooks import ssrf

from .conftest import Receiver
from .test_delivery import add_endpoint, emit, statuses, tick
from .test_retry import pending


@pytest.mark.parametrize(
    "host",
    [
        "10.0.0.1",
        "169.254.169.254",
        "::1",
        "localhost",
        "100.64.1.1",
        "fd00::1",
        "224.0.0.1",
        "0.0.0.0",
        "::ffff:127.0.0.1",
        # IPv6 transition forms carrying an internal IPv4 address
        "2002:a9fe:a9fe::1",  # 6to4 of 169.254.169.254
        "2002:7f00:1::1",  # 6to4 of 127.0.0.1
        "64:ff9b::a9fe:a9fe",  # NAT64 well-known prefix
        "64:ff9b:1::a00:1",  # NAT64 local-use prefix, 10.0.0.1
        "2001:0:4136:e378:8000:63bf:5601:5601",  # Teredo, client 169.254.169.254
        "::a9fe:a9fe",  # IPv4-compatible
        "::ffff:0:7f00:1",  # SIIT, 127.0.0.1
    ],
)
def test_internal_addresses_are_refused(host: str) -> None:
    resolver = ssrf.Resolver(allowed=[])
    with pytest.raises(ssrf.Refused):
        resolver.resolve(host, 80)


def test_embedded_ipv4_reads_each_transition_form() -> None:
    """The guard judges the IPv4 address a transition form leads to: 6to4 of a public
    address is allowed, and each form yields the address it carries."""
    six = ipaddress.IPv6Address
    assert ssrf.embedded_ipv4(six("2002:808:808::1")) == [ipaddress.IPv4Address("8.8.8.8")]
    assert not ssrf.is_internal(six("2002:808:808::1"))
    assert ssrf.embedded_ipv4(six("64:ff9b::a00:1")) == [ipaddress.IPv4Address("10.0.0.1")]
    teredo = six("2001:0:4136:e378:8000:63bf:5601:5601")
    assert ssrf.embedded_ipv4(teredo) == [ipaddress.IPv4Address("169.254.169.254")]
    assert ssrf.embedded_ipv4(six("2a00:1450::1")) == []


def test_allow_networks_lets_a_range_through(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MNO_WEBHOOKS_ALLOW_NETWORKS", "127.0.0.0/8,10.1.0.0/16")
    allowed = ssrf.allow_networks()
    resolver = ssrf.Resolver(allowed)
    assert resolver.resolve("localhost", 80) == ipaddress.ip_address("127.0.0.1")
    assert str(resolver.resolve("10.1.2.3", 80)) == "10.1.2.3"
    with pytest.raises(ssrf.Refused):
        resolver.resolve("10.0.0.1", 80)
    assert str(resolver.resolve("93.184.216.34", 80)) == "93.184.216.34"


def test_delivery_to_a_name_resolving_to_loopback_is_refused(
    sqlite_url: str, receiver: Receiver, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MNO_WEBHOOKS_ALLOW_NETWORKS", "")
    url = receiver.url.replace("127.0.0.1", "localhost")
    add_endpoint(sqlite_url, url, events="tenant.*")
    emit(sqlite_url, 1)
    tick(sqlite_url)
    assert receiver.requests == []
    (row,) = pending(sqlite_url)
    assert row.last_status == "failed" and "internal" in row.last_error
    from mno.store.db import session_scope
    from mno.webhooks import delivery_queue

    with session_scope(sqlite_url, write=False) as s:
        shown = delivery_queue.show(s, str(row.id))
    assert shown["attempt_log"][0]["error_class"] == "ssrf_refused"


def test_connects_to_the_checked_address_keeping_the_host_header(
    sqlite_url: str, receiver: Receiver
) -> None:
    url = receiver.url.replace("127.0.0.1", "localhost")
    add_endpoint(sqlite_url, url, events="tenant.*")
    emit(sqlite_url, 1)
    tick(sqlite_url)
    (req,) = receiver.requests
    assert req.headers["host"] == url.split("/")[2]


def test_ordered_endpoint_keeps_fifo_under_failures(store_url: str, receiver: Receiver) -> None:
    clock.set_now(datetime(2026, 3, 2, tzinfo=UTC))
    failures = {1: 2, 3: 1}  # event i fails this many times first

    def respond(req):  # type: ignore[no-untyped-def]
        i = req.json["data"]["i"]
        if failures.get(i, 0) > 0:
            failures[i] -= 1
            return 500, {}, b"no"
        return 200, {}, b"ok"

    receiver.respond = respond
    add_endpoint(store_url, receiver.url, events="tenant.*", ordered=True)
    emit(store_url, 6)
    for _ in range(50):
        tick(store_url)
        rows = pending(store_url)
        if not rows:
            break
        future = [r.next_attempt_at for r in rows if r.next_attempt_at > clock.now()]
        if future:
            clock.set_now(min(future))
    assert statuses(store_url) == {"succeeded": 6}
    seen = [r.json["data"]["i"] for r in receiver.requests]
    assert seen == [0, 1, 1, 1, 2, 3, 3, 4, 5]


def test_late_commit_is_fanned_out_once(pg_url: str, receiver: Receiver) -> None:
    """seq is taken at insert: a transaction holding seq N commits after N+1 was read."""
    from sqlmodel import Session

    from mno.store import outbox
    from mno.store.db import get_engine

    add_endpoint(pg_url, receiver.url, events="tenant.*")
    engine = get_engine(pg_url)
    slow = Session(engine)
    outbox.emit(slow, "tenant.updated", {"i": "late"})
    slow.flush()  # seq taken, not committed
    emit(pg_url, 1)  # a higher seq, committed
    tick(pg_url)
    assert [r.json["data"]["i"] for r in receiver.requests] == [0]
    slow.commit()
    slow.close()
    tick(pg_url)
    tick(pg_url)
    assert sorted(str(r.json["data"]["i"]) for r in receiver.requests) == ["0", "late"]
    assert statuses(pg_url) == {"succeeded": 2}


def test_rolled_back_gap_expires_and_the_cursor_moves(pg_url: str, receiver: Receiver) -> None:
    from sqlmodel import Session

    from mno.store import cursors, outbox
    from mno.store.db import get_engine, session_scope

    clock.set_now(datetime(2026, 3, 2, tzinfo=UTC))
    add_endpoint(pg_url, receiver.url, events="tenant.*")
    tick(pg_url)
    s = Session(get_engine(pg_url))
    outbox.emit(s, "tenant.updated", {"i": "gone"})
    s.flush()
    s.rollback()
    s.close()
    emit(pg_url, 1)
    tick(pg_url)
    with session_scope(pg_url, write=False) as ss:
        held = cursors.get(ss, "dispatcher")
        high = ss.execute(sa.text("select max(seq) from outbox_event")).scalar_one()
    assert held < high  # the gap holds the cursor back
    clock.advance(timedelta(minutes=11))
    tick(pg_url)
    with session_scope(pg_url, write=False) as ss:
        assert cursors.get(ss, "dispatcher") >= high
    assert [r.json["data"]["i"] for r in receiver.requests] == [0]
