"""Typed records: an entity's optional JSON Schema (``schema:`` in the connector document)
checked against each canonical record as it is pulled.

A record that fails is not stored: the run records it as a record error (its external id
and the first message, in ``sync_record_error``) and counts it as ``invalid``; the rest
of the page is written as usual. A full pass still counts the record as seen, so a
record that stops validating is not deleted by the sweep.
"""

from __future__ import annotations

import functools
import json
from typing import Any, Protocol, TypeVar

from jsonschema import Draft202012Validator
from jsonschema.exceptions import SchemaError


class Typed(Protocol):
    """An entity (``spec.Entity``): its optional schema."""

    @property
    def json_schema(self) -> dict[str, Any] | None: ...


class Record(Protocol):
    """A pulled record (``pages.Pulled``)."""

    external_id: str
    data: dict[str, Any]
    deleted: bool


R = TypeVar("R", bound=Record)

MAX_MESSAGE = 500


def check_schema(schema: dict[str, Any]) -> None:
    """Raise ``ValueError`` (a spec validation error) when ``schema`` is no valid schema."""
    try:
        Draft202012Validator.check_schema(schema)
    except SchemaError as exc:
        raise ValueError(f"invalid JSON Schema: {exc.message}") from None


@functools.lru_cache(maxsize=64)
def _validator(blob: str) -> Draft202012Validator:
    return Draft202012Validator(json.loads(blob))


def validator(entity: Typed) -> Draft202012Validator | None:
    if entity.json_schema is None:
        return None
    return _validator(json.dumps(entity.json_schema, sort_keys=True))


def problem(check: Draft202012Validator, data: dict[str, Any]) -> str | None:
    """The first (most relevant) validation error of ``data`` as one line, or None."""
    errors = sorted(check.iter_errors(data), key=lambda e: (list(e.path), e.message))
    if not errors:
        return None
    err = errors[0]
    where = ".".join(str(p) for p in err.path)
    text = f"{where}: {err.message}" if where else err.message
    return text[:MAX_MESSAGE]


def split_invalid(entity: Typed, items: list[R]) -> tuple[list[R], list[tuple[str, str]]]:
    """A page's records that satisfy the entity's schema, and (external id, message) of
    those that do not. Deleted records are not checked: their data is never stored."""
    check = validator(entity)
    if check is None:
        return items, []
    valid: list[R] = []
    invalid: list[tuple[str, str]] = []
    for it in items:
        why = None if it.deleted else problem(check, it.data)
        if why is None:
            valid.append(it)
        else:
            invalid.append((it.external_id, why))
    return valid, invalid
