"""Hub API: tenants (list, show, create, update, status, children) and events.

Every route authenticates a principal (``mno.api.bearer``), calls one domain function
and renders a typed model. Visibility and rights are decided by ``mno.access.scopes``
with the CLI's access checks: a tenant the caller may not see is 404, a visible one
the credential's scope or role does not reach is 403.

Lists page by cursor (``?limit=&cursor=``) with a ``Link: <...>; rel="next"`` header;
POSTs honour ``Idempotency-Key`` (``mno.api.idempotency``); a tenant carries an
``ETag`` and ``PATCH`` with a stale ``If-Match`` is refused 412.
"""

from __future__ import annotations

import hashlib
import json
from datetime import datetime
from typing import Any, Literal

from fastapi import APIRouter, Depends, Header, Path, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from mno.access import members, scopes
from mno.access.scopes import Principal
from mno.api import idempotency, threads
from mno.api.bearer import hub_principal
from mno.api.errors import ERRORS, PROBLEM, READ, ApiError, ApiRoute, ErrorBody
from mno.store import audit, outbox
from mno.store.db import session_scope
from mno.tenancy import tenants

router = APIRouter(route_class=ApiRoute, tags=["hub"])

KEY = Path(max_length=64, description="The tenant's key")
MAX_LIMIT = 500


def with_errors(
    codes: dict[int | str, dict[str, Any]], extra: dict[int, str]
) -> dict[int | str, Any]:
    out = dict(codes)
    for status, text in extra.items():
        out[status] = {
            "model": ErrorBody,
            "description": text,
            "content": {PROBLEM: {"schema": {"$ref": "#/components/schemas/ErrorBody"}}},
        }
    return out


POST_ERRORS = with_errors(ERRORS, {})
PATCH_ERRORS = with_errors(ERRORS, {412: "If-Match names another version of the tenant"})


class Tenant(BaseModel):
    id: str
    key: str
    name: str
    tier: str
    status: str
    status_reason: str | None
    parent: str | None
    domains: list[str]
    currency: str
    timezone: str
    address: str | None
    city: str | None
    zip: str | None
    region: str | None
    country: str | None
    in_arrears: bool
    metadata: dict[str, Any]
    created_at: datetime
    updated_at: datetime

    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "id": "0193a1c2-0000-7000-8000-000000000001",
                    "key": "acme",
                    "name": "Acme",
                    "tier": "pooled",
                    "status": "active",
                    "status_reason": None,
                    "parent": "system",
                    "domains": ["acme.example"],
                    "currency": "USD",
                    "timezone": "UTC",
                    "address": None,
                    "city": None,
                    "zip": None,
                    "region": None,
                    "country": None,
                    "in_arrears": False,
                    "metadata": {},
                    "created_at": "2026-12-07T12:00:00Z",
                    "updated_at": "2026-12-07T12:00:00Z",
                }
            ]
        }
    )


class TenantPage(BaseModel):
    tenants: list[Tenant]
    next: str | None = Field(description="Pass as `cursor` for the next page (also in `Link`).")


class TenantCreate(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"key": "acme", "name": "Acme", "tier": "pooled"}]},
    )

    key: str = Field(max_length=40)
    name: str | None = Field(None, max_length=200)
    tier: str = Field("pooled", max_length=10)
    parent: str | None = Field(None, max_length=40, description="Managing tenant's key")
    domains: list[str] = Field(default_factory=list, max_length=50)
    currency: str = Field("USD", max_length=3)
    timezone: str = Field("UTC", max_length=64)
    address: str | None = Field(None, max_length=200)
    city: str | None = Field(None, max_length=100)
    zip: str | None = Field(None, max_length=20)
    region: str | None = Field(None, max_length=100)
    country: str | None = Field(None, max_length=2)
    metadata: dict[str, Any] = Field(default_factory=dict)


class TenantUpdate(BaseModel):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"name": "Acme Corp"}]}
    )

    name: str | None = Field(None, max_length=200)
    tier: str | None = Field(None, max_length=10)
    parent: str | None = Field(None, max_length=40)
    domains: list[str] | None = Field(None, max_length=50)
    currency: str | None = Field(None, max_length=3)
    timezone: str | None = Field(None, max_length=64)
    address: str | None = Field(None, max_length=200)
    city: str | None = Field(None, max_length=100)
    zip: str | None = Field(None, max_length=20)
    region: str | None = Field(None, max_length=100)
    country: str | None = Field(None, max_length=2)
    metadata: dict[str, Any] | None = None


