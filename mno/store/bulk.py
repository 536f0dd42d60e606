"""Bulk writes for hot paths, below the ORM (a sync page, a billing run's chunk).

A page of pulled records becomes a few thousand rows, a billing chunk a few thousand
invoices and lines. Building ORM objects or running
every value through SQLAlchemy's bind processors costs more than the database write
itself, so the hot path prepares values in the form the driver stores them:

- ids are time-ordered (version 7) UUIDs made directly as 32 hex digits, the form SQLite
  stores (``CHAR(32)``) and PostgreSQL's ``uuid`` input accepts;
- timestamps are formatted once per page (``Rows.time``): naive UTC text with
  microseconds on SQLite, exactly as SQLAlchemy writes them, and aware datetimes on
  PostgreSQL;
- JSON columns receive text the caller serialised once (``dumps``).

``Rows.insert`` then writes with multi-row ``INSERT … VALUES`` statements on SQLite and
one ``COPY … FROM STDIN`` on PostgreSQL, inside the caller's transaction. ``Rows.copy``
takes rows already formatted as COPY text (``copy_text``, ``copy_json``, ``copy_time``),
so that a caller can format them off the write path and the write sends one string per
table.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import time
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from functools import lru_cache
from itertools import chain
from typing import Any

import sqlalchemy as sa

_encode = json.JSONEncoder(separators=(",", ":"), default=str).encode


def dumps(value: Any) -> str | None:
    """Compact JSON text (``None`` stays SQL NULL)."""
    return None if value is None else _encode(value)


_last = [0, 0]  # (millisecond, counter) of the last id handed out
_lock = threading.Lock()
_HEX3 = [f"{i:03x}" for i in range(4096)]


def hex_ids(n: int) -> list[str]:
    """``n`` time-ordered UUIDs (version 7, RFC 9562) as 32 hex digits: a millisecond
    timestamp, a 12-bit counter, the variant and 60 random bits. Ordered keys append to
    the right edge of each B-tree index instead of touching a random page per row, which
    keeps bulk writes of large syncs fast as the tables grow."""
    rand = os.urandom(8 * n).hex()
    out: list[str] = []
    with _lock:
        ms, counter = _last
        now = time.time_ns() // 1_000_000
        if now > ms:
            ms, counter = now, 0
        done = 0
        while done < n:
            if counter > 0xFFF:
                ms, counter = ms + 1, 0
            take = min(n - done, 0x1000 - counter)
            head = f"{ms:012x}7"
            out.extend(
                [
                    f"{head}{c}8{rand[k : k + 15]}"
                    for c, k in zip(
                        _HEX3[counter : counter + take],
                        range(16 * done, 16 * (done + take), 16),
                        strict=True,
                    )
                ]
            )
            done += take
            counter += take
        _last[0], _last[1] = ms, counter
    return out


def uuids(n: int) -> list[uuid.UUID]:
    """``n`` time-ordered UUIDs (see ``hex_ids``) as ``uuid.UUID`` objects."""
    return [uuid.UUID(hex=h) for h in hex_ids(n)]


def dashed(hex_id: str) -> str:
    """The canonical text form (8-4-4-4-12) of a 32-hex-digit id."""
    return f"{hex_id[:8]}-{hex_id[8:12]}-{hex_id[12:16]}-{hex_id[16:20]}-{hex_id[20:]}"


def time_value(postgres: bool) -> Any:
    """The function that makes a timestamp driver-ready: an aware UTC datetime for
    PostgreSQL, naive UTC text with microseconds (SQLAlchemy's own format) for SQLite."""

    def utc(value: datetime | None) -> Any:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC) if value.utcoffset() else value

    if postgres:
        return utc

    def text(value: datetime | None) -> Any:
        if value is None:
            return None
        if value.tzinfo is not None and value.utcoffset():
            value = value.astimezone(UTC)
        return value.isoformat(" ", "microseconds")[:26]  # without any "+00:00"

    return text


VALUES_ROWS = 1000  # rows per multi-row INSERT on SQLite (see Rows.insert)

_COPY_ESCAPES = str.maketrans({"\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t"})
COPY_NULL = "\\N"


def copy_text(value: str) -> str:
    """A text value in COPY's text format (backslash, tab and line breaks escaped)."""
    return value.translate(_COPY_ESCAPES)


def copy_json(text: str) -> str:
    """JSON text in COPY's text format: JSON escapes every control character itself, so
    only its backslashes need doubling."""
    return text.replace("\\", "\\\\")


_utc = time_value(True)


def copy_time(value: datetime | None) -> str:
    """A timestamp in COPY's text format, in UTC."""
    return COPY_NULL if value is None else _utc(value).isoformat(" ")


def copy_value(value: Any) -> str:
    """Any driver-ready value (text, integer, boolean, UUID, timestamp or None) in COPY's
    text format."""
    if value is None:
        return COPY_NULL
    if isinstance(value, bool):
        return "t" if value else "f"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, datetime):
        return copy_time(value)
    if isinstance(value, uuid.UUID):
        return value.hex
    return copy_text(str(value))


