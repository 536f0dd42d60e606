"""Hub API: the apps catalogue (``GET /v1/hub/apps``), for platform operators.

The catalogue names every app with its owner and its grants (the tenants it is granted
to), so it is the platform's: an operator lists it, as ``mno app list`` does; anyone else
is refused 403. Rows have the shape of ``mno app list -o json``.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Query, Request, Response
from pydantic import BaseModel, Field

from mno.access import scopes
from mno.access.scopes import Principal
from mno.api import threads
from mno.api.bearer import hub_principal
from mno.api.errors import READ, ApiRoute
from mno.api.hub import MAX_LIMIT, json_response, next_link
from mno.store.db import session_scope
from mno.tenancy import apps

router = APIRouter(route_class=ApiRoute, tags=["hub access"])


class App(BaseModel):
    id: str
    code: str
    name: str
    stack: str
    type: str
    access: str
    owner: str
    enabled: bool
    multi_instantiable: bool
    image: str | None
    port: int | None
    env: dict[str, Any]
    health_path: str | None
    health_interval: str | None
    memory: str | None
    cpus: str | None
    volume_path: str | None
    backup_every: str | None
    labels: dict[str, Any]
    thumbnail: str | None
    metadata: dict[str, Any]
    grants: list[dict[str, Any]]
    created_at: str
    updated_at: str


class AppPage(BaseModel):
    apps: list[App]
    next: str | None = Field(description="Pass as `cursor` for the next page (also in `Link`).")


@router.get(
    "/v1/hub/apps",
    response_model=AppPage,
    responses=READ,
    summary="The apps catalogue, by code (an operator's)",
)
async def list_apps(
    request: Request,
    principal: Principal = Depends(hub_principal),
    limit: int = Query(100, ge=1, le=MAX_LIMIT),
    cursor: str | None = Query(None, max_length=500, description="From `next` or `Link`"),
    stack: str | None = Query(None, max_length=16),
    enabled: bool | None = Query(None),
) -> Response:
    def work() -> AppPage:
        scopes.require_scope(principal, "access:read")
        scopes.require_operator(principal, "read")
        with session_scope(write=False) as s:
            page = apps.page_apps(s, stack=stack, enabled=enabled, after=cursor, limit=limit)
            return AppPage(apps=[App(**v.as_dict()) for v in page.rows], next=page.next)

    page = await threads.run(work)
    return json_response(page, headers=next_link(request, "cursor", page.next))
