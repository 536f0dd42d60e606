"""Discovery: sample an endpoint's first page and propose a connector document for it.

``discover()`` fetches one page (through the sync REST client, so auth and rate limits
apply) and guesses what an operator would otherwise read from the API's manual: where
the records are in the body, the id field, the fields with their JSON types (a JSON
Schema for the entity), a deleted flag, the ``updated_at``-like field for incremental
pulls, and the pagination (a ``Link`` header, a next URL or cursor in the body, a total
in the body or in ``X-Total-Count``). The guesses are a starting point to edit, not a
contract: each one that could be wrong is named in the proposal's notes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from pydantic import ValidationError

from mno.errors import BadInput
from mno.sync import mapping
from mno.sync.spec import Auth

RECORD_KEYS = ("data", "items", "results", "records", "entries", "values", "rows")
ID_KEYS = ("id", "uuid", "key", "_id", "ID", "Id")
UPDATED_KEYS = (
    "updated_at",
    "updatedAt",
    "modified_at",
    "modifiedAt",
    "last_modified",
    "lastModified",
    "date_modified",
    "updated",
    "modified",
)
DELETED_KEYS = ("is_deleted", "deleted", "isDeleted", "archived", "is_archived")
NEXT_PATHS = (
    "next",
    "next_url",
    "nextUrl",
    "next_page_url",
    "links.next",
    "_links.next.href",
    "paging.next",
    "meta.next",
    "pagination.next",
    "next_cursor",
    "nextCursor",
    "cursor.next",
    "meta.next_cursor",
    "response_metadata.next_cursor",
)
TOTAL_PATHS = ("total", "total_count", "totalCount", "count", "meta.total", "pagination.total")
SIZE_PARAMS = ("limit", "per_page", "page_size", "pageSize", "size", "count")
DATE_TIME = re.compile(r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}")


@dataclass
class Proposal:
    document: dict[str, Any]
    notes: list[str] = field(default_factory=list)


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def field_schema(values: list[Any]) -> dict[str, Any]:
    """The JSON Schema of one field from its sampled values."""
    types = sorted({_json_type(v) for v in values})
    if "integer" in types and "number" in types:
        types.remove("integer")
    out: dict[str, Any] = {"type": types[0] if len(types) == 1 else types}
    strings = [v for v in values if isinstance(v, str)]
    if strings and all(DATE_TIME.match(v) for v in strings):
        out["format"] = "date-time"
    return out


def find_records(body: Any) -> tuple[str, list[dict[str, Any]]]:
    """(records path, records): the body itself when it is a list, else the first list
    of objects under a usual key, else under any key (one level down at most)."""
    if isinstance(body, list):
        return "", [r for r in body if isinstance(r, dict)]
    if not isinstance(body, dict):
        raise BadInput("the endpoint did not answer a JSON list or object")
    candidates: list[tuple[str, Any]] = [(k, body[k]) for k in RECORD_KEYS if k in body]
    candidates += list(body.items())
    for key, value in body.items():
        if isinstance(value, dict):
            candidates += [(f"{key}.{k}", v) for k, v in value.items()]
    for path, value in candidates:
        if isinstance(value, list) and (not value or isinstance(value[0], dict)):
            return path, [r for r in value if isinstance(r, dict)]
    raise BadInput("no list of records found in the response", "give --path to the list")


def _snake(name: str) -> str:
    s = re.sub(r"(?<=[a-z0-9])([A-Z])", r"_\1", name).lower()
    s = re.sub(r"[^a-z0-9_]+", "_", s).strip("_")
    return s or "field"


def _canonical(path: str) -> str:
    last = [p for p in path.split("?")[0].split("/") if p and not p.startswith("{")]
    name = _snake(last[-1] if last else "record")
    if name.endswith("ies"):
        name = name[:-3] + "y"
    elif name.endswith("s") and not name.endswith("ss"):
        name = name[:-1]
    name = name if re.match(r"^[a-z]", name) else f"r_{name}"
    return name[:64]


def guess_id(records: list[dict[str, Any]]) -> str:
    keys = list(records[0]) if records else []
    for k in (*ID_KEYS, *[k for k in keys if k.lower().endswith("_id") or k.endswith("Id")]):
        values = [r.get(k) for r in records]
        if (
            k in keys
            and all(v is not None for v in values)
            and len(set(map(str, values))) == len(values)
        ):
            return k
    return "id"


def guess_pagination(
    body: Any, headers: dict[str, str], next_url: str | None, n: int, params: dict[str, str]
) -> tuple[dict[str, Any], list[str]]:
    """The pagination of a listing from its first page; ``params`` are the query the
    page was asked with (a page size among them is the size parameter)."""
    notes: list[str] = []
    pag: dict[str, Any] = {}
    total_header = next((h for h in headers if h.lower() == "x-total-count"), None)
    total_path = next((p for p in TOTAL_PATHS if isinstance(mapping.get_path(body, p), int)), None)
    query = {**params, **(dict(parse_qsl(urlsplit(next_url).query)) if next_url else {})}
    if next_url:
        pag = {"type": "link"}
    else:
        nxt_path = next(
            (p for p in NEXT_PATHS if isinstance(mapping.get_path(body, p), str | int)), None
        )
        if nxt_path is not None:
            value = str(mapping.get_path(body, nxt_path))
            if value.startswith(("http://", "https://", "/")):
                pag = {"type": "next_url", "next_url_path": nxt_path}
                query.update(parse_qsl(urlsplit(value).query))
            else:
                pag = {"type": "cursor", "param": "cursor", "next_path": nxt_path}
                notes.append("pagination.param 'cursor' is a guess: the API's cursor parameter")
        elif total_header or total_path:
            pag = {"type": "page", "param": "page"}
            notes.append("pagination.param 'page' is a guess (a total but no next link)")
    size_param = next((p for p in SIZE_PARAMS if p in query), None)
    if pag and size_param:
        pag["size_param"] = size_param
        try:
            pag["size"] = int(query[size_param])
        except ValueError:
            pass
    elif pag and n:
        pag["size"] = n
    if pag and total_header:
        pag.update(stop="total", total_header=total_header)
    elif pag and total_path:
        pag.update(stop="total", total_path=total_path)
    elif pag and pag["type"] in ("link", "next_url", "cursor"):
        pag["stop"] = "no_next"
    return pag, notes


def discover(
    url: str,
    path: str | None = None,
    auth: dict[str, Any] | None = None,
    *,
    name: str | None = None,
    app: str = "CHANGE_ME",
) -> Proposal:
    """Sample ``url`` (+ ``path``) and propose a connector document for it."""
    from mno.sync.rest import RestClient
    from mno.sync.spec import ConnectorSpec, Entity, ListSpec

    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise BadInput(f"invalid URL {url!r}", "give http(s)://host[/path]")
    base = f"{parts.scheme}://{parts.netloc}"
    full = path if path else (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    if path and parts.path.strip("/"):
        base += "/" + parts.path.strip("/")
    list_path, _, qs = full.partition("?")
    params = dict(parse_qsl(qs))
    try:
        auth_model = Auth.model_validate(auth or {})
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"]) or "auth"
        raise BadInput(f"--auth {where}: {err['msg']}") from None
    canonical = _canonical(list_path)
    probe = ConnectorSpec(
        name=name or "discovered",
        app=app,
        base_url=base,
        auth=auth_model,
        entities=[Entity(canonical=canonical, list=ListSpec(path=list_path), mapping={})],
    )
    with RestClient(probe, max_retries=2) as client:
        body, response = client.get_json(list_path, params or None)
        nxt = response.links.get("next", {}).get("url")
    records_path, records = find_records(body)
    notes: list[str] = []
    if not records:
        notes.append("the first page was empty: fields and types could not be sampled")
    id_key = guess_id(records)
    keys: list[str] = []
    for r in records:
        keys += [k for k in r if k not in keys]
    # a record without the field maps it to null: null is one of its types then
    fields = {k: field_schema([r.get(k) for r in records]) for k in keys}
    required = [
        _snake(k) for k in keys if k != id_key and all(r.get(k) is not None for r in records)
    ]
    pag, more = guess_pagination(body, dict(response.headers), nxt, len(records), params)
    notes += more
    static = {k: v for k, v in params.items() if k not in (pag.get("size_param"), pag.get("param"))}
    entity: dict[str, Any] = {"canonical": canonical, "list": {"path": list_path}}
    if static:
        entity["list"]["params"] = static
    entity["records"] = records_path
    if pag:
        entity["pagination"] = pag
    entity["id"] = id_key
    updated = next(
        (k for k in UPDATED_KEYS if k in fields and fields[k].get("format") == "date-time"), None
    )
    if updated:
        entity["updated_at"] = updated
        entity["incremental"] = {"param": "updated_since", "format": "iso8601"}
        notes.append(f"incremental.param 'updated_since' is a guess (records carry {updated})")
    deleted = next((k for k in DELETED_KEYS if fields.get(k, {}).get("type") == "boolean"), None)
    if deleted:
        entity["deleted"] = {"flag": deleted}
    entity["mapping"] = {_snake(k): k for k in keys if k != id_key}
    properties = {_snake(k): fields[k] for k in keys if k != id_key}
    entity["schema"] = {"type": "object", "properties": properties, "required": required}
    document = {
        "name": probe.name,
        "app": app,
        "base_url": base,
        "auth": auth_model.model_dump(exclude_defaults=True) or {"type": "none"},
        "entities": [entity],
    }
    if app == "CHANGE_ME":
        notes.append("app: give the code of the app this connector reads")
    try:  # the proposal must be a valid document once the app is set
        ConnectorSpec.model_validate(document)
    except ValidationError as exc:  # pragma: no cover - a guess the model refuses
        notes.append(f"the proposal does not validate: {exc.errors()[0]['msg']}")
    return Proposal(document, notes)
