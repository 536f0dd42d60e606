"""SQL building blocks that read the same on SQLite and PostgreSQL."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa


def month(col: Any, dialect: str) -> Any:
    """``YYYY-MM`` of a UTC timestamp column."""
    if dialect == "postgresql":
        return sa.func.to_char(sa.func.timezone("UTC", col), "YYYY-MM")
    return sa.func.strftime("%Y-%m", col)


def day(col: Any, dialect: str) -> Any:
    """``YYYY-MM-DD`` of a UTC timestamp column."""
    if dialect == "postgresql":
        return sa.func.to_char(sa.func.timezone("UTC", col), "YYYY-MM-DD")
    return sa.func.strftime("%Y-%m-%d", col)


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
