"""Connec entities: a JSON Schema per entity, compiled once with fastjsonschema.

The canonical entities (organizations, people, items, invoices, payments, opportunities,
employees) ship as ``mno/connec/schemas/<entity>.json``. A platform adds its own in YAML
files (``name:``, ``description:``, ``schema:``) in the directory named by the profile's
``connec.entities`` (default ``configs/connec`` under the working directory), loaded by
``load_custom``.

A record is checked field by field, so a refusal lists every field at fault (``Invalid``,
with ``errors`` as ``{field, message}``) rather than the first one: each declared property
has a validator of its own, the required fields are checked by name, and the whole schema
runs last for whatever the parts do not cover. Fields a schema does not declare are kept
as they are (``additionalProperties`` is true: a connector may carry more).

``field_type`` tells the filter compiler how a field compares: ``decimal`` (a decimal
string, compared as a number), ``integer``, ``number``, ``boolean``, ``date`` or
``string``.
"""

from __future__ import annotations

import functools
import json
import re
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import fastjsonschema

from mno import safeyaml, settings
from mno.errors import BadInput, NotFound

CANONICAL = (
    "organizations",
    "people",
    "items",
    "invoices",
    "payments",
    "opportunities",
    "employees",
)
NAME = re.compile(r"^[a-z][a-z0-9_]{1,62}$")
RESERVED = {"entities", "batch", "transactions", "subscriptions"}  # API paths
DECIMAL_PATTERN = r"^-?[0-9]+(\.[0-9]+)?$"
BUILTIN_FIELDS = {"id": "string", "version": "integer", "created_at": "time", "updated_at": "time"}


class Invalid(BadInput):
    """A record that fails its entity's schema; ``errors`` lists ``{field, message}``."""

    def __init__(self, entity: str, errors: list[dict[str, str]]) -> None:
        first = errors[0] if errors else {"field": "", "message": "invalid"}
        more = f" and {len(errors) - 1} more" if len(errors) > 1 else ""
        where = f"{first['field']}: " if first["field"] else ""
        super().__init__(f"invalid {entity}: {where}{first['message']}{more}")
        self.entity = entity
        self.errors = errors


@dataclass
class Entity:
    name: str
    schema: dict[str, Any]
    description: str = ""
    custom: bool = False
    _parts: dict[str, Any] = field(default_factory=dict, repr=False)
    _whole: Any = field(default=None, repr=False)

    def __post_init__(self) -> None:
        try:
            self._whole = fastjsonschema.compile(self.schema)
            self._parts = {
                name: fastjsonschema.compile(sub)
                for name, sub in (self.schema.get("properties") or {}).items()
            }
        except fastjsonschema.JsonSchemaDefinitionException as exc:
            raise BadInput(f"entity {self.name}: invalid JSON Schema: {exc}") from None

    @property
    def properties(self) -> dict[str, Any]:
        return dict(self.schema.get("properties") or {})

    def validate(self, data: Any) -> dict[str, Any]:
        """``data`` with the schema's defaults filled in; ``Invalid`` lists every field
        at fault."""
        if not isinstance(data, dict):
            raise Invalid(self.name, [{"field": "", "message": "a record must be a JSON object"}])
        required = self.schema.get("required") or []
        if all(data.get(name) is not None for name in required):
            # the common case, a valid record: the whole schema once (it checks every
            # field and fills the same defaults); the fields one by one only to name
            # every field at fault
            try:
                return dict(self._whole(dict(data)))
            except fastjsonschema.JsonSchemaValueException:
                pass
        errors: list[dict[str, str]] = []
        out = dict(data)
        for name in required:
            if out.get(name) is None:
                errors.append({"field": name, "message": "is required"})
        for name, check in self._parts.items():
            if name not in out or (out[name] is None and name in self.schema.get("required", [])):
                continue
            try:
                out[name] = check(out[name])
            except fastjsonschema.JsonSchemaValueException as exc:
                errors.append({"field": _where(name, exc), "message": _message(exc)})
        if not errors:
            try:
                out = self._whole(out)
            except fastjsonschema.JsonSchemaValueException as exc:
                errors.append({"field": _where("", exc), "message": _message(exc)})
        if errors:
            raise Invalid(self.name, errors)
        return out

    def field_type(self, name: str) -> str:
        """How a field compares in a filter (see the module's docstring); ``BadInput``
        for a field the entity does not declare."""
        if name in BUILTIN_FIELDS:
            return BUILTIN_FIELDS[name]
        prop = self.properties.get(name)
        if prop is None:
            known = ", ".join(sorted([*self.properties, *BUILTIN_FIELDS]))
            raise BadInput(f"{self.name} has no field {name!r}", f"one of: {known}")
        types = prop.get("type", "string")
        kinds = [types] if isinstance(types, str) else [t for t in types if t != "null"]
        kind = kinds[0] if kinds else "string"
        if kind == "string":
            if prop.get("pattern") == DECIMAL_PATTERN:
                return "decimal"
            if prop.get("format") == "date":
                return "date"
        if kind in ("integer", "number", "boolean", "string"):
            return str(kind)
        return "other"


