"""Hub API: webhook endpoints (list, show, create, update, enable, disable, rotate the
signing secret, delete), through ``mno.webhooks.endpoints``.

An endpoint of a tenant gets that tenant's events only; its admins manage it (the
``manage_members`` action: admin or super_admin, with ``webhooks:write``). An endpoint
without a tenant gets every event: the platform's, managed by operators who are admins
of the system tenant. The signing secret is in the answer to create and rotate only,
never stored with an idempotent replay.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from fastapi import APIRouter, Depends, Path, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field
from sqlmodel import col, select

from mno.access import roles, scopes
from mno.access.scopes import Principal
from mno.api import idempotency, threads
from mno.api.bearer import hub_principal
from mno.api.errors import ERRORS, READ, ApiRoute
from mno.api.hub import (
    MAX_LIMIT,
    IfMatch,
    check_if_match,
    etag_of,
    json_response,
    next_link,
    with_errors,
)
from mno.errors import Forbidden, NotFound
from mno.store.db import session_scope
from mno.store.models.tenancy import Tenant
from mno.webhooks import endpoints

router = APIRouter(route_class=ApiRoute, tags=["hub webhooks"])

ENDPOINT = Path(max_length=64, description="The endpoint's id")


class Endpoint(BaseModel):
    id: str
    url: str
    tenant: str | None
    status: str
    last_failure: str | None
    events: list[str]
    description: str
    rate_limit: str | None
    ordered: bool
    timeout: str
    headers: dict[str, str]
    enabled: bool
    disabled_reason: str | None
    failing_since: datetime | None
    created_at: datetime


class EndpointWithSecret(Endpoint):
    secret: str | None = Field(
        None, description="The signing secret: in the first answer only (null in a replay)"
    )


class EndpointList(BaseModel):
    endpoints: list[Endpoint]
    next: str | None


class EndpointCreate(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"url": "https://hooks.example.com/mno", "tenant": "acme", "events": ["tenant.*"]}
            ]
        },
    )

    url: str = Field(max_length=2000)
    tenant: str | None = Field(None, max_length=40, description="None: every tenant's events")
    events: list[str] = Field(default_factory=list, max_length=100, description="[]: every event")
    description: str = Field("", max_length=500)
    rate_limit: float | None = Field(None, gt=0, description="Deliveries per second")
    ordered: bool = False
    timeout: str = Field("15s", max_length=10)
    headers: dict[str, str] = Field(default_factory=dict)


class EndpointUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: str | None = Field(None, max_length=2000)
    events: list[str] | None = Field(None, max_length=100)
    description: str | None = Field(None, max_length=500)
    ordered: bool | None = None
    timeout: str | None = Field(None, max_length=10)
    headers: dict[str, str] | None = None


class Disable(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reason: str | None = Field(None, max_length=500)


def _may_manage(s: Any, principal: Principal, tenant_key: str | None, scope: str) -> None:
    """Platform endpoints: operators (admins of the system tenant); a tenant's: its admins
    (404 for a tenant the caller cannot see)."""
    scopes.require_scope(principal, scope)
    if principal.app is not None:
        raise Forbidden(f"app {principal.app.code} may not manage webhook endpoints")
    if tenant_key is None:
        if principal.operator_role not in roles.ADMINS:
            raise Forbidden("platform webhook endpoints need an operator")
        return
    scopes.authorize(s, principal, tenant_key, "manage_members", scope)


def _tenant_key(s: Any, e: Any) -> str | None:
    if e.tenant_id is None:
        return None
    tenant = s.get(Tenant, e.tenant_id)
    return tenant.key if tenant else ""


def _endpoint_of(s: Any, principal: Principal, endpoint_id: str, scope: str) -> str:
    hidden = NotFound(f"webhook endpoint {endpoint_id} not found")
    try:
        e = endpoints.get(s, endpoint_id)
    except (NotFound, ValueError):
        raise hidden from None
    key = _tenant_key(s, e)
    if key is None and principal.operator_role is None:
        raise hidden
    try:
        _may_manage(s, principal, key, scope)
    except NotFound:
        raise hidden from None
    return str(e.id)


def _view(s: Any, e: Any, *, reveal: bool = False) -> dict[str, Any]:
    data = endpoints.view(e, reveal=reveal)
    data["tenant"] = _tenant_key(s, e)
    return data


@router.get("/v1/hub/webhooks", response_model=EndpointList, responses=READ)
async def list_webhooks(
    request: Request,
    principal: Principal = Depends(hub_principal),
    tenant: str | None = Query(None, max_length=40, description="Needed unless an operator"),
    limit: int = Query(100, ge=1, le=MAX_LIMIT),
    cursor: str | None = Query(None, max_length=500),
) -> Response:
    """Webhook endpoints, oldest first: a tenant's, or (operators) all of them."""

    def work() -> EndpointList:
        with session_scope(write=False) as s:
            if tenant is None and principal.operator_role is None:
                scopes.require_scope(principal, "webhooks:read")
                raise Forbidden("give ?tenant= (every endpoint is for operators)")
            _may_manage(s, principal, tenant, "webhooks:read")
            page = endpoints.page_views(s, tenant=tenant, after=cursor, limit=limit)
            ids = {uuid.UUID(v["tenant_id"]) for v in page.rows if v["tenant_id"]}
            keys = {
                str(tid): key
                for tid, key in s.exec(
                    select(Tenant.id, Tenant.key).where(col(Tenant.id).in_(ids))
                ).all()
            }
            rows = [
                Endpoint(**{**v, "tenant": keys.get(v["tenant_id"]) if v["tenant_id"] else None})
                for v in page.rows
            ]
            return EndpointList(endpoints=rows, next=page.next)

    page = await threads.run(work)
    return json_response(page, headers=next_link(request, "cursor", page.next))


