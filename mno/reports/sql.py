"""SQL building blocks that read the same on SQLite and PostgreSQL."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import sqlalchemy as sa

from mno.reports.model import Window, month_bounds

if TYPE_CHECKING:
    from sqlmodel import Session


def dialect_of(session: Session) -> str:
    return session.get_bind().dialect.name


def monthly_counts(session: Session, ts_col: Any, window: Window, *where: Any) -> dict[str, int]:
    """Rows per ``YYYY-MM`` of ``ts_col`` inside the window (only months with rows).

    PostgreSQL groups the window by ``date_trunc`` (hash aggregation, no per-row
    formatting). SQLite counts each month's range on its own: an index on ``ts_col``
    answers each from a short range, where one GROUP BY would sort the whole window first
    (which dominates once a window holds a million rows).
    """
    if dialect_of(session) == "postgresql":
        m = month_start(ts_col).label("m")
        stmt = (
            sa.select(m, sa.func.count())
            .where(ts_col >= window.start, ts_col < window.stop, *where)
            .group_by(m)
        )
        return {month_key(row[0]): int(row[1]) for row in session.execute(stmt)}
    counts: dict[str, int] = {}
    for key in window.month_keys():
        lo, hi = month_bounds(key)
        n = session.execute(
            sa.select(sa.func.count()).where(ts_col >= lo, ts_col < hi, *where)
        ).scalar_one()
        if n:
            counts[key] = int(n)
    return counts


def month_start(col: Any) -> Any:
    """PostgreSQL: the first instant (UTC) of a timestamp's month, cheap to group by."""
    return sa.func.date_trunc("month", sa.func.timezone("UTC", col))


def month_key(value: Any) -> str:
    """``YYYY-MM`` of a month grouped by ``month_start()``."""
    return f"{value.year:04d}-{value.month:02d}"


def month(col: Any, dialect: str) -> Any:
    """``YYYY-MM`` of a UTC timestamp column.

    On SQLite a ``UTCDateTime`` is stored as ``YYYY-MM-DD HH:MM:SS.ffffff`` text in UTC, so
    the month is its first seven characters (much cheaper than ``strftime`` per row).
    """
    if dialect == "postgresql":
        return sa.func.to_char(sa.func.timezone("UTC", col), "YYYY-MM")
    return sa.func.substr(col, 1, 7)


def day(col: Any, dialect: str) -> Any:
    """``YYYY-MM-DD`` of a UTC timestamp column (on SQLite, the stored text's first ten)."""
    if dialect == "postgresql":
        return sa.func.to_char(sa.func.timezone("UTC", col), "YYYY-MM-DD")
    return sa.func.substr(col, 1, 10)


def uuid_text(col: Any, dialect: str) -> Any:
    """A UUID column as its canonical text (``8-4-4-4-12`` lowercase hex), the form audit
    rows keep in ``target_id``. SQLite stores UUIDs as 32 hex digits without hyphens."""
    if dialect == "postgresql":
        return sa.cast(col, sa.String)
    h = sa.func.lower(sa.cast(col, sa.String))
    return (
        sa.func.substr(h, 1, 8)
        + "-"
        + sa.func.substr(h, 9, 4)
        + "-"
        + sa.func.substr(h, 13, 4)
        + "-"
        + sa.func.substr(h, 17, 4)
        + "-"
        + sa.func.substr(h, 21, 12)
    )


def epoch_seconds(col: Any, dialect: str) -> Any:
    if dialect == "postgresql":
        return sa.func.extract("epoch", col)
    return sa.func.cast(sa.func.strftime("%s", col), sa.Float) + (
        sa.func.cast(sa.func.substr(sa.func.strftime("%f", col), 4), sa.Float) / 1000.0
    )


def seconds_between(start: Any, end: Any, dialect: str) -> Any:
    """``end - start`` in seconds (fractional)."""
    if dialect == "postgresql":
        return sa.func.extract("epoch", end - start)
    return (sa.func.julianday(end) - sa.func.julianday(start)) * 86400.0


def percentiles(
    session: Any, values: Any, ps: tuple[int, ...] = (50, 95)
) -> dict[int, float | None]:
    """Nearest-rank percentiles of a one-column subquery, computed in the database.

    ``values`` is a selectable with one column named ``v``. Rank = ceil(p·n / 100), done in
    integer arithmetic so it reads the same on both dialects.
    """
    sub = values.subquery()
    ranked = sa.select(
        sub.c.v.label("v"),
        sa.func.row_number().over(order_by=sub.c.v).label("rn"),
        sa.func.count().over().label("n"),
    ).subquery()
    result: dict[int, float | None] = {}
    for p in ps:
        rank = (ranked.c.n * p + 99) // 100
        row = session.execute(
            sa.select(ranked.c.v).where(ranked.c.rn == sa.cast(rank, sa.Integer))
        ).first()
        result[p] = float(row[0]) if row and row[0] is not None else None
    return result


def percentiles_by(
    session: Any, values: Any, ps: tuple[int, ...] = (50, 95)
) -> dict[Any, dict[int, float | None]]:
    """Nearest-rank percentiles per group: ``values`` has columns ``g`` and ``v``; the
    ranking is partitioned by ``g`` in the database. Groups with no values are absent."""
    sub = values.subquery()
    ranked = sa.select(
        sub.c.g.label("g"),
        sub.c.v.label("v"),
        sa.func.row_number().over(partition_by=sub.c.g, order_by=sub.c.v).label("rn"),
        sa.func.count().over(partition_by=sub.c.g).label("n"),
    ).subquery()
    result: dict[Any, dict[int, float | None]] = {}
    for p in ps:
        rank = (ranked.c.n * p + 99) // 100
        for g, v in session.execute(
            sa.select(ranked.c.g, ranked.c.v).where(ranked.c.rn == sa.cast(rank, sa.Integer))
        ):
            result.setdefault(g, {})[p] = float(v) if v is not None else None
    return result
