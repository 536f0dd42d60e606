"""Bulk writes below the ORM (mno.store.bulk), on SQLite and PostgreSQL."""

from __future__ import annotations

import json
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any

import pytest

from mno import clock
from mno.store import bulk
from mno.store.models.core import Event


@pytest.mark.parametrize("per", [3, 1000])
def test_insert_writes_every_row_with_the_shared_values(
    session: Callable[..., AbstractContextManager[Any]],
    monkeypatch: pytest.MonkeyPatch,
    per: int,
) -> None:
    """Rows go in as multi-row statements of at most VALUES_ROWS rows on SQLite (here 3,
    so 10 rows take four statements, the last one shorter) and by COPY on PostgreSQL;
    the columns the same in every row are written into each of them."""
    monkeypatch.setattr(bulk, "VALUES_ROWS", per)
    table = Event.__table__  # type: ignore[attr-defined]
    ids = bulk.hex_ids(10)
    payloads = [json.dumps({"n": i, "text": f'it\'s "row" {i}\tß\n'}) for i in range(10)]
    with session() as s:
        w = bulk.Rows(s.connection())
        now = w.time(clock.now())
        w.insert(
            table,
            ("id", "payload"),
            list(zip(ids, payloads, strict=True)),
            {"created_at": now, "updated_at": now, "type": "it's.bulk", "tenant_id": None},
        )
    with session(write=False) as s:
        rows = s.connection().execute(table.select().order_by(table.c.seq)).all()
    assert [r.id.hex for r in rows] == ids
    assert [r.payload for r in rows] == [json.loads(p) for p in payloads]
    assert {r.type for r in rows} == {"it's.bulk"}
    assert {r.tenant_id for r in rows} == {None}
    assert len({r.created_at for r in rows}) == 1


def test_values_statement_binds_shared_values_once() -> None:
    sql = bulk._values_sql("t", ("a", "b", "c"), 1, 2)
    assert sql == 'INSERT INTO "t" ("a", "b", "c") VALUES (?1, ?, ?), (?1, ?, ?)'


def test_update_sets_each_row_and_the_shared_values(
    session: Callable[..., AbstractContextManager[Any]],
) -> None:
    """One statement updates many rows by id, JSON and timestamps included; ``same``
    values go to every row, and rows not named are left alone."""
    from datetime import timedelta

    table = Event.__table__  # type: ignore[attr-defined]
    ids = bulk.hex_ids(5)
    with session() as s:
        w = bulk.Rows(s.connection())
        now = clock.now()
        w.insert(
            table,
            ("id", "payload"),
            [(i, json.dumps({"n": n})) for n, i in enumerate(ids)],
            {"created_at": w.time(now), "updated_at": w.time(now), "type": "a", "tenant_id": None},
        )
    later = now + timedelta(hours=1)
    with session() as s:
        w = bulk.Rows(s.connection())
        w.update(
            table,
            ("payload", "updated_at"),
            [(json.dumps({"n": 10 + n, "s": "it's"}), w.time(later), ids[n]) for n in (1, 3)],
            same={"type": "b"},
        )
    with session(write=False) as s:
        rows = {r.id.hex: r for r in s.connection().execute(table.select())}
    assert [rows[i].payload for i in ids] == [
        {"n": 0},
        {"n": 11, "s": "it's"},
        {"n": 2},
        {"n": 13, "s": "it's"},
        {"n": 4},
    ]
    assert [rows[i].type for i in ids] == ["a", "b", "a", "b", "a"]
    assert rows[ids[3]].updated_at == later and rows[ids[0]].updated_at == now


def test_emit_rows_checks_types_and_sizes_before_writing(session) -> None:
    """The bulk event door refuses an unknown type or an oversized payload, and writes
    nothing of the batch."""
    import pytest as _pytest
    import sqlalchemy as sa

    from mno.errors import BadInput
    from mno.store import bulk, outbox
    from mno.store.models.core import Event

    def count(s: Any) -> int:
        return int(s.execute(sa.select(sa.func.count()).select_from(Event)).scalar_one())

    with session() as s:
        w = bulk.Rows(s.connection())
        now = w.time(clock.now())
        ok = [(h, now, now, "record.created", None, '{"a":1}') for h in bulk.hex_ids(2)]
        cols = ("id", "created_at", "updated_at", "type", "tenant_id", "payload")
        with _pytest.raises(BadInput, match="unknown event type"):
            outbox.emit_rows(w, cols, [*ok, (bulk.hex_ids(1)[0], now, now, "bogus.x", None, "{}")])
        big = '{"a":"' + "x" * outbox.MAX_PAYLOAD_BYTES + '"}'
        with _pytest.raises(BadInput, match="byte limit"):
            outbox.emit_rows(
                w,
                ("id", "payload"),
                [(bulk.hex_ids(1)[0], big)],
                {"type": "record.created", "created_at": now, "updated_at": now},
            )
        assert count(s) == 0
        assert outbox.emit_rows(w, cols, ok) == 2
        assert count(s) == 2


