"""The connector document: a declarative REST connector as pydantic models.

``load_file()`` parses YAML keeping node marks, so a validation error names the file,
the line and the dotted key (``connector.yaml:12: entities.0.pagination.type: …``).
``apply()`` stores a validated connector (create or update) with its audit row and is
what ``mno connector apply -f`` and GitOps call.
"""

from __future__ import annotations

import builtins
import hashlib
import json
import re
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, get_args

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator
from sqlmodel import select

from mno import safeyaml
from mno.errors import BadInput
from mno.settings import parse_duration
from mno.store import audit
from mno.store.models.sync import SyncConnector
from mno.tenancy import apps

if TYPE_CHECKING:
    from sqlmodel import Session

Transform = Literal["lower", "upper", "strip", "int", "float", "str", "bool", "iso8601", "epoch"]
TRANSFORMS: tuple[str, ...] = get_args(Transform)


class Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _check_secret(value: str | None) -> str | None:
    if value is not None and not value.startswith("secret:"):
        raise ValueError("must be a secret reference like secret:NAME")
    return value


class Auth(Model):
    type: Literal["bearer", "basic", "header", "api_key", "oauth2", "none"] = "none"
    token: str | None = None
    username: str | None = None
    password: str | None = None
    header: str | None = None  # header: the header's name; api_key: in this header
    query: str | None = None  # api_key: in this query parameter
    value: str | None = None
    # oauth2 (see mno.sync.oauth): the grant, the token endpoint, the client's credentials
    grant: Literal["client_credentials", "authorization_code"] = "client_credentials"
    token_url: str | None = None
    authorize_url: str | None = None  # authorization_code: where an operator consents
    redirect_uri: str | None = None
    client_id: str | None = None
    client_secret: str | None = None
    scope: str | None = None
    # the secrets' name prefix for the tokens (default: oauth.<connection>)
    token_secret: str | None = None
    # what to tell an operator when the API refuses the credentials (401/403), e.g.
    # "create a token under Settings > API"; without it the hint names the secrets
    hint: str | None = None

    _secrets = field_validator("token", "password", "value", "client_secret")(_check_secret)

    def values(self, credentials: dict[str, Any] | None = None) -> dict[str, Any]:
        """The auth's fields, a connection's credentials overriding them."""
        values = self.model_dump()
        for key, value in (credentials or {}).items():
            if key in values and value:
                values[key] = value
        return values

    @model_validator(mode="after")
    def _complete(self) -> Auth:
        need = {
            "bearer": ["token"],
            "basic": ["username", "password"],
            "header": ["header", "value"],
            "api_key": ["value"],
            "oauth2": ["token_url", "client_id", "client_secret"],
        }
        for name in need.get(self.type, []):
            if getattr(self, name) is None:
                raise ValueError(f"auth type {self.type} needs {name}")
        if self.type == "api_key" and bool(self.header) == bool(self.query):
            raise ValueError("auth type api_key needs exactly one of header or query")
        return self


class RateLimit(Model):
    requests: int = Field(default=10, gt=0)
    per_seconds: float = Field(default=1.0, gt=0)


class Pagination(Model):
    # page: ?page=N; offset: ?offset=N; cursor: a token from the body (next_path) sent back
    # as ?param=TOKEN; link: the RFC 8288 Link header's rel="next"; next_url: a URL in the
    # body (next_url_path)
    type: Literal["none", "page", "offset", "cursor", "link", "next_url"] = "none"
    param: str | None = None  # page / offset / cursor query parameter
    size_param: str | None = None
    size: int = Field(default=100, gt=0)
    start: int = 1  # first page number (page)
    next_path: str | None = None  # cursor: path to the next token in the body
    next_url_path: str | None = None  # next_url: path to the next page's URL in the body
    stop: Literal["empty", "short", "no_next", "total"] = "short"
    total_path: str | None = None  # stop: total, the total in the body
    total_header: str | None = None  # stop: total, the total in a header (X-Total-Count)
    # a full pass over a page or offset listing re-checks the records it did not see before
    # deleting them (the listing may have shifted during the pass): with the entity's
    # ``get`` one GET per record, otherwise a second listing; "none" deletes at once
    verify_deletes: Literal["auto", "none"] = "auto"

    @model_validator(mode="after")
    def _complete(self) -> Pagination:
        if self.type in ("page", "offset", "cursor") and not self.param:
            raise ValueError(f"pagination {self.type} needs param")
        if self.type == "cursor" and not self.next_path:
            raise ValueError("pagination cursor needs next_path")
        if self.type == "next_url" and not self.next_url_path:
            raise ValueError("pagination next_url needs next_url_path")
        if self.stop == "total" and not (self.total_path or self.total_header):
            raise ValueError("stop: total needs total_path or total_header")
        return self


