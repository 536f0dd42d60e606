"""Field paths, transforms and content hashes: external record → canonical data."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from mno.sync.spec import Entity, FieldMap

_MISSING = object()


def get_path(obj: Any, path: str, default: Any = None) -> Any:
    """``a.b.0.c`` into nested dicts and lists; "" is the object itself."""
    if not path:
        return obj
    for part in path.split("."):
        if isinstance(obj, dict):
            obj = obj.get(part, _MISSING)
        elif isinstance(obj, list) and part.lstrip("-").isdigit():
            idx = int(part)
            obj = obj[idx] if -len(obj) <= idx < len(obj) else _MISSING
        else:
            return default
        if obj is _MISSING:
            return default
    return obj


def set_path(obj: dict[str, Any], path: str, value: Any) -> None:
    parts = path.split(".")
    for part in parts[:-1]:
        obj = obj.setdefault(part, {})
    obj[parts[-1]] = value


def parse_time(value: Any) -> datetime | None:
    if value is None or value == "":
        return None
    if isinstance(value, int | float):
        return datetime.fromtimestamp(float(value), UTC)
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    text = str(value)
    if text.isdigit():
        return datetime.fromtimestamp(int(text), UTC)
    parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def format_time(value: datetime, fmt: str) -> str:
    if fmt == "epoch":
        return str(int(value.timestamp()))
    return value.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def transform(value: Any, name: str | None) -> Any:
    if name is None or value is None:
        return value
    if name == "lower":
        return str(value).lower()
    if name == "upper":
        return str(value).upper()
    if name == "strip":
        return str(value).strip()
    if name == "int":
        return int(value)
    if name == "float":
        return float(value)
    if name == "str":
        return str(value)
    if name == "bool":
        return value if isinstance(value, bool) else str(value).lower() in ("1", "true", "yes")
    if name in ("iso8601", "epoch"):
        t = parse_time(value)
        return format_time(t, name) if t else None
    return value


def canonical(fields: dict[str, FieldMap], raw: dict[str, Any]) -> dict[str, Any]:
    data: dict[str, Any] = {}
    for key, fm in fields.items():
        value = get_path(raw, fm.source, fm.default)
        data[key] = transform(value, fm.transform)
    return data


def getter(path: str, default: Any = None) -> Callable[[Any], Any]:
    """``get_path`` for one path, prepared once: a top-level key is a plain lookup."""
    if path and "." not in path:

        def get(obj: Any) -> Any:
            if type(obj) is dict:
                return obj.get(path, default)
            return get_path(obj, path, default)

        return get
    return lambda obj: get_path(obj, path, default)


def mapper(fields: dict[str, FieldMap]) -> Callable[[dict[str, Any]], dict[str, Any]]:
    """``canonical`` for one field mapping, prepared once for a page of records."""
    plan = [(key, getter(fm.source, fm.default), fm.transform) for key, fm in fields.items()]

    def apply(raw: dict[str, Any]) -> dict[str, Any]:
        data: dict[str, Any] = {}
        for key, get, name in plan:
            value = get(raw)
            data[key] = value if name is None or value is None else transform(value, name)
        return data

    return apply


def _compact_encoder(sort_keys: bool) -> Callable[[Any], str]:
    """``json.JSONEncoder(sort_keys=…, separators=(",", ":"), default=str).encode``,
    with its C encoder built once rather than on every call (which costs more than
    encoding a small record) and without the check for circular references: the data
    encoded here was parsed from JSON or built from it, never circular."""
    from json import encoder

    make = encoder.c_make_encoder
    if make is None:  # no C accelerator: the standard encoder
        return json.JSONEncoder(sort_keys=sort_keys, separators=(",", ":"), default=str).encode
    # markers (None: no circular check), default, string encoder, indent, separators,
    # sort_keys, skipkeys, allow_nan
    escape = encoder.encode_basestring_ascii
    encode = make(None, str, escape, None, ":", ",", sort_keys, False, True)
    return lambda value: "".join(encode(value, 0))


# the same text as json.dumps(data, sort_keys=True, separators=(",", ":"), default=str)
_hash_text = _compact_encoder(sort_keys=True)


def content_hash(data: dict[str, Any], ignore: list[str] | tuple[str, ...] = ()) -> str:
    if ignore:
        data = {k: v for k, v in data.items() if k not in ignore}
    return hashlib.md5(_hash_text(data).encode(), usedforsecurity=False).hexdigest()


def hash_and_json(
    data: dict[str, Any], ignore: list[str] | tuple[str, ...] = ()
) -> tuple[str, str]:
    """``content_hash(data, ignore)`` and ``data`` as JSON text, with one encoding: the
    JSON is the hashed text (sorted keys, ignored fields left out) with the ignored
    fields appended."""
    if not ignore:
        text = _hash_text(data)
        return hashlib.md5(text.encode(), usedforsecurity=False).hexdigest(), text
    kept = {k: v for k, v in data.items() if k not in ignore}
    text = _hash_text(kept)
    digest = hashlib.md5(text.encode(), usedforsecurity=False).hexdigest()
    rest = {k: v for k, v in data.items() if k in ignore}
    if not rest:
        return digest, text
    tail = _hash_text(rest)
    if text == "{}":
        return digest, tail
    return digest, f"{text[:-1]},{tail[1:]}"


def is_deleted(entity: Entity, raw: dict[str, Any]) -> bool:
    if entity.deleted is None or not entity.deleted.flag:
        return False
    return bool(get_path(raw, entity.deleted.flag))


def push_body(entity: Entity, data: dict[str, Any]) -> dict[str, Any]:
    """The write-back body: external field ← canonical field (default: the inverse of a
    plain mapping)."""
    body: dict[str, Any] = {}
    pairs = entity.push.body if entity.push and entity.push.body else None
    if pairs is None:
        pairs = {fm.source: key for key, fm in entity.fields().items() if fm.transform is None}
        pairs = {k: v for k, v in pairs.items() if k != entity.id and k != entity.updated_at}
    for external, canon in pairs.items():
        if canon in data:
            set_path(body, external, data[canon])
    return body
