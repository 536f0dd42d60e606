"""Hub API: subscriptions (create, change, cancel) and invoices (list, show, explain,
PDF, pay, credit).

A tenant's members read its subscriptions and invoices (``billing:read``); its admins
subscribe, change and cancel (the ``purchase`` action, ``billing:write``). Recording a
payment and booking a credit note are the platform's (an operator with
``manage_billing``), as ``mno invoice pay`` and ``mno invoice credit`` are. Invoices are
shaped as ``mno invoice show -o json`` (and the Developer API) shape them.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from fastapi import APIRouter, Depends, Path, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from mno.access import scopes
from mno.access.scopes import Principal
from mno.api import idempotency, threads
from mno.api.bearer import hub_principal
from mno.api.dev import Money
from mno.api.dev_invoices import CreditNoteOut, InvoiceOut
from mno.api.errors import ERRORS, READ, ApiRoute
from mno.api.hub import KEY, MAX_LIMIT, json_response, next_link
from mno.billing import credit_notes, export, invoices, subscriptions
from mno.errors import NotFound
from mno.money import to_decimal, to_minor
from mno.store.audit import jsonable
from mno.store.db import session_scope
from mno.store.models.billing import Invoice
from mno.store.models.billing import Subscription as SubscriptionRow
from mno.store.models.tenancy import Tenant

router = APIRouter(route_class=ApiRoute, tags=["hub billing"])

SUB_ID = Path(max_length=64, description="The subscription's id")
INVOICE_ID = Path(max_length=64, description="The invoice's id or number")
DECIMAL = r"^\d{1,15}(\.\d{1,8})?$"


class Subscription(BaseModel):
    id: str
    tenant: str
    plan: str
    app: str | None
    status: str
    started_at: datetime
    cancel_at: datetime | None
    coupon: str | None
    cycle_limit: int | None


class SubscriptionList(BaseModel):
    subscriptions: list[Subscription]
    next: str | None


class SubscriptionCreate(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"plan": "pro"}]})

    plan: str = Field(max_length=64)
    app: str | None = Field(None, max_length=64)
    coupon: str | None = Field(None, max_length=64)
    cycle_limit: int | None = Field(None, ge=1)
    invoice_now: bool = Field(False, description="Bill the first period at once (a draft)")


class SubscriptionCancel(BaseModel):
    model_config = ConfigDict(extra="forbid")

    at_period_end: bool = False
    credit: bool = Field(True, description="Credit the unused days already billed")


class PlanChange(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"plan": "pro"}]})

    plan: str = Field(max_length=64)
    at_period_end: bool = False


class InvoiceSummary(BaseModel):
    id: str
    number: str | None
    tenant: str
    period: str
    kind: str
    status: str
    currency: str
    total: Money
    amount_due: Money
    issued_at: str | None
    due_at: str | None


class InvoiceList(BaseModel):
    invoices: list[InvoiceSummary]
    next: str | None


class Explained(BaseModel):
    invoice: InvoiceOut
    text: str = Field(description="The arithmetic of every line, as `mno invoice explain`")


class PaymentIn(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"amount": "49.00"}]})

    amount: str | None = Field(None, pattern=DECIMAL, description="Default: what is due")
    method: str | None = Field(None, max_length=40)
    reference: str | None = Field(None, max_length=200)


class PaymentOut(BaseModel):
    id: str
    amount: Money
    applied: Money
    overpaid: Money
    method: str | None
    reference: str | None
    created_at: str


class Paid(InvoiceSummary):
    paid: Money
    payment: PaymentOut


class CreditIn(BaseModel):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"reason": "goodwill"}]}
    )

    reason: str = Field(min_length=1, max_length=500)
    line: int | None = Field(None, ge=1)
    amount: str | None = Field(None, pattern=DECIMAL)
    refund: bool = False
    method: str | None = Field(None, max_length=40)
    reference: str | None = Field(None, max_length=200)


def _sub_view(s: Any, sub: SubscriptionRow) -> Subscription:
    tenant = s.get(Tenant, sub.tenant_id)
    return Subscription(
        id=str(sub.id),
        tenant=tenant.key if tenant else "",
        plan=sub.plan_code,
        app=sub.app_code,
        status=sub.status,
        started_at=sub.started_at,
        cancel_at=sub.cancel_at,
        coupon=sub.coupon_code,
        cycle_limit=sub.cycle_limit,
    )


def _sub_of(s: Any, principal: Principal, sub_id: str, action: str, scope: str) -> str:
    """The subscription's id when the caller may do ``action`` on its tenant; a hidden
    tenant's subscription is not found, as a missing one."""
    scopes.require_scope(principal, scope)
    try:
        sub = subscriptions.get(s, sub_id)
    except (NotFound, ValueError):
        raise NotFound(f"subscription {sub_id} not found") from None
    tenant = s.get(Tenant, sub.tenant_id)
    try:
        scopes.authorize(s, principal, tenant.key if tenant else "", action, scope)
    except NotFound:
        raise NotFound(f"subscription {sub_id} not found") from None
    return str(sub.id)


