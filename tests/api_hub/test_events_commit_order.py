"""Following the outbox never skips an event whose transaction commits late.

On PostgreSQL an event's sequence number is taken when it is inserted, not when its
transaction commits: two writers can commit in the other order. A reader that already
moved past the later number must still get the earlier one once it commits.

Events wait for every older transaction on the PostgreSQL server to end (other tests
may be writing to other databases of it), so a reader that must see an event polls
until it does; what it is given is asserted, never how long it took."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import pytest
import sqlalchemy as sa
from sqlmodel import Session

from tests.api_hub.test_events import _all
from tests.cli_contract.test_log_lists import HINT

on_postgres = pytest.mark.parametrize("store_url", ["postgres"], indirect=True)
PATIENCE = 120.0  # seconds a reader waits for other transactions of the server to end


def _writers(store_url: str, first_takes_xid: str) -> tuple[Session, Session]:
    """Two open transactions ``a`` and ``b``; ``a`` will insert its event first (the
    lower seq). ``first_takes_xid`` names the one given a transaction id first."""
    from mno.store import db

    engine = db.get_engine(store_url)
    a, b = Session(engine), Session(engine)
    (a if first_takes_xid == "a" else b).execute(sa.text("SELECT pg_current_xact_id()"))
    return a, b


def _emit(s: Session, key: str) -> int:
    from mno.store import outbox

    event = outbox.emit(s, "tenant.created", {"key": key})
    s.flush()
    return int(event.seq or 0)


def _committed(store_url: str) -> list[int]:
    from mno.store import db

    with db.get_engine(store_url).connect() as c:
        return [int(x) for x in c.execute(sa.text("SELECT seq FROM outbox_event")).scalars()]


def _until_caught_up(
    read: Callable[[str], tuple[list[int], str]], cursor: str, seen: list[int], want: list[int]
) -> str:
    """Read from ``cursor`` into ``seen`` until every seq of ``want`` was read once."""
    deadline = time.monotonic() + PATIENCE
    while True:
        more, cursor = read(cursor)
        seen += more
        if set(want) <= set(seen) or time.monotonic() > deadline:
            return cursor
        time.sleep(0.05)


def _hub_reader(op: Any) -> Callable[[str], tuple[list[int], str]]:
    def read(cursor: str) -> tuple[list[int], str]:
        events, cursor = _all(op, cursor, limit=50)
        return [e["seq"] for e in events], cursor

    return read


@on_postgres
@pytest.mark.parametrize("first_takes_xid", ["a", "b"])
def test_hub_events_never_skip_a_late_commit(hub, world, store_url, first_takes_xid):
    read = _hub_reader(hub.as_(world["op"]))
    seen: list[int] = []
    cursor = _until_caught_up(read, "0", seen, _committed(store_url))
    a, b = _writers(store_url, first_takes_xid)
    try:
        low = _emit(a, "late")
        high = _emit(b, "early")
        assert low < high
        b.commit()  # the higher sequence number commits first ...
        more, cursor = read(cursor)  # (with "b" first, a plain seq cursor passes `high`)
        seen += more
        a.commit()  # ... and the lower one after the reader may have moved past it
    finally:
        a.close()
        b.close()
    cursor = _until_caught_up(read, cursor, seen, [low, high])
    assert sorted(seen) == sorted(_committed(store_url))  # every event, once
    assert len(seen) == len(set(seen))
    assert hub.as_(world["op"]).get("/v1/hub/events", params={"after": cursor}).json() == {
        "events": [],
        "next": cursor,
    }


@on_postgres
def test_an_open_transaction_holds_back_later_events(hub, world, store_url):
    op = hub.as_(world["op"])
    read = _hub_reader(op)
    cursor = _until_caught_up(read, "0", [], _committed(store_url))
    a, b = _writers(store_url, "a")
    try:
        low = _emit(a, "slow")
        high = _emit(b, "quick")
        b.commit()
        held = op.get("/v1/hub/events", params={"after": cursor}).json()
        assert held == {"events": [], "next": cursor}  # "quick" waits for "slow"
        a.commit()
    finally:
        a.close()
        b.close()
    seen: list[int] = []
    last = _until_caught_up(read, cursor, seen, [low, high])
    assert seen == [low, high]
    assert last.endswith(f":{high}")


@on_postgres
@pytest.mark.parametrize("first_takes_xid", ["a", "b"])
def test_events_list_after_never_skips_a_late_commit(
    cli: Any, store_url: str, first_takes_xid: str
) -> None:
    from mno.store import db, outbox
    from mno.store.db import session_scope
    from mno.store.models.core import Event
    from mno.tenancy import tenants

    with session_scope(store_url) as s:
        tenants.create(s, "acme")

    def read(cursor: str) -> tuple[list[int], str]:
        seqs: list[int] = []
        while True:
            result = cli("events", "list", "--after", cursor, "--limit", "1", "-o", "json")
            assert result.exit_code == 0, result.stderr
            rows = json.loads(result.stdout)
            seqs += [r["seq"] for r in rows]
            hint = HINT.match(result.stderr.strip())
            if hint is None:  # the last page: a follower goes on from its last event
                if rows:
                    with Session(db.get_engine(store_url)) as s:
                        cursor = outbox.position(s.get(Event, rows[-1]["seq"]))
                return seqs, cursor
            cursor = hint.group(2)

    seen: list[int] = []
    cursor = _until_caught_up(read, "0", seen, _committed(store_url))
    a, b = _writers(store_url, first_takes_xid)
    try:
        low = _emit(a, "late")
        high = _emit(b, "early")
        b.commit()
        more, cursor = read(cursor)
        seen += more
        a.commit()
    finally:
        a.close()
        b.close()
    _until_caught_up(read, cursor, seen, [low, high])
    assert sorted(seen) == sorted(_committed(store_url))
    assert len(seen) == len(set(seen))
