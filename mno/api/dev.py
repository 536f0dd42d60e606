"""The Developer API: an app lists its customers and submits bills and usage, and
changes its own listing (name, thumbnail, metadata) on behalf of a tenant with edit access.

Bills and usage go through ``mno.billing`` (charges and usage events); both honour an
``Idempotency-Key`` header. An app sees only the bills it created: another app's bill
is answered 404.
"""

from __future__ import annotations

import hashlib
import math
import time
import uuid
from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal, InvalidOperation
from typing import Any

import orjson
from fastapi import APIRouter, Depends, Header, Query, Response
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field, field_validator
from sqlmodel import col, select

from mno import money
from mno.access import customers as app_customers
from mno.api import config, threads
from mno.api.auth import Caller, app_caller
from mno.api.errors import ERRORS, READ, ApiError, ApiRoute
from mno.api.group_commit import GroupCommit
from mno.billing import charges, usage_batch
from mno.billing.usage_batch import UsagePost
from mno.errors import BadInput, NotFound
from mno.store import audit
from mno.store.db import session_scope
from mno.store.models.billing import Charge
from mno.store.models.tenancy import Tenant
from mno.tenancy import apps, tenants

router = APIRouter(route_class=ApiRoute, tags=["developer"])

IDEMPOTENCY_KEY_MAX = 200
IdempotencyKey = Header(
    default=None,
    alias="Idempotency-Key",
    max_length=IDEMPOTENCY_KEY_MAX,
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


def _customers(caller: Caller, limit: int, after: str | None) -> dict[str, Any]:
    with session_scope(write=False) as s:
        ids = app_customers.customer_ids(s, caller.app)
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
    responses=READ,
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
    try:
        tenant = tenants.get(session, tenant_key)
    except NotFound as exc:
        raise ApiError(404, "not_found", f"tenant {tenant_key} not found") from exc
    if app_customers.is_customer(session, caller.app, tenant):
        return tenant
    allowed, _ = apps.check_access(session, apps.get(session, caller.app_id), tenant)
    if not allowed:
        raise ApiError(403, "forbidden", f"{tenant_key} is not a customer of {caller.app_code}")
    return tenant


class AppChange(BaseModel):
    model_config = ConfigDict(extra="forbid")

    tenant: str = Field(
        min_length=1, max_length=40, description="Tenant acting: it needs edit access."
    )
    name: str | None = Field(default=None, min_length=1, max_length=200)
    thumbnail: str | None = Field(
        default=None, max_length=500, description="An https URL; empty clears it."
    )
    metadata: dict[str, Any] | None = Field(default=None, description="A JSON object, 4 KB.")


class AppListing(BaseModel):
    code: str
    name: str
    access: str
    owner: str
    thumbnail: str | None
    metadata: dict[str, Any]
    updated_at: str = Field(description="UTC, ending with Z.")


def _change_app(caller: Caller, body: AppChange) -> dict[str, Any]:
    with session_scope() as s:
        try:
            tenant = tenants.get(s, body.tenant)
        except NotFound as exc:
            raise ApiError(404, "not_found", f"tenant {body.tenant} not found") from exc
        allowed, why = apps.check_access(s, apps.get(s, caller.app_id), tenant, need="edit")
        if not allowed:
            raise ApiError(
                403, "forbidden", f"{tenant.key} may not change {caller.app_code}: {why}"
            )
        row = apps.update(
            s,
            caller.app_code,
            by=tenant.key,
            name=body.name,
            thumbnail=body.thumbnail,
            metadata=body.metadata,
        )
        view = apps.view(s, row).as_dict()
    return {k: view[k] for k in AppListing.model_fields}


@router.patch(
    "/v1/dev/app",
    response_model=AppListing,
    responses=ERRORS,
    summary="Change the calling app's name, thumbnail or metadata for a tenant with edit access",
)
async def change_app(body: AppChange, caller: Caller = Depends(app_caller)) -> Any:
    return await threads.run(_change_app, caller, body)


def scoped_key(caller: Caller, key: str | None) -> str | None:
    """The stored idempotency key: the app's code and the client's key (hashed when the
    pair would not fit the 200-character column), so apps never collide."""
    if not key:
        return None
    scoped = f"{caller.app_code}:{key}"
    if len(scoped) <= 200:
        return scoped

    return f"{caller.app_code}:sha256:{hashlib.sha256(key.encode()).hexdigest()}"


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
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"tenant": "acme", "amount": "12.50", "currency": "USD", "description": "Setup"}
            ]
        },
    )

    tenant: str = Field(min_length=1, max_length=40)
    amount: str = Field(
        min_length=1,
        max_length=40,
        pattern=r"^-?\d{1,15}(\.\d{1,8})?$",
        description='Decimal amount as a string, e.g. "12.50".',
    )
    currency: str = Field(min_length=3, max_length=3, pattern=r"^[A-Za-z]{3}$")
    description: str = Field(min_length=1, max_length=500)


class Money(BaseModel):
    """Every amount of money the API answers: ``{"amount": "83.22", "currency": "EUR"}``."""

    amount: str = Field(description="A plain decimal with the currency's decimals, e.g. 83.22.")
    currency: str = Field(description="ISO 4217 code.")


class Bill(BaseModel):
    id: str
    tenant: str
    amount: Money
    currency: str
    description: str
    status: str
    app: str | None
    created_at: str | None


