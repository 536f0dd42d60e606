"""Fast writes of many rows, below the ORM, in the caller's transaction.

This module is the one door for bulk writes on hot paths (a sync page, a billing run's
chunk, the webhook dispatcher's batches). Domain modules hand it rows and never build
dialect-specific write SQL themselves; ``Rows`` decides once, from the connection, how
to write on SQLite or PostgreSQL:

- ``Rows.insert(table, columns, rows, same)``: driver-ready tuples. Multi-row
  ``INSERT … VALUES`` statements on SQLite, one ``COPY … FROM STDIN`` on PostgreSQL.
- ``Rows.copy(table, columns, lines, same)``: PostgreSQL only, rows already formatted as
  COPY text lines (``copy_text``, ``copy_json``, ``copy_time``), so that a caller can
  format them off the write path and the write sends one string per table.
- ``Rows.insert_dicts(table, rows, same)``: rows as dicts of plain values (UUIDs,
  datetimes, JSON-able values), made driver-ready here once per value; then as
  ``insert`` on SQLite and one ``COPY`` on PostgreSQL.
- ``Rows.insert_columns(table, columns, constants, conflict=…)``: rows given column by
  column, optionally skipping those that break a unique constraint. One
  ``INSERT … SELECT … FROM unnest(…)`` on PostgreSQL (one binary array per column),
  ``executemany`` on SQLite.
- ``Rows.update(table, columns, rows, same)``: ``UPDATE … WHERE id = …`` for many rows.

A page of pulled records becomes a few thousand rows, a billing chunk a few thousand
invoices and lines. Building ORM objects or running every value through SQLAlchemy's
bind processors costs more than the database write itself, so the fastest paths take
values in the form the driver stores them:

- ids are time-ordered (version 7) UUIDs made directly as 32 hex digits, the form SQLite
  stores (``CHAR(32)``) and PostgreSQL's ``uuid`` input accepts;
- timestamps are formatted once per page (``Rows.time``): naive UTC text with
  microseconds on SQLite, exactly as SQLAlchemy writes them, and aware datetimes on
  PostgreSQL;
- JSON columns receive text the caller serialised once (``dumps``).
"""

from __future__ import annotations

import json
import os
import re
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from functools import lru_cache
from itertools import chain
from operator import itemgetter
from typing import TYPE_CHECKING, Any, cast

import sqlalchemy as sa
from sqlalchemy.dialects import sqlite

from mno.store.types import UTCDateTime