def _invoice_of(s: Any, principal: Principal, invoice_id: str, scope: str) -> Invoice:
    scopes.require_scope(principal, scope)
    try:
        inv = invoices.get(s, invoice_id)
    except NotFound:
        raise NotFound(f"invoice {invoice_id} not found", "see `mno invoice list`") from None
    tenant = s.get(Tenant, inv.tenant_id)
    try:
        scopes.authorize(s, principal, tenant.key if tenant else "", "read", scope)
    except NotFound:
        raise NotFound(f"invoice {invoice_id} not found", "see `mno invoice list`") from None
    return inv


def _full(s: Any, inv: Invoice) -> dict[str, Any]:
    data, lines = export.view(s, inv)
    return dict(jsonable({"credit_note_for": None, "reason": None, **data, "lines": lines}))


# -- subscriptions ------------------------------------------------------------------------


@router.get("/v1/hub/tenants/{key}/subscriptions", response_model=SubscriptionList, responses=READ)
async def list_subscriptions(
    request: Request,
    key: str = KEY,
    principal: Principal = Depends(hub_principal),
    status: str | None = Query(None, max_length=16),
    limit: int = Query(100, ge=1, le=MAX_LIMIT),
    cursor: str | None = Query(None, max_length=500),
) -> Response:
    """A tenant's subscriptions, oldest first."""

    def work() -> SubscriptionList:
        with session_scope(write=False) as s:
            tenant = scopes.authorize(s, principal, key, "read", "billing:read")
            page = subscriptions.page_subscriptions(
                s, tenant.key, status, after=cursor, limit=limit
            )
            return SubscriptionList(
                subscriptions=[_sub_view(s, sub) for sub in page.rows], next=page.next
            )

    page = await threads.run(work)
    return json_response(page, headers=next_link(request, "cursor", page.next))


@router.post(
    "/v1/hub/tenants/{key}/subscriptions",
    status_code=201,
    response_model=Subscription,
    responses=ERRORS,
)
async def create_subscription(
    body: SubscriptionCreate,
    request: Request,
    key: str = KEY,
    principal: Principal = Depends(hub_principal),
    idempotency_key: str | None = idempotency.IdempotencyHeader,
) -> Response:
    """Subscribe a tenant to a plan (its admins: the `purchase` action)."""

    def work(s: Any) -> tuple[BaseModel, str | None]:
        tenant = scopes.authorize(s, principal, key, "purchase", "billing:write")
        sub = subscriptions.create(
            s,
            tenant.key,
            body.plan,
            app_code=body.app,
            coupon=body.coupon,
            cycle_limit=body.cycle_limit,
            invoice_now=body.invoice_now,
        )
        return _sub_view(s, sub), f"/v1/hub/subscriptions/{sub.id}"

    return await idempotency.run(request, principal, idempotency_key, 201, work)