def test_insert_dicts_makes_plain_values_driver_ready(
    session: Callable[..., AbstractContextManager[Any]],
) -> None:
    """Rows of plain values (UUID objects or hex ids, aware datetimes, JSON values) go in
    as they would through the ORM, the shared columns included."""
    import uuid

    table = Event.__table__  # type: ignore[attr-defined]
    now = clock.now()
    tenant = uuid.uuid4()
    ids = [uuid.uuid4(), bulk.hex_ids(1)[0]]
    rows = [
        {
            "id": i,
            "created_at": now,
            "updated_at": now,
            "type": "record.created",
            "tenant_id": tenant if n else None,
            "payload": {"n": n, "text": 'it\'s\t"x"\n'},
        }
        for n, i in enumerate(ids)
    ]
    with session() as s:
        bulk.Rows(s.connection()).insert_dicts(table, rows, ("created_at", "updated_at", "type"))
    with session(write=False) as s:
        got = s.connection().execute(table.select().order_by(table.c.seq)).all()
    assert [r.id.hex for r in got] == [ids[0].hex, ids[1]]
    assert [r.tenant_id for r in got] == [None, tenant]
    assert [r.payload for r in got] == [r["payload"] for r in rows]
    assert {r.created_at for r in got} == {now}


def test_insert_columns_skips_rows_that_break_the_unique_columns(
    session: Callable[..., AbstractContextManager[Any]],
) -> None:
    """Rows given column by column, with constants and server-made ids; with
    ``conflict`` a pair already present is skipped, not an error."""
    import uuid

    from mno.store.models.webhooks import WebhookDelivery

    table = WebhookDelivery.__table__  # type: ignore[attr-defined]
    now = clock.now()
    events = [uuid.uuid4() for _ in range(3)]
    target = uuid.uuid4()

    def columns(evs: list[uuid.UUID]) -> dict[str, list[Any]]:
        return {
            "event_id": evs,
            "target_id": [target] * len(evs),
            "seq": list(range(len(evs))),
            "event_type": ["record.created"] * len(evs),
            "event_at": [now] * len(evs),
            "body": ['{"a":1}'] * len(evs),
        }

    constants = {
        "created_at": now,
        "updated_at": now,
        "next_attempt_at": now,
        "attempts": 0,
        "status": "pending",
        "channel": "webhook",
        "ordered": False,
    }
    with session() as s:
        w = bulk.Rows(s.connection())
        assert w.insert_columns(table, columns(events[:2]), constants) == 2
        w.insert_columns(
            table,
            columns(events),
            constants,
            conflict=["event_id", "target_id"],
        )
    with session(write=False) as s:
        got = s.connection().execute(table.select()).all()
    assert sorted(r.event_id for r in got) == sorted(events)
    assert {r.status for r in got} == {"pending"} and {r.next_attempt_at for r in got} == {now}


def test_emit_and_emit_many_refuse_what_emit_rows_refuses(
    session: Callable[..., AbstractContextManager[Any]],
) -> None:
    """The three doors share one check: an unknown type or an oversized payload is
    refused with the same message, and nothing of a batch is written."""
    import sqlalchemy as sa

    from mno.errors import BadInput
    from mno.store import outbox

    big = {"a": "x" * outbox.MAX_PAYLOAD_BYTES}
    with session() as s:
        for kind, payload, message in (
            ("bogus.x", {}, "unknown event type"),
            ("record.created", big, "byte limit"),
        ):
            with pytest.raises(BadInput, match=message):
                outbox.emit(s, kind, payload)
            with pytest.raises(BadInput, match=message):
                outbox.emit_many(s, [("record.created", {"a": 1}, None), (kind, payload, None)])
        assert s.execute(sa.select(sa.func.count()).select_from(Event)).scalar_one() == 0
        assert outbox.emit_many(s, [("record.created", {"a": 1}, None)] * 2) == 2