@router.post(
    "/v1/hub/webhooks", status_code=201, response_model=EndpointWithSecret, responses=ERRORS
)
async def create_webhook(
    body: EndpointCreate,
    request: Request,
    principal: Principal = Depends(hub_principal),
    idempotency_key: str | None = idempotency.IdempotencyHeader,
) -> Response:
    """Register an endpoint; its signing secret is in this answer only."""

    def work(s: Any) -> tuple[BaseModel, str | None]:
        _may_manage(s, principal, body.tenant, "webhooks:write")
        e = endpoints.add(
            s,
            body.url,
            tenant=body.tenant,
            events=body.events,
            description=body.description,
            rate_limit=body.rate_limit,
            ordered=body.ordered,
            timeout=body.timeout,
            headers=body.headers,
        )
        return EndpointWithSecret(**_view(s, e, reveal=True)), f"/v1/hub/webhooks/{e.id}"

    return await idempotency.run(
        request, principal, idempotency_key, 201, work, secret_fields=("secret",)
    )


@router.get("/v1/hub/webhooks/{endpoint_id}", response_model=Endpoint, responses=READ)
async def get_webhook(
    endpoint_id: str = ENDPOINT, principal: Principal = Depends(hub_principal)
) -> Response:
    """One endpoint (custom headers masked, never the secret), with its ETag."""

    def work() -> dict[str, Any]:
        with session_scope(write=False) as s:
            found = _endpoint_of(s, principal, endpoint_id, "webhooks:read")
            return _view(s, endpoints.get(s, found))

    data = await threads.run(work)
    return json_response(Endpoint(**data), headers={"ETag": etag_of(data)})


