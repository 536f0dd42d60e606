"""Text that does not fit its column is bad input, refused before it reaches the store.

A string longer than its column's ``max_length`` is an error on PostgreSQL
(``value too long``) and silently kept on SQLite; a NUL character is an error on
PostgreSQL only. Both would surface as a store error, or differ between stores. A
``before_flush`` hook on every ORM session checks each new or changed object's string
columns and raises ``BadInput`` (exit 2) naming the table, the column and the limit, so
the transaction rolls back and nothing is written, on both stores alike.
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy import event
from sqlalchemy.orm import Session

from mno.errors import BadInput

_limits: dict[type, list[tuple[str, str, int | None]]] = {}
_installed = False


def _columns(cls: type) -> list[tuple[str, str, int | None]]:
    """(attribute, column, max length or None) of each string column of ``cls``."""
    found = _limits.get(cls)
    if found is None:
        found = []
        mapper: Any = sa.inspect(cls)
        for attr in mapper.column_attrs:
            column = attr.columns[0]
            kind = column.type
            base = kind.impl if isinstance(kind, sa.TypeDecorator) else kind  # AutoString
            if isinstance(base, sa.String) or isinstance(kind, sa.String):
                found.append((attr.key, column.name, getattr(kind, "length", None)))
        _limits[cls] = found
    return found


def check(obj: Any) -> None:
    """Raise ``BadInput`` when a string field of ``obj`` does not fit its column."""
    table = getattr(obj, "__tablename__", type(obj).__name__)
    for key, name, length in _columns(type(obj)):
        value = obj.__dict__.get(key)
        if not isinstance(value, str):
            continue
        if length is not None and len(value) > length:
            raise BadInput(f"{table}.{name} is {len(value):,} characters long", f"at most {length}")
        if "\x00" in value:
            raise BadInput(f"{table}.{name} contains a NUL character")


def _before_flush(session: Session, context: Any, instances: Any) -> None:
    for obj in session.new:
        check(obj)
    for obj in session.dirty:
        check(obj)


def install() -> None:
    """Check every ORM session's flushes (idempotent)."""
    global _installed
    if not _installed:
        event.listen(Session, "before_flush", _before_flush)
        _installed = True
