"""SQL over canonical records on SQLite and PostgreSQL: JSON fields, exact money sums.

Records are rows of ``sync_record`` (tenant, entity, ``data`` JSON); deleted records
(``deleted_at`` set) are left out. A query reads the fields it needs once, in an inner
select over the tenant's rows of one entity (the ``(tenant_id, entity)`` index), and
aggregates them in an outer select.

Amounts are decimal strings in the JSON and are summed exactly:

- PostgreSQL casts them to ``NUMERIC`` and sums those;
- SQLite has no decimal type, so each string is turned into an integer of millionths
  (the digits before the point times 10^6 plus the first six digits after it, by string
  functions, never through a float) and those integers are summed. Six places cover
  every ISO 4217 currency; the sum is exact while it stays below 9.2 × 10^12 major units.

``Sums`` hands the results back as ``Decimal`` on both stores.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping, Sequence
from decimal import Decimal
from typing import Any, TypeVar

import sqlalchemy as sa
from sqlmodel import Session

from mno.store.models.sync import SyncRecord

K = TypeVar("K")

SCALE = 10**6  # SQLite sums amounts in millionths

_TENANT = sa.bindparam("tenant", type_=SyncRecord.__table__.c.tenant_id.type)  # type: ignore[attr-defined]


class Dialect:
    """The few fragments that differ between the stores."""

    def __init__(self, name: str) -> None:
        self.pg = name == "postgresql"

    def field(self, name: str) -> str:
        """A top-level JSON field as text (NULL when missing)."""
        if self.pg:
            return f"(data->>'{name}')"
        return f"json_extract(data, '$.{name}')"

    def amount(self, column: str) -> str:
        """An amount column (decimal text) as an exactly summable number; NULL when it is
        not a plain decimal (such a value is left out of sums on both stores)."""
        if self.pg:
            return (
                f"CASE WHEN {column} ~ '^[[:space:]]*[+-]?[0-9]+([.][0-9]+)?[[:space:]]*$' "
                f"THEN CAST({column} AS NUMERIC) END"
            )
        # sign, then integer digits * 10^6 + the first six fractional digits
        plain = (
            f"trim({column}) <> '' AND ltrim(trim({column}), '+-') <> '' "
            f"AND NOT ltrim(trim({column}), '+-') GLOB '*[^0-9.]*' "
            f"AND ltrim(trim({column}), '+-') NOT GLOB '*.*.*' "
            f"AND ltrim(trim({column}), '+-') NOT GLOB '.*' "
            f"AND ltrim(trim({column}), '+-') NOT GLOB '*.'"
        )
        a = f"ltrim(trim({column}), '+-')"
        dot = f"instr({a}, '.')"
        whole = f"CASE WHEN {dot} > 0 THEN substr({a}, 1, {dot} - 1) ELSE {a} END"
        digits = f"substr(substr({a}, {dot} + 1) || '000000', 1, 6)"
        frac = f"CASE WHEN {dot} > 0 THEN {digits} ELSE '0' END"
        sign = f"CASE WHEN substr(trim({column}), 1, 1) = '-' THEN -1 ELSE 1 END"
        value = f"({sign} * (CAST({whole} AS INTEGER) * {SCALE} + CAST({frac} AS INTEGER)))"
        return f"(CASE WHEN {plain} THEN {value} END)"

    def integer(self, column: str) -> str:
        """A whole-number column (NULL when it is not one)."""
        if self.pg:
            whole = f"{column} ~ '^[[:space:]]*[0-9]+[[:space:]]*$'"
            return f"CASE WHEN {whole} THEN CAST({column} AS INTEGER) END"
        return (
            f"CASE WHEN trim({column}) <> '' AND NOT trim({column}) GLOB '*[^0-9]*' "
            f"THEN CAST({column} AS INTEGER) END"
        )

    def value(self, raw: Any, scale: int = 1) -> Decimal:
        """A summed amount back as ``Decimal`` (``scale``: extra factor summed in, e.g. 100
        for amount × percent)."""
        if raw is None:
            return Decimal(0)
        value = Decimal(raw) if self.pg else Decimal(int(raw)) / SCALE
        return value / scale if scale != 1 else value


def added(pairs: Iterable[tuple[K, Decimal]]) -> dict[K, Decimal]:
    """Amounts added up per key."""
    out: dict[K, Decimal] = {}
    for key, amount in pairs:
        out[key] = out.get(key, Decimal(0)) + amount
    return out


def dialect(session: Session) -> Dialect:
    return Dialect(session.get_bind().dialect.name)


def records(d: Dialect, fields: Mapping[str, str]) -> str:
    """The inner select: ``alias -> JSON field`` of the tenant's live rows of ``:entity``.

    PostgreSQL reads each document once (``jsonb_to_record``) rather than once per field;
    SQLite extracts each field once per row."""
    where = "s.tenant_id = :tenant AND s.entity = :entity AND s.deleted_at IS NULL"
    if d.pg:
        wanted = sorted(set(fields.values()))
        record = ", ".join(f'"{name}" text' for name in wanted)
        columns = ", ".join(f'j."{name}" AS {alias}' for alias, name in fields.items())
        return (
            f"SELECT s.id, {columns} FROM sync_record s "
            f"CROSS JOIN LATERAL jsonb_to_record(s.data) AS j({record}) WHERE {where}"
        )
    columns = ", ".join(f"{d.field(name)} AS {alias}" for alias, name in fields.items())
    # LIMIT -1 (no limit) keeps SQLite from flattening this select into the aggregate
    # around it: each field is extracted once per row, not once per use of its alias
    return f"SELECT s.id, {columns} FROM sync_record s WHERE {where} LIMIT -1"


def run(
    session: Session, sql: str, tenant_id: uuid.UUID, entity: str, **params: Any
) -> Sequence[sa.Row[Any]]:
    stmt = sa.text(sql).bindparams(_TENANT)
    return session.execute(stmt, {"tenant": tenant_id, "entity": entity, **params}).all()


def names(session: Session, tenant_id: uuid.UUID, ids: set[str]) -> dict[str, str]:
    """Organisation names by canonical id (ids that are not UUIDs are skipped)."""
    wanted: list[uuid.UUID] = []
    for text in ids:
        try:
            wanted.append(uuid.UUID(str(text)))
        except ValueError:
            continue
    out: dict[str, str] = {}
    table = SyncRecord.__table__  # type: ignore[attr-defined]
    for start in range(0, len(wanted), 500):
        rows = session.execute(
            sa.select(table.c.id, table.c.data).where(
                table.c.tenant_id == tenant_id,
                table.c.entity == "organizations",
                table.c.id.in_(wanted[start : start + 500]),
            )
        )
        for rid, data in rows:
            name = (data or {}).get("name")
            if name:
                out[str(rid)] = str(name)
    return out
