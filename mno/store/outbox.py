"""The outbox: ``emit()`` appends an event in the caller's transaction.

Events carry a dotted type from ``mno.events.CATALOGUE``, a JSON payload, the tenant
and a database-assigned monotonic ``seq``. Consumers (the webhook dispatcher, email
notifications) read them in ``seq`` order.
"""

from __future__ import annotations

import json
import uuid
from datetime import datetime
from typing import TYPE_CHECKING, Any

from mno.errors import BadInput
from mno.events import is_known
from mno.store.audit import jsonable
from mno.store.models.core import Event

if TYPE_CHECKING:
    from sqlmodel import Session

MAX_PAYLOAD_BYTES = 256 * 1024


def emit(
    session: Session, event_type: str, payload: dict[str, Any], tenant_id: uuid.UUID | None = None
) -> Event:
    if not is_known(event_type):
        raise BadInput(f"unknown event type {event_type!r}", "add it to mno.events.CATALOGUE")
    data = jsonable(payload)
    size = len(json.dumps(data, separators=(",", ":")).encode())
    if size > MAX_PAYLOAD_BYTES:
        raise BadInput(
            f"event {event_type} payload is {size} bytes, over the {MAX_PAYLOAD_BYTES} byte limit"
        )
    event = Event(type=event_type, payload=data, tenant_id=tenant_id)
    session.add(event)
    return event


def list_events(
    session: Session,
    *,
    event_type: str | None = None,
    tenant_id: uuid.UUID | None = None,
    since: datetime | None = None,
    after_seq: int | None = None,
    limit: int = 100,
) -> list[Event]:
    from sqlmodel import col, select

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
    from mno import clock

    now = clock.now()
    rows = []
    for event_type, payload, tenant_id in events:
        if not is_known(event_type):
            raise BadInput(f"unknown event type {event_type!r}", "add it to mno.events.CATALOGUE")
        data = jsonable(payload)
        size = len(json.dumps(data, separators=(",", ":")).encode())
        if size > MAX_PAYLOAD_BYTES:
            raise BadInput(f"event {event_type} payload is {size} bytes, over the limit")
        rows.append(
            {
                "id": uuid.uuid4(),
                "created_at": now,
                "updated_at": now,
                "type": event_type,
                "payload": data,
                "tenant_id": tenant_id,
            }
        )
    session.connection().execute(Event.__table__.insert(), rows)  # type: ignore[attr-defined]
    return len(rows)
