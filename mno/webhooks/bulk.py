"""Set-based inserts for the dispatcher's hot path: one statement per batch of rows.

On PostgreSQL the rows travel as one binary array per column and are inserted with
``INSERT … SELECT … FROM unnest(…)``: one statement, one round trip and a handful of
parameters for any number of rows, where ``executemany`` binds and sends every row. Ids
left out are made by the server (``gen_random_uuid()``). On SQLite (in process) the rows
go through ``executemany``, which is already a C loop there.
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

if TYPE_CHECKING:
    from sqlmodel import Session


def _pg_type(column: sa.Column[Any], dialect: sa.Dialect) -> str:
    if isinstance(column.type, sa.JSON):
        raise TypeError(f"{column.name}: JSON columns are not supported here")
    return column.type.compile(dialect=dialect)


def insert_columns(
    session: Session,
    table: sa.Table,
    columns: dict[str, list[Any]],
    constants: dict[str, Any] | None = None,
    *,
    conflict: list[str] | None = None,
) -> int:
    """Insert ``len(any column)`` rows: ``columns`` vary per row, ``constants`` do not.

    With ``conflict`` (the unique columns), rows that would break it are skipped. Returns
    the number of rows given (PostgreSQL: inserted)."""
    constants = dict(constants or {})
    n = len(next(iter(columns.values()))) if columns else 0
    if n == 0:
        return 0
    bind = session.get_bind()
    if bind.dialect.name != "postgresql":
        if "id" not in columns and "id" not in constants:
            columns = {**columns, "id": [uuid.uuid4() for _ in range(n)]}
        names = list(columns)
        rows = [
            {**constants, **dict(zip(names, values, strict=True))}
            for values in zip(*columns.values(), strict=True)
        ]
        if conflict:
            from sqlalchemy.dialects.sqlite import insert

            session.execute(insert(table).on_conflict_do_nothing(index_elements=conflict), rows)
        else:
            session.execute(sa.insert(table), rows)
        return n
    dialect = bind.dialect
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
    # the driver's own cursor, in the session's transaction: arrays go in binary format
    # (no text escaping of every body), which SQLAlchemy's parameter style cannot ask for
    raw = session.connection().connection.driver_connection
    assert raw is not None
    with raw.cursor() as cur:
        cur.execute(sql, params)
        return int(cur.rowcount) if cur.rowcount >= 0 else n
