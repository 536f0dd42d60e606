"""The Connec API: apps share a tenant's business data (``/v1/connec/{tenant}/...``).

Each request authenticates as an app (HTTP Basic with its key), acting for the tenant
when the IDM would answer it about that tenant, or as a user (``Authorization: Bearer``
with a personal token), allowed by the IDM's access check; any other tenant is 404
(``mno.connec.access``). The routes parse, call one domain function of ``mno.connec`` in a
store transaction, and render; a record that fails its schema is answered 422 with an
``errors`` list of ``{field, message}``.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

from fastapi import APIRouter, Body, Depends, Header, Path, Query, Request, Response, Security
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBasicCredentials, HTTPBearer
from pydantic import BaseModel, ConfigDict, Field, RootModel
from starlette.convertors import Convertor, register_url_convertor

from mno.access.secrets import digest
from mno.api import auth, idempotency, threads
from mno.api.auth import Caller, basic
from mno.api.errors import ERRORS, PROBLEM, READ, ApiError, ApiRoute, ErrorBody
from mno.connec import access, entities, queries, writes
from mno.connec.entities import Invalid
from mno.connec.writes import Op, Writer
from mno.store.db import session_scope
from mno.sync.rollback import Refused

router = APIRouter(route_class=ApiRoute, tags=["connec"])
bearer = HTTPBearer(auto_error=False, description="A user's personal token")
T = TypeVar("T")

TenantKey = Path(max_length=40, pattern=r"^[a-z0-9-]+$", description="Tenant key.")
EntityName = Path(max_length=63, pattern=r"^[a-z][a-z0-9_]*$", description="Entity (plural).")
IfMatch = Header(
    default=None,
    alias="If-Match",
    max_length=40,
    description="The record's version (its ETag): refused with 412 when it moved on.",
)


STALE: dict[int | str, dict[str, Any]] = {
    412: {
        "model": ErrorBody,
        "description": "If-Match names a version the record has moved past",
        "content": {PROBLEM: {"schema": {"$ref": "#/components/schemas/ErrorBody"}}},
    }
}


class EntityConvertor(Convertor[str]):
    """An entity name in a record path, never one of the tenant-level paths (``batch``,
    ``entities``, ``subscriptions``, ``transactions``): those paths answer only their own
    methods (405 with ``Allow`` for the others), as every path does."""

    regex = r"(?!(?:batch|entities|subscriptions|transactions)(?:/|$))[a-z][a-z0-9_]{0,62}"

    def convert(self, value: str) -> str:
        return value

    def to_string(self, value: str) -> str:
        return value


register_url_convertor("connec_entity", EntityConvertor())


def _invalid(exc: Invalid) -> JSONResponse:
    return JSONResponse(
        {
            "type": "about:blank",
            "title": "Unprocessable Content",
            "status": 422,
            "detail": exc.message,
            "error": {"code": "invalid", "message": exc.message},
            "errors": exc.errors,
        },
        status_code=422,
        media_type=PROBLEM,
    )


@dataclass(frozen=True)
class Actor:
    """Who calls: an app (HTTP Basic with its key) or a user (a Bearer personal token)."""

    app: Caller | None = None
    token: str | None = None


async def connec_actor(
    request: Request,
    _basic: HTTPBasicCredentials | None = Security(basic),
    _bearer: HTTPAuthorizationCredentials | None = Security(bearer),
) -> Actor:
    """The app of an ``Authorization: Basic`` header or the user token of a ``Bearer``
    one (rate limited per token); 401 without either."""
    header = request.headers.get("authorization") or ""
    if header[:7].lower() == "bearer ":
        token = header[7:].strip()
        if not token:
            raise ApiError(401, "unauthorized", "an empty bearer token")
        await auth.rate("token:" + digest(token)[:24])
        return Actor(token=token)
    return Actor(app=await auth.authenticate(header))


def _writer(s: Any, actor: Actor, tenant: str, write: bool) -> Writer:
    """The writer ``actor`` is on ``tenant`` (the IDM's answer; 404 when refused)."""
    if actor.app is not None:
        return access.writer_for(s, actor.app.app, tenant)
    assert actor.token is not None
    found = access.user_writer(s, actor.token, tenant, "sync" if write else "read")
    if found is None:
        raise ApiError(401, "unauthorized", "the token is unknown, expired or revoked")
    return found


def _in_store(write: bool, actor: Actor, tenant: str, fn: Callable[..., T], *args: Any) -> T:
    with session_scope(write=write) as s:
        return fn(s, _writer(s, actor, tenant, write), *args)


async def _run(
    caller: Actor, tenant: str, fn: Callable[..., T], *args: Any, write: bool = False
) -> T:
    return await threads.run(_in_store, write, caller, tenant, fn, *args)


def _version(value: str | None) -> int | None:
    if value is None:
        return None
    m = re.fullmatch(r'\s*(?:W/)?"?(\d{1,18})"?\s*', value)
    if m is None:
        raise ApiError(422, "invalid", 'If-Match must be a record version, e.g. "3"')
    return int(m.group(1))


class WriteRefused(Exception):
    """A write the domain refused, raised inside its transaction so that nothing of it
    (an idempotency key's row included) is written; ``response`` is the answer."""

    def __init__(self, response: Response) -> None:
        super().__init__(response.status_code)
        self.response = response


def _written(outcome: writes.Outcome, entity: str) -> dict[str, Any]:
    """The answer's body of a one-record write; ``WriteRefused`` or ``ApiError`` when refused."""
    result = outcome.results[0]
    if result.errors:
        raise WriteRefused(_invalid(Invalid(entity, result.errors)))
    if not result.ok:
        code = {404: "not_found", 409: "conflict", 412: "precondition_failed"}.get(
            result.status, "invalid"
        )
        raise ApiError(result.status, code, result.error or "refused")
    body = dict(result.record or {})
    body["transaction_id"] = str(outcome.transaction_id) if outcome.transaction_id else None
    return body


async def _write(caller: Actor, tenant: str, op: Op) -> Response:
    def work(s: Any, writer: Writer) -> dict[str, Any]:
        return _written(writes.apply(s, writer, [op]), op.entity)

    try:
        body = await _run(caller, tenant, work, write=True)
    except WriteRefused as exc:
        return exc.response
    return JSONResponse(body, status_code=200, headers={"ETag": f'"{body.get("version")}"'})


class Stored(RootModel[dict[str, Any]]):
    """An answer's JSON body, as an idempotency key keeps it."""


def _credential(actor: Actor) -> str:
    """What a Connec caller's idempotency keys are scoped to: its app key or its token."""
    if actor.app is not None:
        return f"connec:key:{actor.app.key_id}"[:64]
    return "connec:token:" + digest(actor.token or "")[:40]


async def _idempotent(
    request: Request,
    actor: Actor,
    key: str | None,
    status: int,
    work: Callable[[Any], tuple[dict[str, Any], str | None]],
    headers: dict[str, str] | None = None,
) -> Response:
    """A POST under ``Idempotency-Key`` (``mno.api.idempotency``, as the Hub API does):
    the key's row is written in the write's transaction, a retry is answered the first
    response with ``Idempotent-Replayed: true``, and a refusal keeps no key."""

    def stored(s: Any) -> tuple[BaseModel, str | None]:
        body, location = work(s)
        return Stored(body), location

    try:
        return await idempotency.run(request, _credential(actor), key, status, stored, headers)
    except WriteRefused as exc:
        return exc.response


# -- tenant-level routes (before /{entity}) ---------------------------------------------


class EntityInfo(BaseModel):
    name: str
    description: str
    custom: bool
    schema_: dict[str, Any] = Field(alias="schema")


@router.get(
    "/v1/connec/{tenant}/entities",
    responses=READ,
    summary="The entities of Connec with their JSON Schemas",
)
async def list_entities(tenant: str = TenantKey, caller: Actor = Depends(connec_actor)) -> Any:
    def work(_s: Any, _w: Writer) -> list[dict[str, Any]]:
        return [
            {"name": e.name, "description": e.description, "custom": e.custom, "schema": e.schema}
            for e in entities.all_entities().values()
        ]

    return {"entities": await _run(caller, tenant, work)}


class BatchOp(BaseModel):
    model_config = ConfigDict(extra="forbid")

    op: str = Field(description="create, update (replace), patch or delete")
    entity: str = Field(max_length=63)
    id: str | None = Field(default=None, max_length=64, description="Canonical record id.")
    app_id: str | None = Field(
        default=None, max_length=200, description="The app's own id (create: mapped to the record)."
    )
    version: int | None = Field(default=None, description="Like If-Match: 412 when stale.")
    data: dict[str, Any] | None = None


class BatchRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    operations: list[BatchOp] = Field(max_length=writes.MAX_BATCH)


@router.post(
    "/v1/connec/{tenant}/batch",
    responses=ERRORS,
    summary="Write up to 1,000 records in one transaction, each result reported separately",
)
async def batch(
    body: BatchRequest,
    request: Request,
    tenant: str = TenantKey,
    caller: Actor = Depends(connec_actor),
    idempotency_key: str | None = idempotency.IdempotencyHeader,
) -> Response:
    ops = [
        Op(o.op, o.entity, o.data, id=o.id, app_id=o.app_id, version=o.version)
        for o in body.operations
    ]

    def work(s: Any) -> tuple[dict[str, Any], str | None]:
        outcome = writes.apply(s, _writer(s, caller, tenant, True), ops)
        return {
            "transaction_id": str(outcome.transaction_id) if outcome.transaction_id else None,
            "results": [r.as_dict() for r in outcome.results],
        }, None

    return await _idempotent(request, caller, idempotency_key, 200, work)


@router.post(
    "/v1/connec/{tenant}/transactions/{transaction_id}/rollback",
    responses=ERRORS,
    summary="Roll back a transaction (same conflict rules as `mno sync rollback`)",
)
async def rollback(
    tenant: str = TenantKey,
    transaction_id: str = Path(max_length=64),
    dry_run: bool = Query(False, description="Only show the plan."),
    force: bool = Query(False, description="Restore records changed later as well."),
    caller: Actor = Depends(connec_actor),
) -> Any:
    def work(s: Any, writer: Writer) -> dict[str, Any]:
        return queries.rollback(s, writer, transaction_id, dry_run=dry_run, force=force).as_dict()

    try:
        return await _run(caller, tenant, work, write=True)
    except Refused as exc:
        return JSONResponse(
            {
                "type": "about:blank",
                "title": "Conflict",
                "status": 409,
                "detail": str(exc),
                "error": {"code": "conflict", "message": exc.message},
                "plan": exc.plan.as_dict(),
            },
            status_code=409,
            media_type=PROBLEM,
        )


class SubscriptionRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: str = Field(max_length=2000, description="Where the changes are delivered.")
    entities: list[str] = Field(min_length=1, max_length=100)


@router.post(
    "/v1/connec/{tenant}/subscriptions",
    status_code=201,
    responses=ERRORS,
    summary="Receive the other apps' changes of some entities by webhook",
)
async def subscribe(
    body: SubscriptionRequest, tenant: str = TenantKey, caller: Actor = Depends(connec_actor)
) -> Any:
    def work(s: Any, writer: Writer) -> dict[str, Any]:
        sub, secret = access.subscribe(s, writer, body.url, body.entities)
        return {**sub, "secret": secret}

    return JSONResponse(await _run(caller, tenant, work, write=True), status_code=201)


@router.get("/v1/connec/{tenant}/subscriptions", responses=READ, summary="The app's subscriptions")
async def subscriptions(tenant: str = TenantKey, caller: Actor = Depends(connec_actor)) -> Any:
    return {"subscriptions": await _run(caller, tenant, access.list_subscriptions)}


@router.delete(
    "/v1/connec/{tenant}/subscriptions/{subscription_id}",
    status_code=204,
    responses=READ,
    summary="Remove a subscription and its webhook endpoint",
)
async def unsubscribe(
    tenant: str = TenantKey,
    subscription_id: str = Path(max_length=64),
    caller: Actor = Depends(connec_actor),
) -> Response:
    await _run(caller, tenant, access.unsubscribe, subscription_id, write=True)
    return Response(status_code=204)


# -- records ----------------------------------------------------------------------------


@router.get(
    "/v1/connec/{tenant}/{entity:connec_entity}",
    responses=READ,
    summary="A page of records: $filter, $orderby, $select, updated_since, cursor",
)
async def list_records(
    tenant: str = TenantKey,
    entity: str = EntityName,
    filter_: str | None = Query(None, alias="$filter", max_length=4000),
    orderby: str | None = Query(None, alias="$orderby", max_length=500),
    select: str | None = Query(None, alias="$select", max_length=1000),
    updated_since: datetime | None = Query(None, description="ISO 8601 time."),
    limit: int = Query(100, ge=1, le=queries.MAX_LIMIT),
    cursor: str | None = Query(None, max_length=1000, description="`next` of the last page."),
    caller: Actor = Depends(connec_actor),
) -> Any:

    def work(s: Any, writer: Writer) -> queries.Page:
        return queries.list_records(
            s,
            writer,
            entity,
            filter=filter_,
            orderby=orderby,
            select=select,
            updated_since=updated_since,
            limit=limit,
            cursor=cursor,
        )

    page = await _run(caller, tenant, work)
    headers = {}
    if page.next:
        headers["Link"] = f'</v1/connec/{tenant}/{entity}?cursor={page.next}>; rel="next"'
    return JSONResponse({"records": page.records, "next": page.next}, headers=headers)


@router.post(
    "/v1/connec/{tenant}/{entity:connec_entity}",
    status_code=201,
    responses=ERRORS,
    summary="Create a record (an `id` in the body is the app's own id for it)",
)
async def create(
    request: Request,
    tenant: str = TenantKey,
    entity: str = EntityName,
    body: dict[str, Any] = Body(...),
    caller: Actor = Depends(connec_actor),
    idempotency_key: str | None = idempotency.IdempotencyHeader,
) -> Response:
    data = dict(body)
    own = data.pop("id", None)
    if own is not None and not isinstance(own, str | int):
        raise ApiError(422, "invalid", "id (the app's own id) must be a string")
    op = Op("create", entity, data, app_id=_own(own))

    def work(s: Any) -> tuple[dict[str, Any], str | None]:
        made = _written(writes.apply(s, _writer(s, caller, tenant, True), [op]), entity)
        return made, f"/v1/connec/{tenant}/{entity}/{made['id']}"

    # a created record is at version 1
    return await _idempotent(request, caller, idempotency_key, 201, work, {"ETag": '"1"'})


def _own(value: Any) -> str | None:
    if value is None:
        return None
    text = str(value)
    if not 1 <= len(text) <= 200:
        raise ApiError(422, "invalid", "id (the app's own id) must be 1 to 200 characters")
    return text


@router.get(
    "/v1/connec/{tenant}/{entity:connec_entity}/by-app-id/{app_id}",
    responses=READ,
    summary="The record the calling app knows by its own id",
)
async def get_by_app_id(
    tenant: str = TenantKey,
    entity: str = EntityName,
    app_id: str = Path(max_length=200),
    caller: Actor = Depends(connec_actor),
) -> Response:
    rec = await _run(caller, tenant, queries.get_by_app_id, entity, app_id)
    return JSONResponse(rec, headers={"ETag": f'"{rec["version"]}"'})


@router.get(
    "/v1/connec/{tenant}/{entity:connec_entity}/{record_id}", responses=READ, summary="One record"
)
async def get_record(
    tenant: str = TenantKey,
    entity: str = EntityName,
    record_id: str = Path(max_length=64),
    caller: Actor = Depends(connec_actor),
) -> Response:
    rec = await _run(caller, tenant, queries.get, entity, record_id)
    return JSONResponse(rec, headers={"ETag": f'"{rec["version"]}"'})


@router.get(
    "/v1/connec/{tenant}/{entity:connec_entity}/{record_id}/history",
    responses=READ,
    summary="Every change of a record, oldest first",
)
async def history(
    tenant: str = TenantKey,
    entity: str = EntityName,
    record_id: str = Path(max_length=64),
    caller: Actor = Depends(connec_actor),
) -> Any:
    return {"changes": await _run(caller, tenant, queries.history, entity, record_id)}


def _update_route(kind: str) -> Callable[..., Any]:
    """The PUT (``update``: replace the data) or PATCH (``patch``: change the fields
    given, ``null`` removes one) route of a record, with ``If-Match``."""

    async def route(
        tenant: str = TenantKey,
        entity: str = EntityName,
        record_id: str = Path(max_length=64),
        body: dict[str, Any] = Body(...),
        if_match: str | None = IfMatch,
        caller: Actor = Depends(connec_actor),
    ) -> Response:
        data = {k: v for k, v in body.items() if k != "id"}
        op = Op(kind, entity, data, id=record_id, version=_version(if_match))
        return await _write(caller, tenant, op)

    route.__name__ = {"update": "replace", "patch": "patch"}[kind]
    return route


replace = router.put(
    "/v1/connec/{tenant}/{entity:connec_entity}/{record_id}",
    responses={**ERRORS, **STALE},
    summary="Replace a record's data (If-Match: its version)",
)(_update_route("update"))
patch = router.patch(
    "/v1/connec/{tenant}/{entity:connec_entity}/{record_id}",
    responses={**ERRORS, **STALE},
    summary="Change some fields of a record (null removes one; If-Match: its version)",
)(_update_route("patch"))


@router.delete(
    "/v1/connec/{tenant}/{entity:connec_entity}/{record_id}",
    responses={**READ, **STALE},
    summary="Delete a record (its tombstone is kept; If-Match: its version)",
)
async def delete(
    tenant: str = TenantKey,
    entity: str = EntityName,
    record_id: str = Path(max_length=64),
    if_match: str | None = IfMatch,
    caller: Actor = Depends(connec_actor),
) -> Response:
    op = Op("delete", entity, None, id=record_id, version=_version(if_match))
    return await _write(caller, tenant, op)