class SuspendBody(BaseModel):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"reason": "arrears"}]}
    )

    reason: str = Field(min_length=1, max_length=500)


class Event(BaseModel):
    seq: int
    id: str
    type: str
    tenant_id: str | None
    payload: dict[str, Any]
    created_at: datetime


class EventPage(BaseModel):
    events: list[Event]
    next: str = Field(
        description="Pass as `after` to read the events that follow (`SEQ` or `TX:SEQ`)."
    )


# -- helpers ------------------------------------------------------------------------------


def etag_of(data: dict[str, Any]) -> str:
    raw = json.dumps(data, sort_keys=True, separators=(",", ":"), default=str)
    return '"' + hashlib.sha256(raw.encode()).hexdigest()[:32] + '"'


def _matches(if_match: str, etag: str) -> bool:
    tags = [t.strip().removeprefix("W/") for t in if_match.split(",")]
    return "*" in tags or etag in tags


def check_if_match(if_match: str | None, data: dict[str, Any], what: str) -> None:
    """412 when ``If-Match`` names another version than ``data``'s ETag."""
    if if_match is not None and not _matches(if_match, etag_of(data)):
        raise ApiError(412, "precondition_failed", f"{what} changed since that ETag; read it again")


IfMatch = Header(
    None, alias="If-Match", max_length=500, description="The ETag read: 412 when it is stale"
)


def _tenant_data(session: Any, tenant: Any) -> dict[str, Any]:
    return tenants.view(session, tenant).as_dict()


def next_link(request: Request, cursor_name: str, cursor: str | None) -> dict[str, str]:
    if cursor is None:
        return {}
    url = request.url.include_query_params(**{cursor_name: cursor})
    return {"Link": f'<{url}>; rel="next"'}


def json_response(
    model: BaseModel, status: int = 200, headers: dict[str, str] | None = None
) -> Response:
    return Response(
        model.model_dump_json(), status_code=status, media_type="application/json", headers=headers
    )


# -- tenants ------------------------------------------------------------------------------


Sort = Literal["key", "-key", "created_at", "-created_at", "name", "-name"]


@router.get(
    "/v1/hub/tenants",
    response_model=TenantPage,
    responses=READ,
    summary="Tenants the caller can see, a page at a time",
)
async def list_tenants(
    request: Request,
    principal: Principal = Depends(hub_principal),
    limit: int = Query(100, ge=1, le=MAX_LIMIT),
    cursor: str | None = Query(None, max_length=500, description="From `next` or `Link`"),
    status: str | None = Query(None, max_length=32),
    name_prefix: str | None = Query(None, max_length=200),
    parent: str | None = Query(None, max_length=40),
    sort: Sort = Query("key", description="A column, `-` first for descending"),
) -> Response:
    def work() -> TenantPage:
        with session_scope(write=False) as s:
            page = scopes.page_tenants(
                s,
                principal,
                status=status,
                name_prefix=name_prefix,
                parent=parent,
                sort=sort,
                after=cursor,
                limit=limit,
            )
            return TenantPage(tenants=[Tenant(**v.as_dict()) for v in page.rows], next=page.next)

    page = await threads.run(work)
    return json_response(page, headers=next_link(request, "cursor", page.next))


@router.get(
    "/v1/hub/tenants/{key}",
    response_model=Tenant,
    responses=READ,
    summary="One tenant, with its ETag",
)
async def get_tenant(key: str = KEY, principal: Principal = Depends(hub_principal)) -> Response:
    def work() -> dict[str, Any]:
        with session_scope(write=False) as s:
            tenant = scopes.authorize(s, principal, key, "read", "tenants:read")
            return _tenant_data(s, tenant)

    data = await threads.run(work)
    return json_response(Tenant(**data), headers={"ETag": etag_of(data)})


@router.get(
    "/v1/hub/tenants/{key}/children",
    response_model=TenantPage,
    responses=READ,
    summary="The tenants a tenant manages (those the caller can see)",
)
async def tenant_children(
    request: Request,
    key: str = KEY,
    principal: Principal = Depends(hub_principal),
    limit: int = Query(100, ge=1, le=MAX_LIMIT),
    cursor: str | None = Query(None, max_length=500),
) -> Response:
    def work() -> TenantPage:
        with session_scope(write=False) as s:
            scopes.authorize(s, principal, key, "read", "tenants:read")
            page = scopes.page_tenants(s, principal, parent=key, after=cursor, limit=limit)
            return TenantPage(tenants=[Tenant(**v.as_dict()) for v in page.rows], next=page.next)

    page = await threads.run(work)
    return json_response(page, headers=next_link(request, "cursor", page.next))