def _where(name: str, exc: fastjsonschema.JsonSchemaValueException) -> str:
    path = [str(p) for p in (exc.path or [])[1:]]
    return ".".join([name, *path] if name else path)


def _message(exc: fastjsonschema.JsonSchemaValueException) -> str:
    text = str(exc.message)
    # "data.x must be ..." → "must be ..."
    return re.sub(r"^data\S*\s+", "", text)


@functools.lru_cache(maxsize=1)
def canonical() -> dict[str, Entity]:
    """The shipped entities by name."""
    folder = resources.files("mno.connec") / "schemas"
    out = {}
    for name in CANONICAL:
        schema = json.loads((folder / f"{name}.json").read_text())
        out[name] = Entity(name, schema, str(schema.get("title", "")))
    return out


def load_custom(directory: Path) -> dict[str, Entity]:
    """The custom entities declared in ``directory/*.yaml`` (``name``, ``schema``,
    optional ``description``); ``BadInput`` names the file at fault."""
    out: dict[str, Entity] = {}
    if not directory.is_dir():
        return out
    for path in sorted(directory.glob("*.y*ml")):
        doc = safeyaml.safe_load(path.read_text(), str(path))
        if not isinstance(doc, dict) or "name" not in doc or "schema" not in doc:
            raise BadInput(f"{path}: an entity needs name: and schema:")
        name = str(doc["name"])
        if not NAME.match(name):
            raise BadInput(f"{path}: entity name {name!r} must match {NAME.pattern}")
        if name in RESERVED:
            raise BadInput(f"{path}: {name} is a reserved name")
        if name in CANONICAL or name in out:
            raise BadInput(f"{path}: entity {name} is already declared")
        schema = doc["schema"]
        if not isinstance(schema, dict) or schema.get("type", "object") != "object":
            raise BadInput(f"{path}: schema: must describe an object")
        schema = {"type": "object", **schema}
        out[name] = Entity(name, schema, str(doc.get("description", "")), custom=True)
        _register_events(name)
    return out


def _register_events(name: str) -> None:
    """A custom entity's ``connec.<name>.created|updated|deleted`` in the catalogue."""
    from mno.events import CATALOGUE

    for verb in ("created", "updated", "deleted"):
        CATALOGUE.setdefault(
            f"connec.{name}.{verb}", f"An app {verb} a record of the custom entity {name}."
        )


def custom_dir() -> Path:
    return Path(str(settings.profile_value("connec.entities", "configs/connec")))


_custom: dict[str, tuple[float, dict[str, Entity]]] = {}


def all_entities() -> dict[str, Entity]:
    """Canonical and custom entities (custom ones read again when their folder changes)."""
    folder = custom_dir()
    try:
        stamp = max([folder.stat().st_mtime, *(p.stat().st_mtime for p in folder.glob("*.y*ml"))])
    except OSError:
        stamp = -1.0
    key = str(folder.resolve())
    hit = _custom.get(key)
    if hit is None or hit[0] != stamp:
        hit = _custom[key] = (stamp, load_custom(folder) if stamp >= 0 else {})
    return {**canonical(), **hit[1]}


def get(name: str) -> Entity:
    found = all_entities().get(name)
    if found is None:
        raise NotFound(f"no entity {name!r}", f"one of: {', '.join(sorted(all_entities()))}")
    return found
