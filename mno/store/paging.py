"""Keyset pagination: one page after a cursor, or every row in chunks.

A list is ordered by columns that together are unique (a natural key such as a tenant's
key, or ``(created_at, id)``). A page is the first ``limit`` rows whose order values come
after the cursor, so paging never skips or repeats a row while others are written, and
each page costs the same whatever its depth (no OFFSET). ``stream()`` walks the same
order ``chunk`` rows at a time, each chunk its own query: memory stays constant.

A statement selecting columns runs on the session's connection and gives plain rows
(building ORM instances costs more than the query on long lists); one selecting a single
entity (``select(Lead)``) gives the instances. ``descending`` walks the order backwards
(newest first on ``(created_at, id)``).

Cursors are the last row's order values: a single readable value as it is
(``acme-0042``), otherwise ``%`` and URL-safe base64 of a JSON array.

``page_list()`` applies the same contract to a short list already in memory (catalogues
read from files or the keyring), ordered by a key of its rows.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Generic, TypeVar

import sqlalchemy as sa
from sqlalchemy.orm import Session

from mno.errors import BadInput

DEFAULT_LIMIT = 100
CHUNK = 1000

T = TypeVar("T")

_READABLE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@:+-]*")


@dataclass(frozen=True)
class Page(Generic[T]):
    """One page of rows and the cursor of the next one (None: this was the last)."""

    rows: list[T]
    next: str | None


def encode(values: Sequence[Any]) -> str:
    if len(values) == 1 and isinstance(values[0], str) and _READABLE.fullmatch(values[0]):
        return values[0]
    plain = [
        v.isoformat() if isinstance(v, datetime) else str(v) if isinstance(v, uuid.UUID) else v
        for v in values
    ]
    raw = json.dumps(plain, separators=(",", ":"), ensure_ascii=False).encode()
    return "%" + base64.urlsafe_b64encode(raw).decode("ascii").rstrip("=")


def decode(cursor: str, count: int) -> list[Any]:
    """The order values a cursor carries; BadInput when it is not one of this list's."""
    bad = BadInput(f"--after {cursor!r} is not a cursor of this list", "copy it from the hint")
    if not cursor.startswith("%"):
        if count != 1 or not cursor:
            raise bad
        return [cursor]
    try:
        raw = base64.urlsafe_b64decode(cursor[1:] + "=" * (-len(cursor[1:]) % 4))
        values = json.loads(raw)
    except (binascii.Error, ValueError) as exc:
        raise bad from exc
    if not isinstance(values, list) or len(values) != count:
        raise bad
    return values


def _typed(value: Any, column: Any) -> Any:
    """A cursor value as the column's Python type (times and UUIDs travel as text)."""
    kind: Any = None
    for t in (column.type, getattr(column.type, "impl_instance", column.type)):
        try:
            kind = t.python_type
        except (AttributeError, NotImplementedError):
            continue
        if kind is not object:
            break
    if kind in (None, object):
        return value
    if value is None or (isinstance(value, kind) and kind is not int):
        return value
    hint = "copy it from the hint"
    try:
        if kind is datetime:
            return datetime.fromisoformat(value)
        if kind is uuid.UUID:
            return uuid.UUID(value)
        typed = kind(value)
    except (TypeError, ValueError, AttributeError, OverflowError) as exc:
        raise BadInput(f"--after: {value!r} does not fit this list", hint) from exc
    if kind is int and not -(2**63) <= typed < 2**63:  # a 64-bit column holds no more
        raise BadInput(f"--after: {value!r} is out of range", hint)
    return typed


def _after(stmt: Any, order_cols: Sequence[Any], values: Sequence[Any], desc: bool) -> Any:
    keys = [
        sa.bindparam(None, _typed(v, c), type_=c.type)
        for v, c in zip(values, order_cols, strict=True)
    ]
    left = order_cols[0] if len(order_cols) == 1 else sa.tuple_(*order_cols)
    right = keys[0] if len(order_cols) == 1 else sa.tuple_(*keys)
    return stmt.where(left < right if desc else left > right)


def _is_entity(stmt: Any) -> bool:
    described = stmt.column_descriptions
    return len(described) == 1 and described[0].get("expr") is described[0].get("entity")