@router.get("/v1/hub/subscriptions/{sub_id}", response_model=Subscription, responses=READ)
async def get_subscription(
    sub_id: str = SUB_ID, principal: Principal = Depends(hub_principal)
) -> Response:
    """One subscription."""

    def work() -> Subscription:
        with session_scope(write=False) as s:
            found = _sub_of(s, principal, sub_id, "read", "billing:read")
            return _sub_view(s, subscriptions.get(s, found))

    return json_response(await threads.run(work))


@router.post("/v1/hub/subscriptions/{sub_id}/cancel", response_model=Subscription, responses=ERRORS)
async def cancel_subscription(
    request: Request,
    body: SubscriptionCancel | None = None,
    sub_id: str = SUB_ID,
    principal: Principal = Depends(hub_principal),
    idempotency_key: str | None = idempotency.IdempotencyHeader,
) -> Response:
    """Cancel now (the unused days billed become credit) or at the period's end."""
    opts = body or SubscriptionCancel.model_validate({})

    def work(s: Any) -> tuple[BaseModel, str | None]:
        found = _sub_of(s, principal, sub_id, "purchase", "billing:write")
        sub = subscriptions.cancel(s, found, at_period_end=opts.at_period_end, credit=opts.credit)
        return _sub_view(s, sub), None

    return await idempotency.run(request, principal, idempotency_key, 200, work)


@router.post("/v1/hub/subscriptions/{sub_id}/change", response_model=Subscription, responses=ERRORS)
async def change_subscription(
    body: PlanChange,
    request: Request,
    sub_id: str = SUB_ID,
    principal: Principal = Depends(hub_principal),
    idempotency_key: str | None = idempotency.IdempotencyHeader,
) -> Response:
    """Move to another plan: the answer is the new subscription."""

    def work(s: Any) -> tuple[BaseModel, str | None]:
        found = _sub_of(s, principal, sub_id, "purchase", "billing:write")
        sub = subscriptions.change_plan(s, found, body.plan, at_period_end=body.at_period_end)
        return _sub_view(s, sub), f"/v1/hub/subscriptions/{sub.id}"

    return await idempotency.run(request, principal, idempotency_key, 200, work)


# -- invoices -----------------------------------------------------------------------------


@router.get("/v1/hub/tenants/{key}/invoices", response_model=InvoiceList, responses=READ)
async def list_invoices(
    request: Request,
    key: str = KEY,
    principal: Principal = Depends(hub_principal),
    status: str | None = Query(None, max_length=16),
    period: str | None = Query(None, max_length=7, pattern=r"^\d{4}-\d{2}$"),
    limit: int = Query(100, ge=1, le=MAX_LIMIT),
    cursor: str | None = Query(None, max_length=500),
) -> Response:
    """A tenant's invoices and credit notes, newest first."""

    def work() -> InvoiceList:
        with session_scope(write=False) as s:
            tenant = scopes.authorize(s, principal, key, "read", "billing:read")
            page = invoices.page_invoices(s, tenant.key, status, period, after=cursor, limit=limit)
            rows = [jsonable(export.summary(s, inv)) for inv in page.rows]
            return InvoiceList(invoices=[InvoiceSummary(**r) for r in rows], next=page.next)

    page = await threads.run(work)
    return json_response(page, headers=next_link(request, "cursor", page.next))


@router.get("/v1/hub/invoices/{invoice_id}", response_model=CreditNoteOut, responses=READ)
async def get_invoice(
    invoice_id: str = INVOICE_ID, principal: Principal = Depends(hub_principal)
) -> Response:
    """An invoice (or credit note) with its lines, as `mno invoice show -o json`."""

    def work() -> CreditNoteOut:
        with session_scope(write=False) as s:
            inv = _invoice_of(s, principal, invoice_id, "billing:read")
            return CreditNoteOut(**_full(s, inv))

    return json_response(await threads.run(work))


