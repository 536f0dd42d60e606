"""The outbox: ``emit()`` appends an event in the caller's transaction.

Events carry a dotted type from ``mno.events.CATALOGUE``, a JSON payload, the tenant
and a database-assigned monotonic ``seq``. Consumers (the webhook dispatcher, email
notifications) read them in ``seq`` order.

``seq`` is taken at insert time, not at commit time: on PostgreSQL a transaction holding
seq 41 may commit after another's seq 42 was read, so a reader that remembers "after 42"
would skip 41 for ever. Readers that follow the outbox with a cursor (``mno events list
--after``, the Hub API's ``/v1/hub/events``) therefore use ``follow()``: each event also
records the id of the transaction that wrote it (``tx``), and ``follow`` serves only the
events of transactions older than the oldest one still running
(``pg_snapshot_xmin``), in ``(tx, seq)`` order. Every event such a read can return is
final, and any event written later carries a larger ``tx``: it sorts after every cursor
already handed out. SQLite serialises its writers, so there ``tx`` is 0 and the order is
``seq``. The dispatcher keeps its own state instead (``mno.webhooks.fanout``).

This module is the one door for events: ``emit`` writes one, ``emit_many`` a list of
``(type, payload, tenant)``, and ``emit_rows`` the prepared rows of a hot path (a sync
page, a billing chunk) through ``store.bulk``. Each checks every type against the
catalogue and every payload against ``MAX_PAYLOAD_BYTES``.

Each wakes the outbox's consumers (the dispatcher) when its transaction commits: one
wake-up on the ``outbox`` channel per transaction, however many events it wrote (see
``mno.store.wake``).
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Iterator, Sequence
from datetime import datetime
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlmodel import col, select

from mno import clock
from mno.errors import BadInput
from mno.events import is_known
from mno.store import wake
from mno.store.audit import jsonable
from mno.store.models.core import Event
from mno.store.types import table_of

if TYPE_CHECKING:
    from sqlmodel import Session

    from mno.store.bulk import Rows
    from mno.store.paging import Page

MAX_PAYLOAD_BYTES = 256 * 1024
WAKE = "outbox"  # the wake-up channel of new events (mno.store.wake)


def _check_type(event_type: str) -> None:
    if not is_known(event_type):
        raise BadInput(f"unknown event type {event_type!r}", "add it to mno.events.CATALOGUE")


def _check_size(event_type: str, text: str) -> None:
    # a character takes at most 4 bytes in UTF-8: only long texts need encoding
    if len(text) * 4 > MAX_PAYLOAD_BYTES and len(text.encode()) > MAX_PAYLOAD_BYTES:
        raise BadInput(
            f"event {event_type} payload is {len(text.encode())} bytes, "
            f"over the {MAX_PAYLOAD_BYTES} byte limit"
        )


def _checked(event_type: str, payload: dict[str, Any]) -> Any:
    """The payload made JSON-safe, once its type and size are checked."""
    _check_type(event_type)
    data = jsonable(payload)
    _check_size(event_type, json.dumps(data, separators=(",", ":")))
    return data


def emit(
    session: Session, event_type: str, payload: dict[str, Any], tenant_id: uuid.UUID | None = None
) -> Event:
    """Append one event in the session's transaction."""
    event = Event(type=event_type, payload=_checked(event_type, payload), tenant_id=tenant_id)
    session.add(event)
    wake.notify(session, WAKE, at_commit=True)
    return event


def emit_rows(
    rows_writer: Rows,
    columns: Sequence[str],
    rows: Sequence[Sequence[Any]] | Sequence[str],
    same: dict[str, Any] | None = None,
    *,
    copy_lines: bool = False,
) -> int:
    """Append prepared event rows in bulk, in the writer's transaction.

    ``rows`` hold driver-ready values for ``columns`` (see ``store.bulk.Rows.insert``);
    ``payload`` is compact JSON text, ``type`` is a column or sits in ``same`` with the
    values common to every row. With ``copy_lines`` (PostgreSQL) each row is a COPY text
    line (``Rows.copy``). Every type is checked against the catalogue and every payload
    against the size limit before anything is written."""
    if not rows:
        return 0
    same = same or {}
    cols = list(columns)
    pay = cols.index("payload")
    if "type" in same:
        types = {same["type"]}
        type_at = None
    else:
        type_at = cols.index("type")
        types = set()
    for row in rows:
        if copy_lines:
            assert isinstance(row, str)
            if len(row) * 4 > MAX_PAYLOAD_BYTES:
                fields = row.rstrip("\n").split("\t")
                kind = fields[type_at] if type_at is not None else same["type"]
                _check_size(kind, fields[pay])
            if type_at is not None:
                types.add(row.split("\t", type_at + 1)[type_at])
            continue
        kind = row[type_at] if type_at is not None else same["type"]
        if type_at is not None:
            types.add(kind)
        _check_size(kind, row[pay])
    for event_type in types:
        _check_type(event_type)
    table = table_of(Event)
    if copy_lines:
        rows_writer.copy(table, cols, [str(line) for line in rows], same)
    else:
        rows_writer.insert(table, cols, [r for r in rows if not isinstance(r, str)], same)
    wake.notify_connection(rows_writer.conn, WAKE)
    return len(rows)


def _events(event_type: str | None, tenant_id: uuid.UUID | None, since: datetime | None) -> Any:
    stmt = select(Event)
    if event_type:
        if "*" in event_type:
            stmt = stmt.where(col(Event.type).like(event_type.replace("*", "%")))
        else:
            stmt = stmt.where(Event.type == event_type)
    if tenant_id:
        stmt = stmt.where(Event.tenant_id == tenant_id)
    if since:
        stmt = stmt.where(Event.created_at >= since)
    return stmt


