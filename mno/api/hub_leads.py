"""Hub API: leads (``GET /v1/hub/leads``, ``GET /v1/hub/leads/{id}``), for platform
operators.

Leads are sign-ups before they become tenants: the platform's, not a tenant's, so an
operator reads them, as ``mno lead list`` and ``mno lead show`` do; anyone else is
refused 403. Rows have the shape of ``mno lead show -o json`` (never the code's hash).
The onboarding API (``/v1/onboarding/leads``) creates, verifies and converts them.
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, Path, Query, Request, Response
from pydantic import BaseModel, Field

from mno.access import scopes
from mno.access.scopes import Principal
from mno.api import threads
from mno.api.bearer import hub_principal
from mno.api.errors import READ, ApiRoute
from mno.api.hub import MAX_LIMIT, json_response, next_link
from mno.store.db import session_scope
from mno.tenancy import leads

router = APIRouter(route_class=ApiRoute, tags=["hub leads"])


class Lead(BaseModel):
    id: str
    email: str
    first_name: str
    last_name: str
    company: str
    country: str | None
    city: str | None
    zip: str | None
    address: str | None
    status: str = Field(examples=["pending", "verified", "locked", "converted"])
    failed_attempts: int
    code_expires_at: str | None
    verified_at: str | None
    converted_at: str | None
    tenant_id: str | None
    created_at: str


class LeadPage(BaseModel):
    leads: list[Lead]
    next: str | None = Field(description="Pass as `cursor` for the next page (also in `Link`).")


def _operator(principal: Principal) -> None:
    scopes.require_scope(principal, "tenants:read")
    scopes.require_operator(principal, "read")


@router.get(
    "/v1/hub/leads",
    response_model=LeadPage,
    responses=READ,
    summary="Leads, newest first (an operator's)",
)
async def list_leads(
    request: Request,
    principal: Principal = Depends(hub_principal),
    limit: int = Query(100, ge=1, le=MAX_LIMIT),
    cursor: str | None = Query(None, max_length=500, description="From `next` or `Link`"),
    status: str | None = Query(
        None, max_length=20, description="pending, verified, locked or converted"
    ),
) -> Response:
    def work() -> LeadPage:
        _operator(principal)
        with session_scope(write=False) as s:
            page = leads.page_leads(s, status=status, after=cursor, limit=limit)
            return LeadPage(leads=[Lead(**leads.view(x)) for x in page.rows], next=page.next)

    page = await threads.run(work)
    return json_response(page, headers=next_link(request, "cursor", page.next))


@router.get(
    "/v1/hub/leads/{lead_id}",
    response_model=Lead,
    responses=READ,
    summary="One lead, by id or a unique prefix of it (an operator's)",
)
async def get_lead(
    lead_id: str = Path(max_length=36, pattern=r"^[0-9a-fA-F-]+$"),
    principal: Principal = Depends(hub_principal),
) -> Response:
    def work() -> Lead:
        _operator(principal)
        with session_scope(write=False) as s:
            return Lead(**leads.view(leads.get(s, lead_id)))

    return json_response(await threads.run(work))