if TYPE_CHECKING:
    import psycopg

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
_COPY_SPECIAL = re.compile(r"[\\\n\r\t]")  # a value COPY's text format must escape


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
            raw = _psycopg(self.conn)
            tail = tuple(same.values())
            with (
                raw.cursor() as cur,
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
        raw = _psycopg(self.conn)
        with (
            raw.cursor() as cur,
            cur.copy(f'COPY "{table.name}" ({cols}) FROM STDIN') as copy,
        ):
            copy.write(text)

    def insert_plain(
        self,
        table: sa.Table,
        columns: Sequence[str],
        rows: Sequence[Sequence[str | int | None]],
        same: dict[str, Any] | None = None,
    ) -> None:
        """Insert ``rows`` whose values are already text (ids as 32 hex digits, JSON as
        compact text, timestamps as ``Rows.time`` makes them), integers or None; ``same``
        as in ``insert``. PostgreSQL: the rows become COPY text here, sent as one string
        (``copy``), so that no value goes through the driver's per-value adaptation;
        SQLite: ``insert``."""
        if not rows:
            return
        if not self.postgres:
            self.insert(table, columns, rows, same)
            return
        esc, null, special = _COPY_ESCAPES, COPY_NULL, _COPY_SPECIAL.search
        lines = [
            "\t".join(
                [
                    null
                    if v is None
                    else (v.translate(esc) if special(v) else v)
                    if isinstance(v, str)
                    else str(v)
                    for v in row
                ]
            )
            + "\n"
            for row in rows
        ]
        self.copy(table, columns, lines, same)

    def insert_dicts(
        self,
        table: sa.Table,
        rows: Sequence[dict[str, Any]],
        same: Sequence[str] = (),
    ) -> None:
        """Insert ``rows`` given as dicts of plain values: UUIDs (or 32 hex digits),
        datetimes, values for JSON columns, and anything else as its column type binds
        it. As in a Core insert, the first row's keys name the columns, and a row without
        one of them is an error, not a NULL.

        ``same`` names columns that may hold one value in every row: on SQLite those that
        do are bound once per statement (``insert``); PostgreSQL's COPY writes every
        column of every row."""
        if not rows:
            return
        if self.postgres:
            cols = list(rows[0])
            js = [isinstance(table.c[c].type, sa.JSON) for c in cols]
            names = ", ".join(f'"{c}"' for c in cols)
            raw = _psycopg(self.conn)
            with (
                raw.cursor() as cur,
                cur.copy(f'COPY "{table.name}" ({names}) FROM STDIN') as cp,
            ):
                for r in rows:
                    cp.write_row(
                        [dumps(r[c]) if j else r[c] for c, j in zip(cols, js, strict=True)]
                    )
            return
        # SQLAlchemy's insert runs every value of every row through its bind processors;
        # the values are made here in the form those processors produce: UUIDs as 32 hex
        # digits, timestamps as naive UTC text, JSON as text
        first = rows[0]
        # list.count compares in C, by identity first: rows usually share the objects
        same = tuple(
            c
            for c in same
            if c in first and list(map(itemgetter(c), rows)).count(first[c]) == len(rows)
        )
        cols = [c for c in first if c not in same]
        text_of = self._time
        times: dict[Any, Any] = {}

        def as_time(v: datetime | None) -> Any:
            # a chunk's rows share a few timestamps: each is formatted once
            found = times.get(v)
            if found is None:
                found = times[v] = text_of(v)
            return found

        def hex_of(v: uuid.UUID | str | None) -> str | None:
            return v if v is None or isinstance(v, str) else v.hex

        def keep(v: Any) -> Any:
            return v

        dialect = self.conn.dialect

        def converter(name: str) -> Callable[[Any], Any]:
            kind = table.c[name].type
            if isinstance(kind, sa.Uuid):
                return hex_of
            if isinstance(kind, sa.JSON):
                return dumps
            if isinstance(kind, UTCDateTime):
                return as_time
            # anything else as its type binds it (integers and text need nothing)
            return kind._cached_bind_processor(dialect) or keep  # noqa: SLF001

        # one C-level lookup of every column per row, then a call only for the values
        # that need one (ids, timestamps, JSON): most columns are text or integers
        get = itemgetter(*cols)
        fix = [(i, f) for i, f in enumerate(map(converter, cols)) if f is not keep]
        values: list[Sequence[Any]] = (
            [(get(r),) for r in rows] if len(cols) == 1 else [get(r) for r in rows]
        )
        tuples: list[Sequence[Any]] = []
        if fix:
            append = tuples.append
            for v in values:
                out = list(v)
                for i, f in fix:
                    out[i] = f(out[i])
                append(out)
        else:
            tuples = values
        literals = {c: converter(c)(first[c]) for c in same}
        self.insert(table, cols, tuples, literals)

    def insert_columns(
        self,
        table: sa.Table,
        columns: dict[str, list[Any]],
        constants: dict[str, Any] | None = None,
        *,
        conflict: list[str] | None = None,
    ) -> int:
        """Insert ``len(any column)`` rows: ``columns`` vary per row, ``constants`` do
        not (plain values, bound as their column types bind them).

        On PostgreSQL the rows travel as one binary array per column and are inserted
        with ``INSERT … SELECT … FROM unnest(…)``: one statement, one round trip and a
        handful of parameters for any number of rows, where ``executemany`` binds and
        sends every row. Ids left out are made by the server (``gen_random_uuid()``). On
        SQLite (in process) the rows go through ``executemany``, which is already a C
        loop there.

        With ``conflict`` (the unique columns), rows that would break it are skipped.
        Returns the number of rows given (PostgreSQL: inserted)."""
        constants = dict(constants or {})
        n = len(next(iter(columns.values()))) if columns else 0
        if n == 0:
            return 0
        if not self.postgres:
            if "id" not in columns and "id" not in constants:
                columns = {**columns, "id": [uuid.uuid4() for _ in range(n)]}
            names = list(columns)
            rows = [
                {**constants, **dict(zip(names, values, strict=True))}
                for values in zip(*columns.values(), strict=True)
            ]
            if conflict:
                self.conn.execute(
                    sqlite.insert(table).on_conflict_do_nothing(index_elements=conflict), rows
                )
            else:
                self.conn.execute(sa.insert(table), rows)
            return n
        dialect = self.conn.dialect
        params: dict[str, Any] = {}
        unnest: list[str] = []
        target: list[str] = []
        select: list[str] = []
        for i, (name, values) in enumerate(columns.items()):
            col = table.c[name]
            process = col.type.bind_processor(dialect)
            params[f"c{i}"] = [process(v) for v in values] if process else list(values)
            unnest.append(f"CAST(%(c{i})b AS {_pg_type(col, dialect)}[])")
            target.append(f'"{name}"')
            select.append(f"u.c{i}")
        for i, (name, value) in enumerate(constants.items()):
            col = table.c[name]
            process = col.type.bind_processor(dialect)
            params[f"k{i}"] = process(value) if process else value
            target.append(f'"{name}"')
            select.append(f"CAST(%(k{i})s AS {_pg_type(col, dialect)})")
        if "id" not in columns and "id" not in constants:
            target.append('"id"')
            select.append("gen_random_uuid()")
        alias = ", ".join(f"c{i}" for i in range(len(columns)))
        sql = (
            f'INSERT INTO "{table.name}" ({", ".join(target)}) '
            f"SELECT {', '.join(select)} FROM unnest({', '.join(unnest)}) AS u({alias})"
        )
        if conflict:
            sql += f" ON CONFLICT ({', '.join(conflict)}) DO NOTHING"
        # the driver's own cursor, in the caller's transaction: arrays go in binary format
        # (no text escaping of every body), which SQLAlchemy's parameter style cannot ask for
        raw = _psycopg(self.conn)
        with raw.cursor() as cur:
            cur.execute(sql, params)
            return int(cur.rowcount) if cur.rowcount >= 0 else n

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
            dialect = self.conn.dialect
            casts = {
                # json or jsonb, as the column is on PostgreSQL
                name: "::" + table.c[name].type.compile(dialect=dialect).lower()
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
            self.conn.exec_driver_sql(sql, params)
            return
        sets = [f'"{c}" = ?' for c in columns] + [f'"{c}" = {_literal(v)}' for c, v in same.items()]
        sql = f'UPDATE "{table.name}" SET {", ".join(sets)} WHERE "id" = ?'
        self.conn.exec_driver_sql(sql, rows)


@lru_cache(maxsize=64)
def _values_sql(table: str, names: tuple[str, ...], k: int, rows: int) -> str:
    """``INSERT INTO table (names) VALUES (…), (…), …`` for ``rows`` rows: the first ``k``
    values the same in every row, bound once as ?1…?k, then one plain ? per value.
    Plain markers keep compiling linear in the statement's length (SQLite looks each
    numbered marker up in a list of the numbered ones)."""
    cols = ", ".join(f'"{c}"' for c in names)
    row = "(" + ", ".join([f"?{i}" for i in range(1, k + 1)] + ["?"] * (len(names) - k)) + ")"
    return f'INSERT INTO "{table}" ({cols}) VALUES {", ".join([row] * rows)}'


def _psycopg(conn: sa.Connection) -> psycopg.Connection[Any]:
    """The driver's own connection under ``conn`` on PostgreSQL (psycopg 3), for COPY
    and binary array parameters."""
    return cast("psycopg.Connection[Any]", conn.connection.driver_connection)


def _pg_type(column: sa.Column[Any], dialect: sa.Dialect) -> str:
    """The PostgreSQL type of ``column`` for a CAST (JSON columns are not supported)."""
    if isinstance(column.type, sa.JSON):
        raise TypeError(f"{column.name}: JSON columns are not supported here")
    return column.type.compile(dialect=dialect)


def _sqlite_vars(conn: sa.Connection) -> int:
    """How many parameters one SQLite statement may bind."""
    raw = cast(sqlite3.Connection, conn.connection.driver_connection)
    try:
        return int(raw.getlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER))
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


def greatest(session: Any, *values: Any) -> Any:
    """The SQL expression for the largest of ``values``: ``greatest()`` on PostgreSQL,
    the multi-argument ``max()`` on SQLite."""
    if session.get_bind().dialect.name == "postgresql":
        return sa.func.greatest(*values)
    return sa.func.max(*values)


def insert_ignoring(session: Any, table: sa.Table, keys: Sequence[str]) -> sa.Insert:
    """``INSERT … ON CONFLICT (keys) DO NOTHING`` into ``table``, for the store's dialect:
    rows that would repeat a unique key are skipped."""
    from sqlalchemy.dialects import postgresql

    if session.get_bind().dialect.name == "postgresql":
        return postgresql.insert(table).on_conflict_do_nothing(index_elements=list(keys))
    return sqlite.insert(table).on_conflict_do_nothing(index_elements=list(keys))
