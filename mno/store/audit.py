"""The audit trail: ``record()`` writes one row in the caller's transaction.

A row holds the actor (``MNO_ACTOR``, else the OS user), an action key such as
``tenant.create``, the target and a before/after diff of the fields that changed.
``record_many`` writes a list of such entries in one statement, and ``record_rows`` the
prepared rows of a hot path (a billing chunk) through ``store.bulk``.

The CLI renders every ``--output json`` through ``jsonable``, also for commands that
never open the store, so SQLAlchemy, sqlmodel and the models are imported inside the
functions that need them, not with this module.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Sequence
from datetime import UTC, date, datetime
from decimal import Decimal
from enum import Enum
from typing import TYPE_CHECKING, Any

from mno import clock, settings

if TYPE_CHECKING:
    from sqlmodel import Session

    from mno.store.bulk import Rows
    from mno.store.models.core import AuditEntry
    from mno.store.paging import Page

_SKIP = {"created_at", "updated_at"}


_PLAIN = (str, int, float, bool, type(None))


def jsonable(value: Any) -> Any:
    """A JSON-safe copy of ``value`` (UUIDs, datetimes and Decimals become strings)."""
    if type(value) in _PLAIN:  # the common case, checked first (bulk writes call this a lot)
        return value
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set):
        return [jsonable(v) for v in value]
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, datetime):
        return utc_text(value)
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, Enum):
        return value.value
    return value


def utc_text(stamp: datetime) -> str:
    """ISO 8601 in UTC with ``Z``; a naive time is taken as UTC (how SQLite keeps it)."""
    if stamp.tzinfo is not UTC:  # the store hands back UTC; others are converted
        stamp = stamp.replace(tzinfo=UTC) if stamp.tzinfo is None else stamp.astimezone(UTC)
    return stamp.replace(tzinfo=None).isoformat() + "Z"


def snapshot(obj: Any) -> dict[str, Any]:
    """The audited fields of a model instance."""
    if obj is None:
        return {}
    data = obj.model_dump() if hasattr(obj, "model_dump") else dict(obj)
    return {k: jsonable(v) for k, v in data.items() if k not in _SKIP}


def diff(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    """Only the fields that changed: ``{"before": {...}, "after": {...}}``."""
    if not before:  # a create: every field that has a value
        return {"before": {}, "after": {k: after[k] for k in sorted(after) if after[k] is not None}}
    keys = sorted(set(before) | set(after))
    changed = [k for k in keys if before.get(k) != after.get(k)]
    return {
        "before": {k: before.get(k) for k in changed if k in before},
        "after": {k: after.get(k) for k in changed if k in after},
    }


def record(
    session: Session,
    action: str,
    *,
    target_type: str,
    target_id: Any,
    target: str,
    before: dict[str, Any] | None = None,
    after: dict[str, Any] | None = None,
    tenant_id: uuid.UUID | None = None,
    actor: str | None = None,
) -> AuditEntry:
    from mno.store.models.core import AuditEntry

    entry = AuditEntry(
        actor=actor or settings.actor(),
        action=action,
        target_type=target_type,
        target_id=str(target_id),
        target=target,
        tenant_id=tenant_id,
        diff=diff(before or {}, after or {}),
    )
    session.add(entry)
    return entry


def list_entries(
    session: Session,
    *,
    target: str | None = None,
    action: str | None = None,
    since: datetime | None = None,
    limit: int = 100,
) -> list[AuditEntry]:
    from sqlmodel import col

    from mno.store.models.core import AuditEntry

    stmt = _entries(target, action, since)
    stmt = stmt.order_by(col(AuditEntry.at).desc(), col(AuditEntry.id)).limit(limit)
    return list(session.exec(stmt))


def _entries(target: str | None, action: str | None, since: datetime | None) -> Any:
    from sqlmodel import col, or_, select

    from mno.store.models.core import AuditEntry

    stmt = select(AuditEntry)
    if target:
        stmt = stmt.where(or_(AuditEntry.target == target, AuditEntry.target_id == target))
    if action:
        if action.endswith("*"):
            stmt = stmt.where(col(AuditEntry.action).startswith(action[:-1]))
        else:
            stmt = stmt.where(AuditEntry.action == action)
    if since:
        stmt = stmt.where(AuditEntry.at >= since)
    return stmt


def _entry_order() -> list[Any]:
    from sqlmodel import col

    from mno.store.models.core import AuditEntry

    return [col(AuditEntry.at), col(AuditEntry.id)]


def page_entries(
    session: Session,
    *,
    target: str | None = None,
    action: str | None = None,
    since: datetime | None = None,
    after: str | None = None,
    limit: int = 100,
) -> Page[AuditEntry]:
    """One page of entries, newest first, after the cursor ``after``."""
    from mno.store import paging

    stmt = _entries(target, action, since)
    return paging.page_of(session, stmt, _entry_order(), after, limit, descending=True)


def stream_entries(
    session: Session,
    *,
    target: str | None = None,
    action: str | None = None,
    since: datetime | None = None,
    after: str | None = None,
) -> Iterator[AuditEntry]:
    """Every entry, newest first, read a chunk at a time."""
    from mno.store import paging

    stmt = _entries(target, action, since)
    return paging.each(session, stmt, _entry_order(), after, descending=True)


def record_many(session: Session, entries: list[dict[str, Any]]) -> int:
    """Write many audit rows in one statement; each entry takes ``record()``'s keywords
    plus ``action``. For batched domain writes (e.g. tenants created from documents)."""
    from mno.store.models.core import AuditEntry
    from mno.store.types import table_of

    if not entries:
        return 0
    who = settings.actor()
    now = clock.now()
    rows = [
        {
            "id": uuid.uuid4(),
            "created_at": now,
            "updated_at": now,
            "at": now,
            "actor": e.get("actor") or who,
            "action": e["action"],
            "target_type": e["target_type"],
            "target_id": str(e["target_id"]),
            "target": e["target"],
            "tenant_id": e.get("tenant_id"),
            "diff": diff(e.get("before") or {}, e.get("after") or {}),
        }
        for e in entries
    ]
    session.connection().execute(table_of(AuditEntry).insert(), rows)
    return len(rows)


def record_rows(
    rows_writer: Rows,
    columns: Sequence[str],
    rows: Sequence[Sequence[Any]],
    same: dict[str, Any] | None = None,
) -> int:
    """Append prepared audit rows in bulk, in the writer's transaction.

    ``rows`` hold driver-ready values for ``columns`` (see ``store.bulk.Rows.insert``),
    ``diff`` as compact JSON text of ``diff()``'s shape; ``same`` holds the values common
    to every row. The actor is ``settings.actor()`` unless given."""
    if not rows:
        return 0
    from mno.store.models.core import AuditEntry
    from mno.store.types import table_of

    same = dict(same or {})
    if "actor" not in columns and "actor" not in same:
        same["actor"] = settings.actor()
    rows_writer.insert(table_of(AuditEntry), columns, rows, same)
    return len(rows)
