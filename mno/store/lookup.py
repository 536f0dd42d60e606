"""Rows by id or by a unique id prefix, as git takes a short commit hash.

A reference is a full UUID (with or without dashes) or its first hex digits, at least
``MIN_PREFIX`` of them. A prefix is one range query on the id column,
``id BETWEEN prefix000… AND prefixfff…``: PostgreSQL's ``uuid`` orders as its bytes
and SQLite stores the 32 lower-case hex digits, so both use the index and agree.

An unknown reference is ``NotFound`` (exit 1); a prefix that matches more than one row is
``BadInput`` (exit 2) naming up to five candidates.
"""

from __future__ import annotations

import re
import uuid
from typing import Any, TypeVar

from sqlmodel import Session, select

from mno.errors import BadInput, NotFound
from mno.store.types import table_of

MIN_PREFIX = 4
SHOWN = 5
PREFIX_HINT = f"a UUID or at least {MIN_PREFIX} of its leading hex digits"

_HEX = re.compile(r"^[0-9a-f]+$")

T = TypeVar("T")


def hex_of(ref: str | uuid.UUID) -> str | None:
    """The hex digits of a reference (dashes dropped, lower case); None when it cannot be
    an id or a usable prefix."""
    if isinstance(ref, uuid.UUID):
        return ref.hex
    digits = str(ref).strip().lower().replace("-", "")
    if not _HEX.match(digits) or not MIN_PREFIX <= len(digits) <= 32:
        return None
    return digits


def looks_like_id(ref: str | uuid.UUID) -> bool:
    """A full UUID or a prefix of at least ``MIN_PREFIX`` hex digits."""
    return hex_of(ref) is not None


def find(
    session: Session, model: type[T], ref: str | uuid.UUID, what: str, *, column: str = "id"
) -> T | None:
    """The row whose ``column`` is ``ref`` or starts with it; None when there is none.

    Raises BadInput when the prefix matches several rows."""
    digits = hex_of(ref)
    if digits is None:
        return None
    col = table_of(model).c[column]
    query: Any = select(model)
    if len(digits) == 32:
        query = query.where(col == uuid.UUID(hex=digits))
    else:
        low = uuid.UUID(hex=digits.ljust(32, "0"))
        high = uuid.UUID(hex=digits.ljust(32, "f"))
        query = query.where(col >= low, col <= high).order_by(col)
    rows: list[T] = list(session.exec(query.limit(SHOWN + 1)).all())
    if len(rows) > 1:
        ids = [str(getattr(r, column)) for r in rows[:SHOWN]]
        more = " and more" if len(rows) > SHOWN else ""
        raise BadInput(
            f"ambiguous {what} id {str(ref)!r}: it could be {', '.join(ids)}{more}",
            "give more of the id",
        )
    return rows[0] if rows else None


def by_id_or_prefix(
    session: Session,
    model: type[T],
    ref: str | uuid.UUID,
    what: str,
    hint: str | None = None,
    *,
    column: str = "id",
) -> T:
    """The row ``ref`` names (a UUID or a unique prefix); NotFound ``{what} {ref} not found``,
    BadInput when ``ref`` is neither a UUID nor a prefix of one."""
    if hex_of(ref) is None:
        raise BadInput(f"invalid {what} id {str(ref)!r}", PREFIX_HINT)
    row = find(session, model, ref, what, column=column)
    if row is None:
        raise NotFound(f"{what} {ref} not found", hint)
    return row


def resolve_id(
    session: Session,
    model: type[Any],
    ref: str | uuid.UUID,
    what: str,
    hint: str | None = None,
    *,
    column: str = "id",
) -> uuid.UUID:
    """The full id ``ref`` names (a UUID or a unique prefix)."""
    found: uuid.UUID = getattr(
        by_id_or_prefix(session, model, ref, what, hint, column=column), column
    )
    return found