@router.post(
    "/v1/hub/tenants",
    status_code=201,
    response_model=Tenant,
    responses=POST_ERRORS,
    summary="Create a tenant (top level: an operator; under a parent: its super_admin)",
)
async def create_tenant(
    body: TenantCreate,
    request: Request,
    principal: Principal = Depends(hub_principal),
    idempotency_key: str | None = idempotency.IdempotencyHeader,
) -> Response:
    def work(s: Any) -> tuple[BaseModel, str | None]:
        scopes.require_scope(principal, "tenants:write")
        if body.parent:
            scopes.authorize(s, principal, body.parent, "update_tenant", "tenants:write")
        else:
            scopes.require_operator(principal, "update_tenant")
        fields = body.model_dump()
        tenant, _ = tenants.create(s, fields.pop("key"), **fields)
        if principal.operator_role is None and principal.user is not None:
            # the creator manages what they created: a super_admin of the new tenant
            members.add(s, tenant.key, principal.user.email, "super_admin")
        return Tenant(**_tenant_data(s, tenant)), f"/v1/hub/tenants/{tenant.key}"

    return await idempotency.run(request, principal, idempotency_key, 201, work)


@router.patch(
    "/v1/hub/tenants/{key}",
    response_model=Tenant,
    responses=PATCH_ERRORS,
    summary="Change a tenant's fields; `If-Match` refuses a lost update (412)",
)
async def update_tenant(
    body: TenantUpdate,
    key: str = KEY,
    principal: Principal = Depends(hub_principal),
    if_match: str | None = IfMatch,
) -> Response:
    def work() -> dict[str, Any]:
        with session_scope() as s:
            tenant = scopes.authorize(s, principal, key, "update_tenant", "tenants:write")
            s.refresh(tenant, with_for_update=True)  # a concurrent PATCH waits here
            check_if_match(if_match, _tenant_data(s, tenant), f"tenant {tenant.key}")
            fields = body.model_dump(exclude_unset=True)
            if fields.get("parent"):
                scopes.authorize(s, principal, fields["parent"], "update_tenant", "tenants:write")
            tenants.update(s, tenant.key, **fields)
            return _tenant_data(s, tenant)

    data = await threads.run(work)
    return json_response(Tenant(**data), headers={"ETag": etag_of(data)})


def _transition_work(principal: Principal, key: str, run: Any) -> Any:
    def work(s: Any) -> tuple[BaseModel, str | None]:
        scopes.require_scope(principal, "tenants:write")
        tenant = scopes.find(s, principal, key)
        scopes.require_operator(principal, "update_tenant")
        return Tenant(**_tenant_data(s, run(s, tenant.key))), None

    return work


def _transition(action: str, run: Any) -> Any:
    async def route(
        request: Request,
        key: str = KEY,
        principal: Principal = Depends(hub_principal),
        idempotency_key: str | None = idempotency.IdempotencyHeader,
    ) -> Response:
        work = _transition_work(principal, key, run)
        return await idempotency.run(request, principal, idempotency_key, 200, work)

    route.__name__ = f"{action}_tenant"
    return route


_TRANSITIONS = {
    "provision": (tenants.provision, "Provision a tenant (to active; an operator)"),
    "resume": (tenants.resume, "Resume a suspended tenant (an operator)"),
    "archive": (tenants.offboard, "Offboard a tenant, final (an operator)"),
}

for _action, (_run, _summary) in _TRANSITIONS.items():
    router.add_api_route(
        f"/v1/hub/tenants/{{key}}/{_action}",
        _transition(_action, _run),
        methods=["POST"],
        response_model=Tenant,
        responses=POST_ERRORS,
        summary=_summary,
    )


@router.post(
    "/v1/hub/tenants/{key}/suspend",
    response_model=Tenant,
    responses=POST_ERRORS,
    summary="Suspend a tenant with a reason (an operator)",
)
async def suspend_tenant(
    body: SuspendBody,
    request: Request,
    key: str = KEY,
    principal: Principal = Depends(hub_principal),
    idempotency_key: str | None = idempotency.IdempotencyHeader,
) -> Response:
    work = _transition_work(principal, key, lambda s, k: tenants.suspend(s, k, body.reason))
    return await idempotency.run(request, principal, idempotency_key, 200, work)


