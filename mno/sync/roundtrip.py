"""Whether a connector's mappings round-trip: for each entity, an external record pulled
into canonical data (``mapping.canonical``) and pushed back (``mapping.push_body``) gives
the record's mapped fields back unchanged, ``push(pull(x)) == x``.

The record ``x`` holds a sample value per mapped field: the field's value in a sample
record when one is given, or else one generated for the field's transform, a value that
transform keeps as it is (``int`` 42, ``lower`` ``sample@example.test``, ``iso8601`` a
time as the transform writes it). With generated values a field fails when the mappings
lose it or move it: pushed to another path, or a push body field no pull fills. A sample
record of the app's real data also shows the transforms that change values (``lower``
of a mixed-case address, a time in another format). A pulled field that no push writes
(an id, a volatile field) is reported as ``pull only``, not as a failure.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from mno.errors import BadInput
from mno.sync import mapping, spec
from mno.sync.spec import ConnectorSpec, Entity

_MISSING = object()

# transform → a value it keeps as it is (None: no transform, see _generated)
SAMPLES: dict[str, Any] = {
    "lower": "sample@example.test",
    "upper": "SAMPLE",
    "strip": "sample",
    "int": 42,
    "float": 12.5,
    "str": "sample",
    "bool": True,
    "iso8601": "2026-01-02T03:04:05.000000Z",
    "epoch": "1767323045",
}


def connector(name_or_file: str, db_url: str | None = None) -> ConnectorSpec:
    """A connector document from a file (validated, BadInput naming the line when it is
    not valid) or, when no such file exists and the argument is not a path, the stored
    connector of that name."""
    path = Path(name_or_file)
    if path.is_file() or "/" in name_or_file or path.suffix in (".yaml", ".yml", ".json"):
        return spec.load_file(path)
    from mno.store.db import session_scope
    from mno.sync import connections

    with session_scope(db_url, write=False) as s:
        return spec.of(connections.get_connector(s, name_or_file))


def load_sample(path: str | Path) -> dict[str, Any]:
    """A sample record from a JSON or YAML file: one external record (a mapping), or a
    mapping of entity name → record under the key ``entities``."""
    p = Path(path)
    try:
        text = p.read_text()
    except OSError as exc:
        raise BadInput(f"cannot read sample {p}: {exc.strerror or exc}") from None
    try:
        data = json.loads(text) if p.suffix == ".json" else yaml.safe_load(text)
    except (ValueError, yaml.YAMLError) as exc:
        raise BadInput(f"{p}: invalid sample record: {str(exc).splitlines()[0]}") from None
    if not isinstance(data, dict):
        raise BadInput(f"{p}: a sample record must be a mapping of fields")
    return data


def check(
    spec: ConnectorSpec, sample: dict[str, Any] | None = None, entity: str | None = None
) -> list[dict[str, Any]]:
    """One row per mapped field and per push body field of each entity (or of
    ``entity``): entity, field, source, transform, origin (sample|generated), sample,
    back (what the push body holds at the source path), status ``ok``, ``differs``,
    ``moved`` (pushed to another path), ``not pulled`` (pushed but never filled) or
    ``pull only``, and ``round_trips`` (None for pull only)."""
    entities = [spec.entity(entity)] if entity else spec.entities
    rows: list[dict[str, Any]] = []
    for ent in entities:
        record = _sample_for(sample, ent.canonical) if sample else None
        rows.extend(_check_entity(ent, record))
    return rows


def _sample_for(sample: dict[str, Any], entity: str) -> dict[str, Any] | None:
    by_entity = sample.get("entities")
    if isinstance(by_entity, dict):
        one = by_entity.get(entity)
        return one if isinstance(one, dict) else None
    return sample


def _generated(field: str, transform: str | None) -> Any:
    return f"sample {field}" if transform is None else SAMPLES[transform]


def _check_entity(ent: Entity, given: dict[str, Any] | None) -> list[dict[str, Any]]:
    fields = ent.fields()
    raw: dict[str, Any] = {}
    origin: dict[str, str] = {}
    for key, fm in fields.items():
        value = mapping.get_path(given, fm.source, _MISSING) if given is not None else _MISSING
        origin[key] = "sample" if value is not _MISSING else "generated"
        if value is _MISSING:
            value = _generated(key, fm.transform)
        if fm.source:
            mapping.set_path(raw, fm.source, value)
    try:
        data = mapping.canonical(fields, raw)
    except (TypeError, ValueError) as exc:
        raise BadInput(f"entity {ent.canonical}: the sample does not map: {exc}") from None
    body = mapping.push_body(ent, data) if ent.push else {}
    pairs = mapping.push_pairs(ent) if ent.push else {}
    rows = []
    for key, fm in fields.items():
        sent = mapping.get_path(raw, fm.source)
        targets = [ext for ext, canon in pairs.items() if canon == key]
        row = {
            "entity": ent.canonical,
            "field": key,
            "source": fm.source,
            "transform": fm.transform,
            "origin": origin[key],
            "sample": sent,
        }
        if not targets:
            rows.append({**row, "back": None, "status": "pull only", "round_trips": None})
            continue
        back = mapping.get_path(body, fm.source, _MISSING)
        if back is _MISSING:
            status, back = "moved", {t: mapping.get_path(body, t) for t in targets}
        else:
            status = "ok" if _same(back, sent) else "differs"
        rows.append({**row, "back": back, "status": status, "round_trips": status == "ok"})
    for ext, canon in pairs.items():
        if canon not in fields:
            rows.append(
                {
                    "entity": ent.canonical,
                    "field": canon,
                    "source": ext,
                    "transform": None,
                    "origin": None,
                    "sample": None,
                    "back": None,
                    "status": "not pulled",
                    "round_trips": False,
                }
            )
    return rows


def _same(a: Any, b: Any) -> bool:
    """Equal, and of the same type (42 is not "42", True is not 1)."""
    return bool(a == b and type(a) is type(b))
