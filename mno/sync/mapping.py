"""Field paths, transforms and content hashes: external record → canonical data."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from datetime import UTC, datetime
from json import encoder as json_encoder
from typing import Any, cast

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
    if type(value) is str and value and not value.isdigit():  # ISO 8601, the usual case
        parsed = datetime.fromisoformat(value)
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)
    if value is None or value == "":
        return None
    if isinstance(value, int | float):
        return datetime.fromtimestamp(float(value), UTC)
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    text = str(value)
    if text.isdigit():
        return datetime.fromtimestamp(int(text), UTC)
    parsed = datetime.fromisoformat(text)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def format_time(value: datetime, fmt: str) -> str:
    if fmt == "epoch":
        return str(int(value.timestamp()))
    return value.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def _to_bool(value: Any) -> bool:
    return value if isinstance(value, bool) else str(value).lower() in ("1", "true", "yes")


def _to_time(fmt: str) -> Callable[[Any], Any]:
    def convert(value: Any) -> Any:
        t = parse_time(value)
        return format_time(t, fmt) if t else None

    return convert


# transform name → function of a value that is not None
_TRANSFORMS: dict[str, Callable[[Any], Any]] = {
    "lower": lambda v: str(v).lower(),
    "upper": lambda v: str(v).upper(),
    "strip": lambda v: str(v).strip(),
    "int": int,
    "float": float,
    "str": str,
    "bool": _to_bool,
    "iso8601": _to_time("iso8601"),
    "epoch": _to_time("epoch"),
}


def transform(value: Any, name: str | None) -> Any:
    if name is None or value is None:
        return value
    fn = _TRANSFORMS.get(name)
    return value if fn is None else fn(value)


def canonical(fields: dict[str, FieldMap], raw: dict[str, Any]) -> dict[str, Any]:
    data: dict[str, Any] = {}
    for key, fm in fields.items():
        value = get_path(raw, fm.source, fm.default)
        data[key] = transform(value, fm.transform)
    return data


def _compact_encoder(sort_keys: bool) -> Callable[[Any], str]:
    """``json.JSONEncoder(sort_keys=…, separators=(",", ":"), default=str).encode``,
    with its C encoder built once rather than on every call (which costs more than
    encoding a small record) and without the check for circular references: the data
    encoded here was parsed from JSON or built from it, never circular."""
    # the C encoder factory is private to json.encoder (None without the accelerator)
    make: Callable[..., Any] | None = getattr(json_encoder, "c_make_encoder", None)
    if make is None:  # no C accelerator: the standard encoder
        return json.JSONEncoder(sort_keys=sort_keys, separators=(",", ":"), default=str).encode
    # markers (None: no circular check), default, string encoder, indent, separators,
    # sort_keys, skipkeys, allow_nan
    escape = json_encoder.encode_basestring_ascii
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


# Mapped = (external id, data, content hash, updated_at, deleted, data as JSON)
Mapped = tuple[str, dict[str, Any], str, datetime | None, bool, str]
_PAGE_MAPPERS: dict[int, tuple[Entity, Callable[..., Any]]] = {}


def page_mapper(entity: Entity) -> Callable[[list[Any], Callable[..., Any]], dict[str, Any]]:
    """A function ``(raw records, make) → {external id: make(*Mapped)}`` for one entity:
    its field mapping, id, updated_at, deleted flag and content hash written out as one
    loop, compiled once per entity. It gives what ``canonical``, ``hash_and_json`` and
    the getters give record by record (the last record of an id wins), without a call
    per field: a sync maps every record it pulls, and this is the fetch thread's main
    cost. Paths and keys reach the code as constants bound by name, never as source."""
    hit = _PAGE_MAPPERS.get(id(entity))
    if hit is not None and hit[0] is entity:
        return hit[1]
    fn = _compile_page_mapper(entity)
    if len(_PAGE_MAPPERS) >= 64:
        _PAGE_MAPPERS.clear()
    _PAGE_MAPPERS[id(entity)] = (entity, fn)
    return fn


def _compile_page_mapper(entity: Entity) -> Callable[..., Any]:
    env: dict[str, Any] = {
        "get_path": get_path,
        "parse_time": parse_time,
        "HASH": _hash_text,
        "MD5": hashlib.md5,
        "str": str,
        "dict": dict,
        "type": type,
        "bool": bool,
    }

    def read(path: str, default: Any, name: str) -> str:
        env[f"P_{name}"], env[f"D_{name}"] = path, default
        if path and "." not in path:
            return f"raw.get(P_{name}, D_{name})"
        return f"get_path(raw, P_{name}, D_{name})"

    fields = entity.fields()
    ignore = set(entity.ignore_fields)
    body = [f"ext = {read(entity.id, None, 'id')}", "if ext is None:", "    continue"]
    body += ["if type(ext) is not str:", "    ext = str(ext)"]
    for i, (key, fm) in enumerate(fields.items()):
        env[f"K{i}"] = key
        body.append(f"v{i} = {read(fm.source, fm.default, str(i))}")
        if fm.transform is not None:
            env[f"T{i}"] = _TRANSFORMS[fm.transform]
            body += [f"if v{i} is not None:", f"    v{i} = T{i}(v{i})"]
    index = {key: i for i, key in enumerate(fields)}
    kept = [k for k in fields if k not in ignore]
    rest = [k for k in fields if k in ignore]

    def literal(keys: list[str]) -> str:
        return "{" + ", ".join(f"K{index[k]}: v{index[k]}" for k in keys) + "}"

    body.append(f"data = {literal(list(fields))}")
    body.append(f"text = HASH({'data' if not rest else literal(kept)})")
    body.append("digest = MD5(text.encode(), usedforsecurity=False).hexdigest()")
    if rest:
        body.append(f"tail = HASH({literal(rest)})")
        body.append("text = tail if text == '{}' else text[:-1] + ',' + tail[1:]")
    updated = (
        f"parse_time({read(entity.updated_at, None, 'updated')})" if entity.updated_at else "None"
    )
    flag = entity.deleted.flag if entity.deleted else None
    deleted = f"bool({read(flag, None, 'deleted')})" if flag else "False"
    body.append(f"out[ext] = make(ext, data, digest, {updated}, {deleted}, text)")
    source = "\n".join(
        [
            "def map_records(raws, make):",
            "    out = {}",
            "    for raw in raws:",
            "        if type(raw) is not dict:",
            "            mapped = map_one(raw)",
            "            if mapped is not None:",
            "                out[mapped[0]] = make(*mapped)",
            "            continue",
            *("        " + line for line in body),
            "    return out",
        ]
    )
    env["map_one"] = lambda raw: map_record(entity, raw)
    exec(compile(source, f"<mno page mapper: {entity.canonical}>", "exec"), env)  # noqa: S102
    return cast("Callable[..., Any]", env["map_records"])


def map_record(entity: Entity, raw: Any) -> Mapped | None:
    """One external record, the plain way (``page_mapper`` gives the same per page)."""
    ext = get_path(raw, entity.id)
    if ext is None:
        return None
    data = canonical(entity.fields(), raw)
    digest, text = hash_and_json(data, entity.ignore_fields)
    updated = parse_time(get_path(raw, entity.updated_at)) if entity.updated_at else None
    flag = entity.deleted.flag if entity.deleted else None
    deleted = bool(get_path(raw, flag)) if flag else False
    return str(ext), data, digest, updated, deleted, text


def is_deleted(entity: Entity, raw: dict[str, Any]) -> bool:
    if entity.deleted is None or not entity.deleted.flag:
        return False
    return bool(get_path(raw, entity.deleted.flag))


def push_pairs(entity: Entity) -> dict[str, str]:
    """External path ← canonical field, as the write-back body maps them: the push's
    ``body``, or else the inverse of the plain (untransformed) mapping but the id and
    ``updated_at``."""
    if entity.push and entity.push.body:
        return dict(entity.push.body)
    pairs = {fm.source: key for key, fm in entity.fields().items() if fm.transform is None}
    return {k: v for k, v in pairs.items() if k != entity.id and k != entity.updated_at}


def push_body(entity: Entity, data: dict[str, Any]) -> dict[str, Any]:
    """The write-back body: external field ← canonical field (``push_pairs``)."""
    body: dict[str, Any] = {}
    for external, canon in push_pairs(entity).items():
        if canon in data:
            set_path(body, external, data[canon])
    return body
