"""The outbox: ``emit()`` appends an event in the caller's transaction.

Events carry a dotted type from ``mno.events.CATALOGUE``, a JSON payload, the tenant
and a database-assigned monotonic ``seq``. Consumers (the webhook dispatcher, email
notifications) read them in ``seq`` order.

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


_SEQ = re.compile(r"[0-9]{1,19}")


def _walk(after: str | None) -> tuple[bool, str | None]:
    """How a list of events walks from the cursor ``after``: (oldest first, cursor).

    No cursor: newest first. A sequence number: the events after it, oldest first (to
    follow the outbox). The ``%…`` cursor printed after a newest-first page: that walk,
    continued."""
    if after is None or after.startswith("%"):
        return False, after
    if not _SEQ.fullmatch(after) or int(after) >= 2**63:
        raise BadInput(
            f"--after {after!r} is not a cursor of this list",
            "give a sequence number or the cursor printed after a page",
        )
    return True, str(int(after))


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

    oldest_first, cursor = _walk(after)
    stmt = _events(event_type, tenant_id, since)
    order = [col(Event.seq)]
    rows, nxt = paging.page(session, stmt, order, cursor, limit, descending=not oldest_first)
    if nxt is not None and oldest_first:
        nxt = str(rows[-1].seq)  # a plain sequence number keeps walking oldest first
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
    return paging.each(session, stmt, [col(Event.seq)], cursor, descending=not oldest_first)


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