# -- contacts -----------------------------------------------------------------------------


class Contact(BaseModel):
    name: str
    email: str
    type: str
    primary: bool


class ContactList(BaseModel):
    contacts: list[Contact]


class ContactAdd(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"name": "Ann", "email": "ann@acme.example", "type": "billing"}]
        },
    )

    name: str = Field(min_length=1, max_length=200)
    email: str = Field(max_length=254)
    type: str = Field("admin", max_length=20, description="admin, billing, technical or other")
    primary: bool = False


def _contact(c: Any) -> Contact:
    return Contact(name=c.name, email=c.email, type=c.type, primary=c.primary)


@router.get("/v1/hub/tenants/{key}/contacts", response_model=ContactList, responses=READ)
async def list_contacts(key: str = KEY, principal: Principal = Depends(hub_principal)) -> Response:
    """A tenant's contacts."""

    def work() -> ContactList:
        with session_scope(write=False) as s:
            tenant = scopes.authorize(s, principal, key, "read", "tenants:read")
            return ContactList(contacts=[_contact(c) for c in tenants.list_contacts(s, tenant.key)])

    return json_response(await threads.run(work))


@router.post(
    "/v1/hub/tenants/{key}/contacts", status_code=201, response_model=Contact, responses=POST_ERRORS
)
async def add_contact(
    body: ContactAdd,
    request: Request,
    key: str = KEY,
    principal: Principal = Depends(hub_principal),
    idempotency_key: str | None = idempotency.IdempotencyHeader,
) -> Response:
    """Add a contact (the rules of `mno tenant contact add`)."""

    def work(s: Any) -> tuple[BaseModel, str | None]:
        tenant = scopes.authorize(s, principal, key, "update_tenant", "tenants:write")
        contact = tenants.add_contact(
            s, tenant.key, name=body.name, email=body.email, type=body.type, primary=body.primary
        )
        return _contact(contact), None

    return await idempotency.run(request, principal, idempotency_key, 201, work)


@router.delete("/v1/hub/tenants/{key}/contacts/{email}", status_code=204, responses=READ)
async def remove_contact(
    key: str = KEY,
    email: str = Path(max_length=254),
    principal: Principal = Depends(hub_principal),
) -> Response:
    """Remove a contact."""

    def work() -> None:
        with session_scope() as s:
            tenant = scopes.authorize(s, principal, key, "update_tenant", "tenants:write")
            tenants.remove_contact(s, tenant.key, email)

    await threads.run(work)
    return Response(status_code=204)


# -- events -------------------------------------------------------------------------------


@router.get(
    "/v1/hub/events",
    response_model=EventPage,
    responses=READ,
    summary="Outbox events after a cursor, oldest first, of the tenants the caller sees",
    description=(
        "Follows the outbox: `next` is the cursor of the last event returned. Only "
        "events whose transaction has ended are served, ordered by that transaction, so "
        "an event that commits late is never skipped by a reader already past it."
    ),
)
async def list_events(
    request: Request,
    principal: Principal = Depends(hub_principal),
    after: str | None = Query(
        None,
        max_length=40,
        pattern=r"^([0-9]{1,19}:)?[0-9]{1,19}$",
        description="`next` of the previous page, or a sequence number: the events above it",
        examples=["41", "1234567:42"],
    ),
    limit: int = Query(100, ge=1, le=MAX_LIMIT),
    type: str | None = Query(
        None, max_length=100, description="An event type; `*` matches any part (`tenant.*`)"
    ),
) -> Response:
    def work() -> EventPage:
        with session_scope(write=False) as s:
            rows = scopes.page_events(s, principal, after=after, limit=limit, event_type=type)
        events = [
            Event(
                seq=int(e.seq or 0),
                id=str(e.id),
                type=e.type,
                tenant_id=str(e.tenant_id) if e.tenant_id else None,
                payload=audit.jsonable(e.payload) or {},
                created_at=e.created_at,
            )
            for e in rows
        ]
        nxt = outbox.position(rows[-1]) if rows else (after or "0")
        return EventPage(events=events, next=nxt)

    page = await threads.run(work)
    full = len(page.events) == limit
    return json_response(page, headers=next_link(request, "after", page.next if full else None))