class Rows:
    """Driver-ready values and bulk inserts on one connection (one transaction)."""

    def __init__(self, conn: sa.Connection) -> None:
        self.conn = conn
        self.postgres = conn.dialect.name == "postgresql"
        self._time = time_value(self.postgres)

    def time(self, value: datetime | None) -> Any:
        return self._time(value)

    def uid(self, value: uuid.UUID | None) -> str | None:
        return None if value is None else value.hex

    def insert(
        self,
        table: sa.Table,
        columns: Sequence[str],
        rows: Sequence[Sequence[Any]],
        same: dict[str, Any] | None = None,
    ) -> None:
        """Insert ``rows`` (values for ``columns``, driver-ready); ``same`` holds columns
        whose value is the same in every row. On SQLite those are bound once per
        statement, so each row binds only what varies; PostgreSQL's COPY gets them in
        every row."""
        if not rows:
            return
        same = same or {}
        names = [*columns, *same]
        cols = ", ".join(f'"{c}"' for c in names)
        if self.postgres:
            raw = self.conn.connection.driver_connection
            tail = tuple(same.values())
            with (
                raw.cursor() as cur,  # type: ignore[union-attr]
                cur.copy(f'COPY "{table.name}" ({cols}) FROM STDIN') as copy,
            ):
                write = copy.write_row
                if tail:
                    for row in rows:
                        write((*row, *tail))
                else:
                    for row in rows:
                        write(row)
            return
        # multi-row VALUES: one statement (one step, with the GIL released throughout)
        # per chunk of rows, where executemany steps once per row and takes the GIL
        # back in between. The columns that are the same in every row are bound once,
        # as ?1…?k, so the statement text only depends on the shape and stays cached.
        k, n = len(same), len(columns)
        per = max(1, min(len(rows), VALUES_ROWS, (_sqlite_vars(self.conn) - k) // n))
        head, shape = tuple(same.values()), (*same, *columns)
        for start in range(0, len(rows), per):
            chunk = rows[start : start + per]
            sql = _values_sql(table.name, shape, k, len(chunk))
            self.conn.exec_driver_sql(sql, head + tuple(chain.from_iterable(chunk)))

    def copy(
        self,
        table: sa.Table,
        columns: Sequence[str],
        lines: Sequence[str],
        same: dict[str, Any] | None = None,
    ) -> None:
        """PostgreSQL: insert rows given as COPY text lines (values for ``columns``, each
        line ending in a line break) with one ``COPY``; ``same`` holds columns whose
        value is the same in every row, appended to each line here."""
        if not lines:
            return
        same = same or {}
        cols = ", ".join(f'"{c}"' for c in [*columns, *same])
        text = "".join(lines)
        if same:
            # escaped values hold no line break, so each one ends a row
            text = text.replace("\n", "".join("\t" + copy_value(v) for v in same.values()) + "\n")
        raw = self.conn.connection.driver_connection
        with (
            raw.cursor() as cur,  # type: ignore[union-attr]
            cur.copy(f'COPY "{table.name}" ({cols}) FROM STDIN') as copy,
        ):
            copy.write(text)

    def update(
        self,
        table: sa.Table,
        columns: Sequence[str],
        rows: Sequence[Sequence[Any]],
        same: dict[str, Any] | None = None,
    ) -> None:
        """``UPDATE table SET columns… WHERE id = …`` for each row: driver-ready values
        for ``columns`` followed by the row's id; ``same`` as in ``insert``."""
        if not rows:
            return
        same = same or {}
        if self.postgres:
            casts = {
                name: "::json"
                if isinstance(table.c[name].type, sa.JSON)
                else "::uuid"
                if isinstance(table.c[name].type, sa.Uuid)
                else ""
                for name in [*columns, "id"]
            }
            sets = [f'"{c}" = %s{casts[c]}' for c in columns]
            tail = tuple(same.values())
            sets += [f'"{c}" = %s' for c in same]
            sql = f'UPDATE "{table.name}" SET {", ".join(sets)} WHERE "id" = %s::uuid'
            params = [(*row[:-1], *tail, row[-1]) for row in rows] if tail else rows
            self.conn.exec_driver_sql(sql, params)  # type: ignore[arg-type]
            return
        sets = [f'"{c}" = ?' for c in columns] + [f'"{c}" = {_literal(v)}' for c, v in same.items()]
        sql = f'UPDATE "{table.name}" SET {", ".join(sets)} WHERE "id" = ?'
        self.conn.exec_driver_sql(sql, rows)  # type: ignore[arg-type]


@lru_cache(maxsize=64)
def _values_sql(table: str, names: tuple[str, ...], k: int, rows: int) -> str:
    """``INSERT INTO table (names) VALUES (…), (…), …`` for ``rows`` rows: the first ``k``
    values the same in every row, bound once as ?1…?k, then one plain ? per value.
    Plain markers keep compiling linear in the statement's length (SQLite looks each
    numbered marker up in a list of the numbered ones)."""
    cols = ", ".join(f'"{c}"' for c in names)
    row = "(" + ", ".join([f"?{i}" for i in range(1, k + 1)] + ["?"] * (len(names) - k)) + ")"
    return f'INSERT INTO "{table}" ({cols}) VALUES {", ".join([row] * rows)}'


def _sqlite_vars(conn: sa.Connection) -> int:
    """How many parameters one SQLite statement may bind."""
    raw = conn.connection.driver_connection
    try:
        return int(raw.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER))  # type: ignore[union-attr]
    except AttributeError:  # Python < 3.11: the compile-time default of SQLite >= 3.32
        return 32766


def _literal(value: Any) -> str:
    """An SQLite literal for a driver-ready value (text, integer or NULL)."""
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return str(int(value))
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str) and "\x00" not in value:
        return "'" + value.replace("'", "''") + "'"
    raise TypeError(f"no SQL literal for {type(value).__name__}")
