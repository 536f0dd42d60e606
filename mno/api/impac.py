"""Impac over HTTP: KPI widgets of a tenant's business data, and its dashboard page.

- ``GET /v1/impac/{tenant}/widgets`` lists the widgets;
  ``GET /v1/impac/{tenant}/widgets/{name}?from=&to=&group_by=&currency=&rate=`` answers
  one (the shape is documented in ``mno.impac.model``). The caller is an app (HTTP Basic
  with an app key) asking about a tenant it may use: the tenant that owns the app or a
  customer of it (``mno.access.customers.may_ask``). Any other tenant is answered 404,
  the same as a tenant that does not exist.
- ``GET /impac/{tenant}`` is the dashboard page for a signed-in user (the hub's browser
  session cookie) who may read the tenant; others get 404, and a browser without a session is
  sent to ``/signin?next=...`` (303), which brings it back once signed in.
"""

from __future__ import annotations

import html
from typing import Any
from urllib.parse import quote

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse
from pydantic import BaseModel, ConfigDict, Field
from sqlmodel import Session, select

from mno import clock
from mno.access import check, customers
from mno.api import threads
from mno.api.auth import Caller, app_caller
from mno.api.errors import READ, ApiError, ApiRoute
from mno.impac import currency, dashboard, widgets
from mno.impac.model import Query as ImpacQuery
from mno.impac.model import Window
from mno.sso import sessions
from mno.store.db import session_scope
from mno.store.models.access import User
from mno.store.models.tenancy import Tenant

router = APIRouter(route_class=ApiRoute, tags=["impac"])


class Point(BaseModel):
    x: str = Field(description="A month (YYYY-MM), a day, or a label (customer, stage, age).")
    y: str | int | None = Field(description="Money as a decimal string; counts as integers.")


class SeriesOut(BaseModel):
    name: str
    currency: str | None = Field(description="The currency of money points; null otherwise.")
    unit: str
    points: list[Point]


class WindowOut(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    from_: str = Field(alias="from", description="First day (YYYY-MM-DD).")
    to: str = Field(description="Last day (YYYY-MM-DD), included.")


class WidgetAnswer(BaseModel):
    widget: str
    tenant: str
    window: WindowOut
    currency: str | None = Field(description="The currency asked for; null: all, apart.")
    group_by: str | None
    series: list[SeriesOut]
    totals: dict[str, Any] = Field(
        description="Figures over the window; money totals map each currency to an amount."
    )
    rates: dict[str, str] | None = Field(
        default=None, description="Present when amounts were converted: the rates used."
    )


class WidgetInfo(BaseModel):
    name: str
    area: str
    title: str
    description: str
    group_by: list[str]


class WidgetList(BaseModel):
    tenant: str
    widgets: list[WidgetInfo]


def _not_found(key: str) -> ApiError:
    return ApiError(404, "not_found", f"tenant {key} not found")


def _tenant(s: Session, caller: Caller, key: str) -> Tenant:
    """The tenant, when the calling app may use it; 404 otherwise (existing or not)."""
    tenant = s.exec(select(Tenant).where(Tenant.key == key)).first()
    if tenant is None:
        raise _not_found(key)
    allowed, _ = customers.may_ask(s, caller.app, tenant)
    if not allowed:
        raise _not_found(key)
    return tenant


def _query(
    start: str | None, end: str | None, group_by: str | None, cur: str | None, rates: list[str]
) -> ImpacQuery:
    view = currency.View.of(cur, currency.parse_rates(rates))
    return ImpacQuery(Window.of(start, end), view, group_by)


def _list(caller: Caller, key: str) -> dict[str, Any]:
    with session_scope(write=False) as s:
        tenant = _tenant(s, caller, key)
        return {"tenant": tenant.key, "widgets": widgets.catalogue()}


def _widget(caller: Caller, key: str, name: str, query: ImpacQuery) -> dict[str, Any]:
    with session_scope(write=False) as s:
        tenant = _tenant(s, caller, key)
        return widgets.run(s, tenant, name, query)


@router.get(
    "/v1/impac/{tenant}/widgets",
    response_model=WidgetList,
    responses=READ,
    summary="The KPI widgets of a tenant's business data",
)
async def list_widgets(tenant: str, caller: Caller = Depends(app_caller)) -> Any:
    return await threads.run(_list, caller, tenant)


RateQuery = Query(
    default_factory=list,
    description="A conversion rate SOURCE:TARGET=RATE (repeat it); needs `currency`.",
)


@router.get(
    "/v1/impac/{tenant}/widgets/{name}",
    response_model=WidgetAnswer,
    response_model_exclude_unset=True,
    responses=READ,
    summary="One KPI widget over a window: series and totals",
)
async def get_widget(
    tenant: str,
    name: str,
    caller: Caller = Depends(app_caller),
    start: str | None = Query(None, alias="from", max_length=10, description="YYYY-MM-DD."),
    end: str | None = Query(None, alias="to", max_length=10, description="YYYY-MM-DD."),
    group_by: str | None = Query(None, max_length=20, description="See the widget's list."),
    cur: str | None = Query(None, alias="currency", max_length=3, description="ISO 4217."),
    rate: list[str] = RateQuery,
) -> Any:
    query = _query(start, end, group_by, cur, rate)
    body = await threads.run(_widget, caller, tenant, name, query)
    return JSONResponse(body)


def _page(token: str | None, key: str, query: ImpacQuery) -> tuple[int, str]:
    with session_scope(write=False) as s:
        row = sessions.find(s, token)
        if row is None:
            return 401, _message("Sign in to the hub to see this dashboard.")
        user = s.get(User, row.user_id)
        tenant = s.exec(select(Tenant).where(Tenant.key == key)).first()
        if user is None or tenant is None:
            return 404, _message("Not found.")
        allowed, _ = check.check(s, user, tenant, "read")
        if not allowed:
            return 404, _message("Not found.")
        body = widgets.report(s, tenant, query)
    return 200, dashboard.render(body, clock.now())


def _message(text: str) -> str:
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8"><title>mno</title></head>'
        f"<body><p>{html.escape(text)}</p></body></html>"
    )


@router.get("/impac/{tenant}", include_in_schema=False, response_class=HTMLResponse)
async def dashboard_page(
    request: Request,
    tenant: str,
    start: str | None = Query(None, alias="from", max_length=10),
    end: str | None = Query(None, alias="to", max_length=10),
    cur: str | None = Query(None, alias="currency", max_length=3),
    rate: list[str] = RateQuery,
) -> Response:
    query = _query(start, end, None, cur, rate)
    status, page = await threads.run(_page, request.cookies.get(sessions.COOKIE), tenant, query)
    if status == 401:  # a browser without a hub session signs in first, then comes back
        here = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return RedirectResponse(
            f"/signin?next={quote(here, safe='')}",
            status_code=303,
            headers={"Cache-Control": "no-store"},
        )
    return HTMLResponse(page, status_code=status, headers={"Cache-Control": "no-store"})
