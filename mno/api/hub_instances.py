"""Hub API: Nex instances (list, show, create, start, stop, restart, update, terminate).

Each write records the desired state through ``mno.nex.instances`` and queues the
instance for the provisioner, which does the container work; the answer is the
instance as recorded (``staged`` or still in its old status, with the new ``desired``).
Members read a tenant's instances (``instances:read``); admins change them (the
``manage_instances`` action, ``instances:write``). An instance of a tenant the caller
cannot see is not found, as a missing one.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Path, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from mno.access import scopes
from mno.access.scopes import Principal
from mno.api import idempotency, threads
from mno.api.bearer import hub_principal
from mno.api.errors import ERRORS, READ, ApiRoute
from mno.api.hub import (
    KEY,
    MAX_LIMIT,
    PATCH_ERRORS,
    IfMatch,
    check_if_match,
    etag_of,
    json_response,
    next_link,
)
from mno.errors import NotFound
from mno.nex import instances
from mno.store import paging
from mno.store.db import session_scope
from mno.store.models.tenancy import Tenant

router = APIRouter(route_class=ApiRoute, tags=["hub instances"])

REF = Path(max_length=64, description="The instance's name or id")


class Instance(BaseModel):
    id: str
    name: str | None
    tenant: str
    app: str
    status: str
    desired: str
    action: str | None
    host: str | None
    url: str | None
    domains: list[str]
    image: str
    env: dict[str, str]
    memory: str | None
    cpus: str | None
    pids: int | None
    started_at: str | None
    stopped_at: str | None
    terminated_at: str | None
    last_error: str | None
    created_at: str


class InstanceList(BaseModel):
    instances: list[Instance]
    next: str | None


class InstanceCreate(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"app": "wiki"}]})

    app: str = Field(max_length=64)
    name: str | None = Field(None, max_length=63)
    domains: list[str] = Field(default_factory=list, max_length=20)
    env: dict[str, str] = Field(default_factory=dict)
    memory: str | None = Field(None, max_length=16)
    cpus: str | None = Field(None, max_length=8)


class InstanceUpdate(BaseModel):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"image": "wiki:1.1"}]}
    )

    image: str | None = Field(None, max_length=300)
    env: dict[str, str] | None = None
    unset_env: list[str] | None = Field(None, max_length=100)


class Terminate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    purge_data: bool = Field(False, description="Delete the data volume too")
    backup: bool = Field(False, description="Back the data up first")


def _view(s: Any, inst: Any) -> Instance:
    data = instances.view(s, inst).as_dict()
    return Instance(**{k: data[k] for k in Instance.model_fields})


def _instance_of(s: Any, principal: Principal, ref: str, action: str, scope: str) -> str:
    scopes.require_scope(principal, scope)
    try:
        inst = instances.get(s, ref)
    except (NotFound, ValueError):
        raise NotFound(f"instance {ref} not found", "see `mno instance list`") from None
    tenant = s.get(Tenant, inst.tenant_id)
    try:
        scopes.authorize(s, principal, tenant.key if tenant else "", action, scope)
    except NotFound:
        raise NotFound(f"instance {ref} not found", "see `mno instance list`") from None
    return str(inst.id)


@router.get("/v1/hub/tenants/{key}/instances", response_model=InstanceList, responses=READ)
async def list_instances(
    request: Request,
    key: str = KEY,
    principal: Principal = Depends(hub_principal),
    status: str | None = Query(None, max_length=16),
    limit: int = Query(100, ge=1, le=MAX_LIMIT),
    cursor: str | None = Query(None, max_length=500),
) -> Response:
    """A tenant's instances by name (terminated ones with `status=terminated`)."""

    def work() -> InstanceList:
        with session_scope(write=False) as s:
            tenant = scopes.authorize(s, principal, key, "read", "instances:read")
            views = instances.list_instances(s, tenant=tenant.key, status=status)
            page = paging.page_list(
                views, lambda v: (v.instance.name or "", str(v.instance.id)), cursor, limit
            )
            return InstanceList(
                instances=[
                    Instance(**{k: v.as_dict()[k] for k in Instance.model_fields})
                    for v in page.rows
                ],
                next=page.next,
            )

    page = await threads.run(work)
    return json_response(page, headers=next_link(request, "cursor", page.next))