@router.patch(
    "/v1/hub/webhooks/{endpoint_id}",
    response_model=Endpoint,
    responses=with_errors(ERRORS, {412: "If-Match names another version of the endpoint"}),
)
async def update_webhook(
    body: EndpointUpdate,
    endpoint_id: str = ENDPOINT,
    principal: Principal = Depends(hub_principal),
    if_match: str | None = IfMatch,
) -> Response:
    """Change an endpoint's URL, filters, timeout or headers; `If-Match` refuses a lost
    update (412)."""

    def work() -> dict[str, Any]:
        with session_scope() as s:
            found = _endpoint_of(s, principal, endpoint_id, "webhooks:write")
            current = endpoints.get(s, found)
            s.refresh(current, with_for_update=True)  # a concurrent PATCH waits here
            before = _view(s, current)
            e = endpoints.update(
                s,
                found,
                url=body.url,
                events=",".join(body.events) if body.events is not None else None,
                description=body.description,
                ordered=body.ordered,
                timeout=body.timeout,
                headers=body.headers,
            )
            # checked after the input (a bad one is refused 4xx first); a 412 rolls back
            check_if_match(if_match, before, f"webhook endpoint {found}")
            return _view(s, e)

    data = await threads.run(work)
    return json_response(Endpoint(**data), headers={"ETag": etag_of(data)})


@router.delete("/v1/hub/webhooks/{endpoint_id}", status_code=204, responses=READ)
async def delete_webhook(
    endpoint_id: str = ENDPOINT, principal: Principal = Depends(hub_principal)
) -> Response:
    """Delete an endpoint; its pending deliveries are cancelled."""

    def work() -> None:
        with session_scope() as s:
            found = _endpoint_of(s, principal, endpoint_id, "webhooks:write")
            endpoints.delete(s, found)

    await threads.run(work)
    return Response(status_code=204)


@router.post("/v1/hub/webhooks/{endpoint_id}/enable", response_model=Endpoint, responses=ERRORS)
async def enable_webhook(
    request: Request,
    endpoint_id: str = ENDPOINT,
    principal: Principal = Depends(hub_principal),
    idempotency_key: str | None = idempotency.IdempotencyHeader,
) -> Response:
    """Enable an endpoint (its failure streak is forgotten)."""

    def work(s: Any) -> tuple[BaseModel, str | None]:
        found = _endpoint_of(s, principal, endpoint_id, "webhooks:write")
        return Endpoint(**_view(s, endpoints.set_enabled(s, found, True))), None

    return await idempotency.run(request, principal, idempotency_key, 200, work)


@router.post("/v1/hub/webhooks/{endpoint_id}/disable", response_model=Endpoint, responses=ERRORS)
async def disable_webhook(
    request: Request,
    body: Disable | None = None,
    endpoint_id: str = ENDPOINT,
    principal: Principal = Depends(hub_principal),
    idempotency_key: str | None = idempotency.IdempotencyHeader,
) -> Response:
    """Disable an endpoint: nothing is sent to it until it is enabled."""
    reason = body.reason if body else None

    def work(s: Any) -> tuple[BaseModel, str | None]:
        found = _endpoint_of(s, principal, endpoint_id, "webhooks:write")
        return Endpoint(**_view(s, endpoints.set_enabled(s, found, False, reason))), None

    return await idempotency.run(request, principal, idempotency_key, 200, work)


@router.post(
    "/v1/hub/webhooks/{endpoint_id}/rotate-secret",
    response_model=EndpointWithSecret,
    responses=ERRORS,
)
async def rotate_webhook_secret(
    request: Request,
    endpoint_id: str = ENDPOINT,
    principal: Principal = Depends(hub_principal),
    idempotency_key: str | None = idempotency.IdempotencyHeader,
) -> Response:
    """A new signing secret; the old one also signs for 24 hours."""

    def work(s: Any) -> tuple[BaseModel, str | None]:
        found = _endpoint_of(s, principal, endpoint_id, "webhooks:write")
        e = endpoints.rotate_secret(s, found)
        return EndpointWithSecret(**_view(s, e, reveal=True)), None

    return await idempotency.run(
        request, principal, idempotency_key, 200, work, secret_fields=("secret",)
    )