_POSITION = re.compile(r"(?:([0-9]{1,19}):)?([0-9]{1,19})")
CURSOR_PATTERN = r"^([0-9]{1,19}:)?[0-9]{1,19}$"  # a follow cursor, for API validation


def _walk(after: str | None) -> tuple[bool, str | None]:
    """How a list of events walks from the cursor ``after``: (oldest first, cursor).

    No cursor: newest first. A sequence number or a ``TX:SEQ`` position: the events
    after it, oldest first (``follow``). The ``%…`` cursor printed after a newest-first
    page: that walk, continued."""
    if after is None or after.startswith("%"):
        return False, after
    parse_position(after)
    return True, after


def parse_position(after: str) -> tuple[int | None, int]:
    """A follow cursor: ``SEQ`` (the events above that sequence number) or ``TX:SEQ``
    (the position of an event in the ``(tx, seq)`` order); BadInput otherwise."""
    found = _POSITION.fullmatch(after)
    if found is None or any(int(g) >= 2**63 for g in found.groups() if g is not None):
        raise BadInput(
            f"--after {after!r} is not a cursor of this list",
            "give a sequence number or the cursor printed after a page",
        )
    tx, seq = found.groups()
    return (int(tx) if tx is not None else None), int(seq)


def position(event: Any) -> str:
    """The follow cursor just after ``event``: its ``seq`` where ``tx`` is 0 (SQLite, and
    events older than the ``tx`` column), else ``TX:SEQ``."""
    tx = int(event.tx or 0)
    return f"{tx}:{event.seq}" if tx else str(event.seq)


def _final(session: Session) -> Any:
    """The condition that an event's transaction has ended (always true on SQLite).

    Evaluated in the reading statement itself, so it uses that statement's snapshot:
    every transaction below its xmin has committed or rolled back, and a committed one's
    rows are visible to it."""
    if session.get_bind().dialect.name != "postgresql":
        return sa.true()
    return col(Event.tx) < sa.text("pg_snapshot_xmin(pg_current_snapshot())::text::bigint")


def follow(session: Session, stmt: Any, after: str | None, limit: int) -> list[Event]:
    """Up to ``limit`` events of ``stmt`` (a ``select(Event)`` with filters) after the
    follow cursor ``after`` (None: from the first), oldest first, final ones only.

    A plain sequence number ``N`` starts a walk at the events above ``N``; the cursor of
    the last event returned (``position``) continues it. A walk resumed from those
    cursors returns every event once, whatever order concurrent writers commit in."""
    stmt = stmt.where(_final(session))
    if after is not None:
        tx, seq = parse_position(after)
        if tx is None:
            stmt = stmt.where(col(Event.seq) > seq)
        else:
            stmt = stmt.where(sa.tuple_(col(Event.tx), col(Event.seq)) > sa.tuple_(tx, seq))
    stmt = stmt.order_by(None).order_by(col(Event.tx), col(Event.seq)).limit(limit)
    return list(session.exec(stmt))


def page_events(
    session: Session,
    *,
    event_type: str | None = None,
    tenant_id: uuid.UUID | None = None,
    since: datetime | None = None,
    after: str | None = None,
    limit: int = 100,
) -> Page[Event]:
    """One page of events: newest first, or oldest first after a sequence number
    (``_walk``); ``next`` continues the same walk."""
    from mno.store import paging

    if limit < 1:
        raise BadInput("--limit must be at least 1")
    oldest_first, cursor = _walk(after)
    stmt = _events(event_type, tenant_id, since)
    if oldest_first:
        rows = follow(session, stmt, cursor, limit + 1)
        if len(rows) <= limit:
            return paging.Page(rows, None)
        return paging.Page(rows[:limit], position(rows[limit - 1]))
    rows, nxt = paging.page(session, stmt, [col(Event.seq)], cursor, limit, descending=True)
    return paging.Page(rows, nxt)


def stream_events(
    session: Session,
    *,
    event_type: str | None = None,
    tenant_id: uuid.UUID | None = None,
    since: datetime | None = None,
    after: str | None = None,
) -> Iterator[Event]:
    """Every event of ``page_events``' walk, read a chunk at a time."""
    from mno.store import paging

    oldest_first, cursor = _walk(after)
    stmt = _events(event_type, tenant_id, since)
    if not oldest_first:
        yield from paging.each(session, stmt, [col(Event.seq)], cursor, descending=True)
        return
    while True:
        rows = follow(session, stmt, cursor, paging.CHUNK)
        yield from rows
        if len(rows) < paging.CHUNK:
            return
        cursor = position(rows[-1])


def list_events(
    session: Session,
    *,
    event_type: str | None = None,
    tenant_id: uuid.UUID | None = None,
    since: datetime | None = None,
    after_seq: int | None = None,
    limit: int = 100,
) -> list[Event]:
    stmt = _events(event_type, tenant_id, since)
    if after_seq is not None:
        stmt = stmt.where(col(Event.seq) > after_seq)
        stmt = stmt.order_by(col(Event.seq)).limit(limit)
    else:
        stmt = stmt.order_by(col(Event.seq).desc()).limit(limit)
    return list(session.exec(stmt))


def emit_many(session: Session, events: list[tuple[str, dict[str, Any], uuid.UUID | None]]) -> int:
    """Append many events, in order, in one statement: ``(type, payload, tenant_id)``."""
    if not events:
        return 0
    now = clock.now()
    rows = [
        {
            "id": uuid.uuid4(),
            "created_at": now,
            "updated_at": now,
            "type": event_type,
            "payload": _checked(event_type, payload),
            "tenant_id": tenant_id,
        }
        for event_type, payload, tenant_id in events
    ]
    session.connection().execute(table_of(Event).insert(), rows)
    wake.notify(session, WAKE, at_commit=True)
    return len(rows)