@router.post(
    "/v1/hub/tenants/{key}/instances",
    status_code=201,
    response_model=Instance,
    responses=ERRORS,
)
async def create_instance(
    body: InstanceCreate,
    request: Request,
    key: str = KEY,
    principal: Principal = Depends(hub_principal),
    idempotency_key: str | None = idempotency.IdempotencyHeader,
) -> Response:
    """Record an instance of a Nex app for the provisioner (staged, desired running)."""

    def work(s: Any) -> tuple[BaseModel, str | None]:
        tenant = scopes.authorize(s, principal, key, "manage_instances", "instances:write")
        inst = instances.create(
            s,
            tenant.key,
            body.app,
            name=body.name,
            domains=body.domains,
            env=body.env,
            memory=body.memory,
            cpus=body.cpus,
        )
        return _view(s, inst), f"/v1/hub/instances/{inst.id}"

    return await idempotency.run(request, principal, idempotency_key, 201, work)


@router.get("/v1/hub/instances/{ref}", response_model=Instance, responses=READ)
async def get_instance(ref: str = REF, principal: Principal = Depends(hub_principal)) -> Response:
    """One instance, as `mno instance show`."""

    def work() -> Instance:
        with session_scope(write=False) as s:
            found = _instance_of(s, principal, ref, "read", "instances:read")
            return _view(s, instances.get(s, found))

    view = await threads.run(work)
    return json_response(view, headers={"ETag": etag_of(view.model_dump(mode="json"))})


@router.patch("/v1/hub/instances/{ref}", response_model=Instance, responses=PATCH_ERRORS)
async def update_instance(
    body: InstanceUpdate,
    ref: str = REF,
    principal: Principal = Depends(hub_principal),
    if_match: str | None = IfMatch,
) -> Response:
    """A new image and/or environment, rolled out by the provisioner; `If-Match` with a
    stale ETag is refused 412."""

    def work() -> Instance:
        with session_scope() as s:
            found = _instance_of(s, principal, ref, "manage_instances", "instances:write")
            current = instances.get(s, found)
            s.refresh(current, with_for_update=True)  # a concurrent PATCH waits here
            check_if_match(if_match, _view(s, current).model_dump(mode="json"), f"instance {ref}")
            inst = instances.update(
                s, found, image=body.image, env=body.env, unset_env=body.unset_env
            )
            return _view(s, inst)

    view = await threads.run(work)
    return json_response(view, headers={"ETag": etag_of(view.model_dump(mode="json"))})


def _verb(verb: str) -> Any:
    async def route(
        request: Request,
        ref: str = REF,
        principal: Principal = Depends(hub_principal),
        idempotency_key: str | None = idempotency.IdempotencyHeader,
    ) -> Response:
        def work(s: Any) -> tuple[BaseModel, str | None]:
            found = _instance_of(s, principal, ref, "manage_instances", "instances:write")
            inst = getattr(instances, verb)(s, found)
            return _view(s, inst), None

        return await idempotency.run(request, principal, idempotency_key, 200, work)

    route.__name__ = f"{verb}_instance"
    return route


for _verb_name, _summary in (
    ("start", "Start a stopped instance"),
    ("stop", "Stop an instance (its data stays)"),
    ("restart", "Restart a running instance"),
):
    router.add_api_route(
        f"/v1/hub/instances/{{ref}}/{_verb_name}",
        _verb(_verb_name),
        methods=["POST"],
        response_model=Instance,
        responses=ERRORS,
        summary=_summary,
    )


@router.post("/v1/hub/instances/{ref}/terminate", response_model=Instance, responses=ERRORS)
async def terminate_instance(
    request: Request,
    body: Terminate | None = None,
    ref: str = REF,
    principal: Principal = Depends(hub_principal),
    idempotency_key: str | None = idempotency.IdempotencyHeader,
) -> Response:
    """Terminate an instance (final); its data stays unless `purge_data`."""
    opts = body or Terminate.model_validate({})

    def work(s: Any) -> tuple[BaseModel, str | None]:
        found = _instance_of(s, principal, ref, "manage_instances", "instances:write")
        inst = instances.terminate(s, found, purge_data=opts.purge_data, backup=opts.backup)
        return _view(s, inst), None

    return await idempotency.run(request, principal, idempotency_key, 200, work)