def _bill_dict(session: Any, charge: Any) -> dict[str, Any]:
    tenant = session.get(Tenant, charge.tenant_id) if hasattr(charge, "tenant_id") else None
    return {
        "id": str(charge.id),
        "tenant": tenant.key if tenant else str(getattr(charge, "tenant_id", "")),
        "amount": dict(money.money_json(charge.amount_minor, charge.currency)),
        "currency": charge.currency,
        "description": getattr(charge, "description", "") or "",
        "status": str(getattr(charge, "status", "")),
        "app": getattr(charge, "app_code", None),
        "created_at": audit.jsonable(getattr(charge, "created_at", None)),
    }


def _charge_of(session: Any, caller: Caller, bill_id: str) -> Any:
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
    found = session.exec(
        select(Charge.id).where(Charge.tenant_id == tenant_id, Charge.idempotency_key == idem)
    ).first()
    return found is not None


def _create_bill(caller: Caller, body: BillRequest, key: str | None) -> tuple[dict[str, Any], int]:
    amount = _decimal(body.amount, "amount")
    with session_scope() as s:
        tenant = may_bill(s, caller, body.tenant)
        idem = scoped_key(caller, key)
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
    with session_scope(write=False) as s:
        return _bill_dict(s, _charge_of(s, caller, bill_id))


@router.get(
    "/v1/dev/bills/{bill_id}",
    response_model=Bill,
    responses=READ,
    summary="A bill the calling app created",
)
async def get_bill(bill_id: str, caller: Caller = Depends(app_caller)) -> Any:
    return await threads.run(_get_bill, caller, bill_id)


def _cancel_bill(caller: Caller, bill_id: str) -> dict[str, Any]:
    with session_scope() as s:
        charge = _charge_of(s, caller, bill_id)
        result = charges.cancel(s, str(charge.id))
        return _bill_dict(s, result if result is not None else charge)


@router.delete(
    "/v1/dev/bills/{bill_id}",
    response_model=Bill,
    responses=READ,
    summary="Cancel a bill that is not invoiced yet",
)
async def cancel_bill(bill_id: str, caller: Caller = Depends(app_caller)) -> Any:
    return await threads.run(_cancel_bill, caller, bill_id)


# -- usage --------------------------------------------------------------------------


class UsageRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"tenant": "acme", "metric": "api_calls", "quantity": "3"},
                {
                    "tenant": "acme",
                    "metric": "api_calls",
                    "quantity": "1.5",
                    "at": "2026-01-31T12:00:00Z",
                    "properties": {"endpoint": "/contacts"},
                },
            ]
        },
    )

    tenant: str = Field(min_length=1, max_length=40)
    metric: str = Field(min_length=1, max_length=64)
    quantity: str = Field(min_length=1, max_length=40, pattern=r"^-?\d{1,15}(\.\d{1,8})?$")
    at: datetime | None = None
    properties: dict[str, Any] | None = None

    @field_validator("at", mode="before")
    @classmethod
    def _time_text(cls, value: Any) -> Any:
        """A time is an ISO 8601 string, as the schema says; a number is not read as
        seconds since 1970."""
        if value is not None and not isinstance(value, str | datetime):
            raise ValueError("give an ISO 8601 time, e.g. 2026-01-31T12:00:00Z")
        return value

    @field_validator("properties")
    @classmethod
    def _finite(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        """JSON has no NaN or Infinity: refuse them here, whatever the store accepts."""
        stack: list[Any] = [value]
        while stack:
            item = stack.pop()
            if isinstance(item, float) and not math.isfinite(item):
                raise ValueError("NaN and Infinity are not JSON numbers")
            if isinstance(item, dict):
                stack.extend(item.values())
            elif isinstance(item, list):
                stack.extend(item)
        return value


class Usage(BaseModel):
    id: str
    tenant: str
    metric: str
    quantity: str
    at: str | None
    created: bool


def _write_usage(items: Sequence[tuple[Caller, Any]]) -> list[Any]:
    """One transaction for a batch of usage posts (see ``group_commit``)."""
    out: list[Any] = [None] * len(items)
    with session_scope() as s:
        posts: list[Any] = []
        index: list[int] = []
        for n, (caller, post) in enumerate(items):
            try:
                billable(s, caller, post.tenant)
            except ApiError as exc:
                out[n] = exc
                continue
            posts.append(post)
            index.append(n)
        for n, outcome in zip(index, usage_batch.record_batch(s, posts), strict=True):
            out[n] = outcome
    return out


_usage_writer: GroupCommit[tuple[Caller, Any], Any] = GroupCommit(_write_usage)


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
    data, status = await post_usage(caller, body, idempotency_key)
    return Response(orjson.dumps(data), status_code=status, media_type="application/json")


async def post_usage(
    caller: Caller, body: UsageRequest, idempotency_key: str | None
) -> tuple[dict[str, Any], int]:
    """Record one usage post through the group commit; (answer, 201 or 200 on replay)."""
    quantity = _decimal(body.quantity, "quantity")
    if body.at is not None and body.at.tzinfo is None:
        raise ApiError(422, "invalid", "at: give a timezone (e.g. Z)")
    props = dict(body.properties or {})
    props.setdefault("app", caller.app_code)
    post = UsagePost(
        tenant=body.tenant,
        metric=body.metric,
        quantity=quantity,
        at=body.at,
        idempotency_key=scoped_key(caller, idempotency_key),
        properties=props,
    )
    event, created = await _usage_writer.submit((caller, post))
    data = {
        "id": str(event.id),
        "tenant": body.tenant,
        "metric": event.metric_code,
        "quantity": str(event.quantity),
        "at": audit.jsonable(event.at),
        "created": created,
    }
    return data, 201 if created else 200
