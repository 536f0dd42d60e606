"""Columns read as the driver returns them, and turned into JSON values cheaply.

A long list streamed as JSON spends most of its time in per-value type conversion: an
ORM type builds a ``UUID``, a ``datetime`` with its zone and a decoded JSON document for
every row, and the renderer then turns them back into text. ``raw(column)`` selects a
column without its type's result processing, and the functions below turn what the
driver gives into the exact JSON values ``mno.store.audit.jsonable`` gives for the typed
value: SQLite hands back text (32 hex digits for a UUID, ``YYYY-MM-DD HH:MM:SS.ffffff``
in UTC for a time, the JSON text of a document), PostgreSQL typed values, and both are
accepted.
"""

from __future__ import annotations

import json
import uuid
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from mno.store.audit import utc_text


def raw(column: Any, name: str | None = None) -> Any:
    """``column`` as the driver returns it (no result processing), labelled ``name``."""
    return sa.type_coerce(column, sa.String()).label(name or column.key)


def uuid_text(value: Any) -> str | None:
    """A UUID's canonical text (``8-4-4-4-12``)."""
    if value is None:
        return None
    if isinstance(value, str):
        if len(value) == 32:
            v = value.lower()
            return f"{v[:8]}-{v[8:12]}-{v[12:16]}-{v[16:20]}-{v[20:]}"
        return str(uuid.UUID(value))
    return str(value)


def time_text(value: Any) -> str | None:
    """A stored time as ISO 8601 UTC with ``Z`` (``utc_text``)."""
    if value is None:
        return None
    if isinstance(value, str):
        if len(value) == 26 and value[10] == " " and value[19] == ".":  # SQLite's own form
            if value.endswith(".000000"):  # isoformat() leaves zero microseconds out
                return f"{value[:10]}T{value[11:19]}Z"
            return f"{value[:10]}T{value[11:]}Z"
        value = datetime.fromisoformat(value)
    return utc_text(value)


def document(value: Any) -> Any:
    """A JSON column's value: decoded from its text, or as the driver decoded it."""
    if isinstance(value, str | bytes):
        if value == "{}":
            return {}
        return json.loads(value)
    return value