class Incremental(Model):
    param: str
    format: Literal["iso8601", "epoch"] = "iso8601"
    # how far before a pass's start the next pass reads again (``30s``, ``5m``, ``1h``):
    # a record the API changed during the pass, or stamped by a clock behind ours, is
    # pulled by the next pass (re-read records with the same content are unchanged)
    lookback: str = "5m"

    @field_validator("lookback")
    @classmethod
    def _duration(cls, value: str) -> str:
        try:
            parse_duration(value)
        except BadInput as exc:
            raise ValueError(str(exc)) from None
        return value

    def lookback_delta(self) -> timedelta:
        return parse_duration(self.lookback)


class Deleted(Model):
    flag: str | None = None  # a field that is truthy on deleted records
    path: str | None = None  # a "deleted since" endpoint
    param: str | None = None
    records: str | None = None
    id: str = "id"

    @model_validator(mode="after")
    def _one(self) -> Deleted:
        if bool(self.flag) == bool(self.path):
            raise ValueError("give exactly one of flag or path")
        return self


class FieldMap(Model):
    source: str
    transform: Transform | None = None
    default: Any = None


class ListSpec(Model):
    path: str
    params: dict[str, str] = Field(default_factory=dict)


class GetSpec(Model):
    """One record by id (``/contacts/{id}``): a full pass re-checks a record it did not
    see with it before deleting it."""

    path: str
    records: str = ""  # path to the record in the body

    @field_validator("path")
    @classmethod
    def _id(cls, value: str) -> str:
        if "{id}" not in value:
            raise ValueError("must contain {id}")
        return value


class Parent(Model):
    """A child stream: listed per parent record at ``path`` (``{id}`` is the parent's
    external id), the parent's id kept in the child's field ``key``."""

    entity: str
    path: str
    key: str

    @field_validator("path")
    @classmethod
    def _id(cls, value: str) -> str:
        if "{id}" not in value:
            raise ValueError("must contain {id}")
        return value


class PushOp(Model):
    method: Literal["POST", "PUT", "PATCH", "DELETE"] = "POST"
    path: str


class Push(Model):
    create: PushOp | None = None
    update: PushOp | None = None
    delete: PushOp | None = None  # e.g. {method: DELETE, path: /contacts/{id}}
    body: dict[str, str] = Field(default_factory=dict)  # external field <- canonical field
    id: str = "id"  # path to the external id in the create response