@router.get("/v1/hub/invoices/{invoice_id}/explain", response_model=Explained, responses=READ)
async def explain_invoice(
    invoice_id: str = INVOICE_ID, principal: Principal = Depends(hub_principal)
) -> Response:
    """How each line was computed, then discount, tax and total."""

    def work() -> Explained:
        with session_scope(write=False) as s:
            inv = _invoice_of(s, principal, invoice_id, "billing:read")
            data, lines = export.view(s, inv)
            text = export.explain_text(inv, data, lines)
            return Explained(invoice=InvoiceOut(**_full(s, inv)), text=text)

    return json_response(await threads.run(work))


@router.get(
    "/v1/hub/invoices/{invoice_id}/pdf",
    response_class=Response,
    responses={
        **READ,
        200: {"content": {"application/pdf": {"schema": {"type": "string", "format": "binary"}}}},
    },
)
async def invoice_pdf(
    invoice_id: str = INVOICE_ID, principal: Principal = Depends(hub_principal)
) -> Response:
    """The invoice as a PDF, from the tenant's (or the platform's) template."""
    from mno.billing import invoice_pdf as pdf

    def work() -> tuple[bytes, str]:
        with session_scope(write=False) as s:
            inv = _invoice_of(s, principal, invoice_id, "billing:read")
            page, directory = export.page(s, inv)
            name = inv.number or str(inv.id)
        return pdf.render_pdf(page, directory), name

    data, name = await threads.run(work)
    return Response(
        data,
        media_type="application/pdf",
        headers={"Content-Disposition": f'attachment; filename="{name}.pdf"'},
    )


@router.post("/v1/hub/invoices/{invoice_id}/pay", response_model=Paid, responses=ERRORS)
async def pay_invoice(
    request: Request,
    body: PaymentIn | None = None,
    invoice_id: str = INVOICE_ID,
    principal: Principal = Depends(hub_principal),
    idempotency_key: str | None = idempotency.IdempotencyHeader,
) -> Response:
    """Record a payment (the platform's: an operator with manage_billing)."""
    given = body or PaymentIn.model_validate({})

    def work(s: Any) -> tuple[BaseModel, str | None]:
        inv = _invoice_of(s, principal, invoice_id, "billing:write")
        scopes.require_operator(principal, "manage_billing")
        paid = (
            to_minor(to_decimal(given.amount), inv.currency) if given.amount is not None else None
        )
        payment = invoices.record_payment(
            s, str(inv.id), paid, method=given.method, reference=given.reference
        )
        return Paid(**jsonable(export.payment_view(s, payment))), None

    return await idempotency.run(request, principal, idempotency_key, 200, work)


@router.post(
    "/v1/hub/invoices/{invoice_id}/credit",
    status_code=201,
    response_model=CreditNoteOut,
    responses=ERRORS,
)
async def credit_invoice(
    body: CreditIn,
    request: Request,
    invoice_id: str = INVOICE_ID,
    principal: Principal = Depends(hub_principal),
    idempotency_key: str | None = idempotency.IdempotencyHeader,
) -> Response:
    """Book a credit note against an issued or paid invoice (an operator's)."""

    def work(s: Any) -> tuple[BaseModel, str | None]:
        inv = _invoice_of(s, principal, invoice_id, "billing:write")
        scopes.require_operator(principal, "manage_billing")
        booked = credit_notes.credit(
            s,
            str(inv.id),
            reason=body.reason,
            line=body.line,
            amount=Decimal(body.amount) if body.amount is not None else None,
            refund=body.refund,
            method=body.method,
            reference=body.reference,
        )
        view = jsonable(export.credit_view(s, booked.note, booked.refund))
        _, lines = export.view(s, booked.note)
        out = CreditNoteOut(**{**view, "lines": jsonable(lines)})
        return out, f"/v1/hub/invoices/{booked.note.id}"

    return await idempotency.run(request, principal, idempotency_key, 201, work)
