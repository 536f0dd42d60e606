"""The Developer API: an app lists its customers and submits bills and usage.

Bills and usage go through ``mno.billing`` (charges and usage events); both honour an
``Idempotency-Key`` header. An app sees only the bills it created: another app's bill
is answered 404.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from fastapi import APIRouter, Depends, Header, Query
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from mno.api import threads
from mno.api.auth import Caller, app_caller
from mno.api.errors import ERRORS, ApiError, ApiRoute
from mno.store import audit

router = APIRouter(route_class=ApiRoute, tags=["developer"])

IdempotencyKey = Header(
    default=None,
    alias="Idempotency-Key",
    max_length=200,
    description="Repeat a request safely: the same key returns the first result.",
)


class Customer(BaseModel):
    key: str
    name: str
    status: str
    currency: str


class CustomerPage(BaseModel):
    customers: list[Customer]
    next: str | None = Field(description="Pass as `after` for the next page.")


def customer_tenant_ids(session: Any, app_id: uuid.UUID) -> set[uuid.UUID]:
    """Tenants with an instance of, or a subscription to, the app (tables that exist)."""
    import sqlalchemy as sa
    from sqlmodel import SQLModel

    from mno.store.models import load_all

    load_all()
    ids: set[uuid.UUID] = set()
    code = None
    for name in ("instance", "billing_subscription"):
        table = SQLModel.metadata.tables.get(name)
        if table is None or "tenant_id" not in table.c:
            continue
        if "app_id" in table.c:
            stmt = sa.select(table.c.tenant_id).where(table.c.app_id == app_id)
        elif "app_code" in table.c:
            if code is None:
                from mno.store.models.tenancy import App

                code = session.exec(sa.select(App.code).where(App.id == app_id)).scalar_one()
            stmt = sa.select(table.c.tenant_id).where(table.c.app_code == code)
        else:
            continue
        if "status" in table.c:
            stmt = stmt.where(table.c.status.notin_(("deleted", "cancelled", "canceled")))
        ids.update(row[0] for row in session.exec(stmt))
    return ids


def _customers(caller: Caller, limit: int, after: str | None) -> dict[str, Any]:
    from sqlmodel import col, select

    from mno.store.db import session_scope
    from mno.store.models.tenancy import Tenant

    with session_scope(write=False) as s:
        ids = customer_tenant_ids(s, caller.app_id)
        if not ids:
            return {"customers": [], "next": None}
        stmt = select(Tenant).where(col(Tenant.id).in_(ids)).order_by(Tenant.key)
        if after:
            stmt = stmt.where(Tenant.key > after)
        rows = list(s.exec(stmt.limit(limit + 1)))
    page = rows[:limit]
    return {
        "customers": [
            {"key": t.key, "name": t.name, "status": t.status, "currency": t.currency} for t in page
        ],
        "next": page[-1].key if len(rows) > limit else None,
    }


@router.get(
    "/v1/dev/customers",
    response_model=CustomerPage,
    responses=ERRORS,
    summary="Tenants with an instance of, or a subscription to, the calling app",
)
async def customers(
    caller: Caller = Depends(app_caller),
    limit: int = Query(100, ge=1, le=1000),
    after: str | None = Query(
        None, max_length=40, pattern=r"^[a-z0-9-]*$", description="Tenant key to start after."
    ),
) -> Any:
    return await threads.run(_customers, caller, limit, after)


_billable: dict[tuple[uuid.UUID, str], float] = {}


def billable(session: Any, caller: Caller, tenant_key: str) -> str:
    """``may_bill`` with its yes-answers cached for the authorize-cache TTL (hot path of
    usage posts); returns the tenant key."""
    import time

    from mno.api import config

    now = time.monotonic()
    key = (caller.app_id, tenant_key)
    until = _billable.get(key)
    if until is not None and until > now:
        return tenant_key
    may_bill(session, caller, tenant_key)
    ttl = config.get().authorize_cache
    if ttl > 0:
        if len(_billable) > 100_000:
            _billable.clear()
        _billable[key] = now + ttl
    return tenant_key


def may_bill(session: Any, caller: Caller, tenant_key: str) -> Any:
    """The tenant, when the app may bill it (a customer, or allowed by the app's access)."""
    from mno.errors import NotFound
    from mno.tenancy import apps, tenants

    try:
        tenant = tenants.get(session, tenant_key)
    except NotFound as exc:
        raise ApiError(404, "not_found", f"tenant {tenant_key} not found") from exc
    if tenant.id in customer_tenant_ids(session, caller.app_id):
        return tenant
    allowed, _ = apps.check_access(session, apps.get(session, caller.app_id), tenant)
    if not allowed:
        raise ApiError(403, "forbidden", f"{tenant_key} is not a customer of {caller.app_code}")
    return tenant


def _decimal(value: str, what: str) -> Decimal:
    try:
        number = Decimal(value)
    except (InvalidOperation, TypeError) as exc:
        raise ApiError(422, "invalid", f"{what}: not a decimal number") from exc
    if not number.is_finite():
        raise ApiError(422, "invalid", f"{what}: not a finite number")
    return number


# -- bills --------------------------------------------------------------------------


class BillRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    tenant: str = Field(min_length=1, max_length=40)
    amount: str = Field(
        min_length=1,
        max_length=40,
        pattern=r"^-?\d{1,15}(\.\d{1,8})?$",
        description='Decimal amount as a string, e.g. "12.50".',
    )
    currency: str = Field(min_length=3, max_length=3, pattern=r"^[A-Za-z]{3}$")
    description: str = Field(min_length=1, max_length=500)


class Bill(BaseModel):
    id: str
    tenant: str
    amount: str
    currency: str
    description: str
    status: str
    app: str | None
    created_at: str | None


def _bill_dict(session: Any, charge: Any) -> dict[str, Any]:
    from mno.store.models.tenancy import Tenant

    tenant = session.get(Tenant, charge.tenant_id) if hasattr(charge, "tenant_id") else None
    amount = getattr(charge, "amount", None)
    if amount is None and hasattr(charge, "amount_minor"):
        from mno import money

        amount = money.from_minor(charge.amount_minor, charge.currency)
    return {
        "id": str(charge.id),
        "tenant": tenant.key if tenant else str(getattr(charge, "tenant_id", "")),
        "amount": str(amount),
        "currency": charge.currency,
        "description": getattr(charge, "description", "") or "",
        "status": str(getattr(charge, "status", "")),
        "app": getattr(charge, "app_code", None),
        "created_at": audit.jsonable(getattr(charge, "created_at", None)),
    }


def _charge_of(session: Any, caller: Caller, bill_id: str) -> Any:
    from mno.billing import charges
    from mno.errors import BadInput, NotFound

    try:
        charge = charges.get(session, bill_id)
    except (NotFound, BadInput) as exc:
        raise ApiError(404, "not_found", f"bill {bill_id} not found") from exc
    if getattr(charge, "app_code", None) != caller.app_code:
        raise ApiError(404, "not_found", f"bill {bill_id} not found")
    return charge


def _replayed(session: Any, tenant_id: uuid.UUID, idem: str | None) -> bool:
    """Whether a charge with this idempotency key exists already (answer 200, not 201)."""
    if not idem:
        return False
    from sqlmodel import select

    from mno.store.models.billing import Charge

    found = session.exec(
        select(Charge.id).where(Charge.tenant_id == tenant_id, Charge.idempotency_key == idem)
    ).first()
    return found is not None


def _create_bill(caller: Caller, body: BillRequest, key: str | None) -> tuple[dict[str, Any], int]:
    from mno.billing import charges
    from mno.store.db import session_scope

    amount = _decimal(body.amount, "amount")
    with session_scope() as s:
        tenant = may_bill(s, caller, body.tenant)
        idem = f"{caller.app_code}:{key}" if key else None
        replayed = _replayed(s, tenant.id, idem)
        result = charges.add(
            s,
            tenant.key,
            amount,
            body.currency.upper(),
            body.description,
            idempotency_key=idem,
            app_code=caller.app_code,
        )
        charge, created = result if isinstance(result, tuple) else (result, not replayed)
        if getattr(charge, "app_code", caller.app_code) != caller.app_code:
            raise ApiError(409, "conflict", "this Idempotency-Key was used for another bill")
        return _bill_dict(s, charge), 201 if created else 200


@router.post(
    "/v1/dev/bills",
    response_model=Bill,
    status_code=201,
    responses={**ERRORS, 200: {"model": Bill, "description": "Replayed bill"}},
    summary="Create a one-off bill (charge) for a customer",
)
async def create_bill(
    body: BillRequest,
    caller: Caller = Depends(app_caller),
    idempotency_key: str | None = IdempotencyKey,
) -> Any:
    data, status = await threads.run(_create_bill, caller, body, idempotency_key)
    return JSONResponse(data, status_code=status)


def _get_bill(caller: Caller, bill_id: str) -> dict[str, Any]:
    from mno.store.db import session_scope

    with session_scope(write=False) as s:
        return _bill_dict(s, _charge_of(s, caller, bill_id))


@router.get(
    "/v1/dev/bills/{bill_id}",
    response_model=Bill,
    responses=ERRORS,
    summary="A bill the calling app created",
)
async def get_bill(bill_id: str, caller: Caller = Depends(app_caller)) -> Any:
    return await threads.run(_get_bill, caller, bill_id)


def _cancel_bill(caller: Caller, bill_id: str) -> dict[str, Any]:
    from mno.billing import charges
    from mno.store.db import session_scope

    with session_scope() as s:
        charge = _charge_of(s, caller, bill_id)
        result = charges.cancel(s, str(charge.id))
        return _bill_dict(s, result if result is not None else charge)


@router.delete(
    "/v1/dev/bills/{bill_id}",
    response_model=Bill,
    responses=ERRORS,
    summary="Cancel a bill that is not invoiced yet",
)
async def cancel_bill(bill_id: str, caller: Caller = Depends(app_caller)) -> Any:
    return await threads.run(_cancel_bill, caller, bill_id)


# -- usage --------------------------------------------------------------------------


class UsageRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    tenant: str = Field(min_length=1, max_length=40)
    metric: str = Field(min_length=1, max_length=64)
    quantity: str = Field(min_length=1, max_length=40, pattern=r"^-?\d{1,15}(\.\d{1,8})?$")
    at: datetime | None = None
    properties: dict[str, Any] | None = None


class Usage(BaseModel):
    id: str
    tenant: str
    metric: str
    quantity: str
    at: str | None
    created: bool


def _record_usage(
    caller: Caller, body: UsageRequest, key: str | None
) -> tuple[dict[str, Any], int]:
    from mno.billing import usage
    from mno.store.db import session_scope

    quantity = _decimal(body.quantity, "quantity")
    at = body.at
    if at is not None and at.tzinfo is None:
        raise ApiError(422, "invalid", "at: give a timezone (e.g. Z)")
    with session_scope() as s:
        tenant_key = billable(s, caller, body.tenant)
        props = dict(body.properties or {})
        props.setdefault("app", caller.app_code)
        event, created = usage.record(
            s,
            tenant_key,
            body.metric,
            quantity,
            at=at,
            idempotency_key=f"{caller.app_code}:{key}" if key else None,
            properties=props,
        )
        data = {
            "id": str(event.id),
            "tenant": tenant_key,
            "metric": body.metric,
            "quantity": str(getattr(event, "quantity", quantity)),
            "at": audit.jsonable(getattr(event, "at", None)),
            "created": created,
        }
        return data, 201 if created else 200


@router.post(
    "/v1/dev/usage",
    response_model=Usage,
    status_code=201,
    responses={**ERRORS, 200: {"model": Usage, "description": "Replayed usage"}},
    summary="Record usage of a metered metric for a customer",
)
async def record_usage(
    body: UsageRequest,
    caller: Caller = Depends(app_caller),
    idempotency_key: str | None = IdempotencyKey,
) -> Any:
    data, status = await threads.run(_record_usage, caller, body, idempotency_key)
    return JSONResponse(data, status_code=status)