class Entity(Model):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    canonical: str
    list: ListSpec
    get: GetSpec | None = None
    parent: Parent | None = None
    records: str = ""
    pagination: Pagination = Field(default_factory=Pagination)
    incremental: Incremental | None = None
    id: str = "id"
    updated_at: str | None = None
    deleted: Deleted | None = None
    mapping: dict[str, str | FieldMap]
    # ``list`` is a field of this model: the builtin is spelled in full below
    ignore_fields: builtins.list[str] = Field(default_factory=builtins.list)
    push: Push | None = None
    # a JSON Schema that canonical records must satisfy (mno.sync.schema); a record that
    # does not is recorded as a record error of the run and not stored
    json_schema: dict[str, Any] | None = Field(default=None, alias="schema")

    @field_validator("json_schema")
    @classmethod
    def _schema(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        if value is not None:
            from mno.sync.schema import check_schema

            check_schema(value)
        return value

    @field_validator("canonical")
    @classmethod
    def _slug(cls, value: str) -> str:
        if not re.match(r"^[a-z][a-z0-9_]{0,63}$", value):
            raise ValueError("lowercase letters, digits and _")
        return value

    def fields(self) -> dict[str, FieldMap]:
        out = {
            k: (FieldMap(source=v) if isinstance(v, str) else v) for k, v in self.mapping.items()
        }
        if self.parent is not None and self.parent.key not in out:
            out[self.parent.key] = FieldMap(source=self.parent.key)
        return out


class ConnectorSpec(Model):
    name: str
    app: str
    base_url: str
    auth: Auth = Field(default_factory=Auth)
    rate_limit: RateLimit = Field(default_factory=RateLimit)
    # the most requests in flight at once (child streams list their parents' children
    # side by side)
    concurrency: int = Field(default=1, ge=1, le=32)
    timeout_seconds: float = 30.0
    entities: list[Entity] = Field(min_length=1)

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if not re.match(r"^[a-z0-9][a-z0-9-]{0,99}$", value):
            raise ValueError("lowercase letters, digits and -")
        return value

    @field_validator("base_url")
    @classmethod
    def _url(cls, value: str) -> str:
        if not re.match(r"^https?://", value):
            raise ValueError("must start with http:// or https://")
        return value.rstrip("/")

    @model_validator(mode="after")
    def _unique(self) -> ConnectorSpec:
        seen = [e.canonical for e in self.entities]
        if len(seen) != len(set(seen)):
            raise ValueError("each canonical entity may appear once")
        for e in self.entities:
            if e.parent is not None:
                if e.parent.entity not in seen or e.parent.entity == e.canonical:
                    raise ValueError(f"{e.canonical}: parent {e.parent.entity} is no other entity")
                if self.entity(e.parent.entity).parent is not None:
                    raise ValueError(f"{e.canonical}: a parent may not itself be a child")
        return self

    def entity(self, name: str) -> Entity:
        for e in self.entities:
            if e.canonical == name:
                return e
        raise BadInput(f"connector {self.name} has no entity {name!r}")


# -- loading with file:line -----------------------------------------------------------------


def _marks(node: Any, prefix: tuple[Any, ...], out: dict[tuple[Any, ...], int]) -> None:
    out.setdefault(prefix, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            path = (*prefix, key.value)
            out[path] = key.start_mark.line + 1
            _marks(value, path, out)
            out[path] = key.start_mark.line + 1
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _marks(item, (*prefix, str(i)), out)


def _error(exc: ValidationError, source: str, lines: dict[tuple[Any, ...], int]) -> BadInput:
    err = exc.errors()[0]
    loc = tuple(str(p) for p in err["loc"] if not str(p).startswith(("function-after", "literal")))
    # pydantic adds union member names (str, FieldMap) to the location; drop unknown tails
    line = None
    probe = loc
    while probe and line is None:
        line = lines.get(probe)
        probe = probe[:-1]
    line = line or lines.get((), 1)
    key = ".".join(loc) or "(document)"
    return BadInput(f"{source}:{line}: {key}: {err['msg']}")


def parse(text: str, source: str = "<string>") -> ConnectorSpec:
    try:
        node = safeyaml.compose(text, source)
        data = safeyaml.construct(node)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark else 1
        raise BadInput(f"{source}:{line}: invalid YAML: {getattr(exc, 'problem', exc)}") from None
    if not isinstance(data, dict):
        raise BadInput(f"{source}:1: a connector document must be a mapping")
    if data.get("kind") == "Connector":  # the GitOps envelope: kind + spec
        data = {k: v for k, v in data.items() if k not in ("kind", "apiVersion")}
    lines: dict[tuple[Any, ...], int] = {}
    if node is not None:
        _marks(node, (), lines)
    try:
        return ConnectorSpec.model_validate(data)
    except ValidationError as exc:
        raise _error(exc, source, lines) from None


def load_file(path: str | Path) -> ConnectorSpec:
    p = Path(path)
    if not p.is_file():
        raise BadInput(f"no such file: {p}")
    return parse(p.read_text(), str(p))


def spec_hash(spec: ConnectorSpec) -> str:
    blob = json.dumps(
        spec.model_dump(mode="json", by_alias=True), sort_keys=True, separators=(",", ":")
    )
    return hashlib.sha256(blob.encode()).hexdigest()


def apply(
    session: Session, spec: ConnectorSpec, source: str | None = None
) -> tuple[SyncConnector, str]:
    """Create or update the connector; returns (row, "created"|"updated"|"unchanged")."""
    app = apps.get(session, spec.app)
    if app.stack not in ("connector", "cloud"):
        raise BadInput(
            f"app {spec.app} has stack {app.stack}", "a connector's app must be connector or cloud"
        )
    digest = spec_hash(spec)
    row = session.exec(select(SyncConnector).where(SyncConnector.name == spec.name)).first()
    data = spec.model_dump(mode="json", by_alias=True)
    if row is None:
        row = SyncConnector(
            name=spec.name, app_id=app.id, spec=data, spec_hash=digest, source=source
        )
        session.add(row)
        session.flush()
        audit.record(
            session,
            "connector.create",
            target_type="connector",
            target_id=row.id,
            target=spec.name,
            after={"app": spec.app, "spec_hash": digest},
        )
        return row, "created"
    if row.spec_hash == digest and row.app_id == app.id:
        return row, "unchanged"
    before = {"spec_hash": row.spec_hash}
    row.spec, row.spec_hash, row.app_id, row.source = data, digest, app.id, source or row.source
    row.touch()
    session.add(row)
    audit.record(
        session,
        "connector.update",
        target_type="connector",
        target_id=row.id,
        target=spec.name,
        before=before,
        after={"spec_hash": digest},
    )
    return row, "updated"


def of(row: SyncConnector) -> ConnectorSpec:
    return ConnectorSpec.model_validate(row.spec)