def _values(row: Any, order_cols: Sequence[Any]) -> list[Any]:
    if not hasattr(row, "_mapping"):  # an instance
        return [getattr(row, c.key) for c in order_cols]
    mapping = row._mapping
    out = []
    for c in order_cols:
        if c in mapping:
            out.append(mapping[c])
        elif c.key in mapping:
            out.append(mapping[c.key])
        else:
            raise ValueError(f"the order column {c.key} is not among the selected columns")
    return out


def _chunk(
    session: Session,
    stmt: Any,
    order_cols: Sequence[Any],
    after: Sequence[Any] | None,
    n: int,
    desc: bool = False,
) -> list[Any]:
    stmt = stmt.order_by(None).order_by(*(c.desc() if desc else c for c in order_cols))
    if after is not None:
        stmt = _after(stmt, order_cols, after, desc)
    stmt = stmt.limit(n)
    if _is_entity(stmt):
        return list(session.execute(stmt).scalars().all())
    return list(session.connection().execute(stmt).all())


def page(
    session: Session,
    stmt: Any,
    order_cols: Sequence[Any],
    after: str | None,
    limit: int = DEFAULT_LIMIT,
    *,
    descending: bool = False,
) -> tuple[list[Any], str | None]:
    """The first ``limit`` rows of ``stmt`` after ``after`` in ``order_cols`` order (the
    columns must be unique together), and the cursor of the next page or None."""
    if limit < 1:
        raise BadInput("--limit must be at least 1")
    start = decode(after, len(order_cols)) if after is not None else None
    rows = _chunk(session, stmt, order_cols, start, limit + 1, descending)
    if len(rows) <= limit:
        return rows, None
    rows = rows[:limit]
    return rows, encode(_values(rows[-1], order_cols))


def stream(
    session: Session,
    stmt: Any,
    order_cols: Sequence[Any],
    after: str | None = None,
    chunk: int = CHUNK,
    *,
    descending: bool = False,
) -> Iterator[list[Any]]:
    """Every row of ``stmt`` after ``after``, ``chunk`` at a time, one query per chunk."""
    start = decode(after, len(order_cols)) if after is not None else None
    while True:
        rows = _chunk(session, stmt, order_cols, start, chunk, descending)
        if rows:
            yield rows
        if len(rows) < chunk:
            return
        start = _values(rows[-1], order_cols)


def page_of(
    session: Session,
    stmt: Any,
    order_cols: Sequence[Any],
    after: str | None,
    limit: int = DEFAULT_LIMIT,
    *,
    descending: bool = False,
) -> Page[Any]:
    """``page()`` as a ``Page``."""
    rows, next_cursor = page(session, stmt, order_cols, after, limit, descending=descending)
    return Page(rows, next_cursor)


def each(
    session: Session,
    stmt: Any,
    order_cols: Sequence[Any],
    after: str | None = None,
    *,
    descending: bool = False,
) -> Iterator[Any]:
    """``stream()`` row by row."""
    for rows in stream(session, stmt, order_cols, after, descending=descending):
        yield from rows


def page_list(
    rows: Sequence[T],
    key: Callable[[T], Any],
    after: str | None,
    limit: int | None,
) -> Page[T]:
    """The keyset contract over rows in memory: ordered by ``key`` (unique per row; a
    tuple for a key of several fields), the rows after the cursor, at most ``limit`` of
    them (None: all)."""

    def values(row: T) -> tuple[str, ...]:
        k = key(row)
        return tuple(_sortable(v) for v in (k if isinstance(k, tuple) else (k,)))

    ordered = sorted(rows, key=values)
    if after is not None and ordered:
        start = tuple(str(v) for v in decode(after, len(values(ordered[0]))))
        ordered = [r for r in ordered if values(r) > start]
    if limit is None or len(ordered) <= limit:
        return Page(ordered, None)
    return Page(ordered[:limit], encode(values(ordered[limit - 1])))


def _text(value: Any) -> str:
    return value.isoformat() if isinstance(value, datetime) else str(value)


def _sortable(value: Any) -> str:
    return "" if value is None else _text(value)


def field(*names: str) -> Callable[[Any], Any]:
    """A key for ``page_list``: the named field(s) of a mapping, a view or a model."""

    def one(row: Any, name: str) -> Any:
        if isinstance(row, Mapping):
            return row[name]
        if hasattr(row, "as_dict"):
            return row.as_dict()[name]
        return getattr(row, name)

    def get(row: Any) -> Any:
        if len(names) == 1:
            return one(row, names[0])
        return tuple(one(row, n) for n in names)

    return get
