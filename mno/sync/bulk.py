"""Bulk inserts for the sync hot path: one ``executemany`` straight to the driver.

Column values go through each column type's own bind processor (so UUIDs and UTC
timestamps are stored exactly as the ORM stores them), except JSON columns named in
``json_ready``, whose values the caller already serialised once (a record's data is
written to the record, its change row and its event: serialising it once saves 2/3).
"""

from __future__ import annotations

import json
import os
import threading
import time
import uuid
from collections.abc import Iterable, Sequence
from typing import Any

import sqlalchemy as sa

_PLACEHOLDER = {"qmark": "?", "format": "%s", "pyformat": "%s", "numeric": "?", "named": "?"}


def dumps(value: Any) -> str | None:
    return None if value is None else json.dumps(value, separators=(",", ":"), default=str)


_last = [0, 0]  # (millisecond, counter) of the last id handed out
_lock = threading.Lock()


def uuids(n: int) -> list[uuid.UUID]:
    """``n`` time-ordered UUIDs (version 7, RFC 9562): a millisecond timestamp, a 12-bit
    counter and 62 random bits. Ordered keys append to the right edge of each B-tree
    index instead of touching a random page per row, which keeps bulk writes of large
    syncs fast as the tables grow."""
    raw = os.urandom(8 * n)
    mask = (1 << 62) - 1
    from_bytes = int.from_bytes
    out = []
    with _lock:
        ms, counter = _last
        now = time.time_ns() // 1_000_000
        if now > ms:
            ms, counter = now, 0
        for i in range(n):
            if counter > 0xFFF:
                ms, counter = ms + 1, 0
            tail = from_bytes(raw[8 * i : 8 * i + 8]) & mask
            out.append(
                uuid.UUID(int=(ms << 80) | (0x7 << 76) | (counter << 64) | (0b10 << 62) | tail)
            )
            counter += 1
        _last[0], _last[1] = ms, counter
    return out


def insert(
    conn: sa.Connection,
    table: sa.Table,
    columns: Sequence[str],
    rows: Iterable[Sequence[Any]],
    json_ready: Iterable[str] = (),
) -> None:
    rows = list(rows)
    if not rows:
        return
    dialect = conn.dialect
    mark = _PLACEHOLDER.get(dialect.paramstyle, "?")
    ready = set(json_ready)
    procs = [
        None if name in ready else table.c[name].type._cached_bind_processor(dialect)  # noqa: SLF001
        for name in columns
    ]
    if any(procs):
        # rows of one page share most values (now, tenant, run, connection): convert each
        # distinct value once
        active = [(i, p, {}) for i, p in enumerate(procs) if p is not None]
        converted = []
        for row in rows:
            values = list(row)
            for i, p, memo in active:
                v = values[i]
                if v is None:
                    continue
                try:
                    values[i] = memo[v]
                except KeyError:
                    values[i] = memo[v] = p(v)
            converted.append(tuple(values))
        rows = converted
    cols = ", ".join(f'"{c}"' for c in columns)
    sql = f'INSERT INTO "{table.name}" ({cols}) VALUES ({", ".join([mark] * len(columns))})'
    if dialect.name == "postgresql":
        # psycopg sends str as text; JSON columns need an explicit cast
        marks = [f"{mark}::json" if c in ready else mark for c in columns]
        sql = f'INSERT INTO "{table.name}" ({cols}) VALUES ({", ".join(marks)})'
    conn.exec_driver_sql(sql, rows)
