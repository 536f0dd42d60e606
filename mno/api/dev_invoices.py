"""The Developer API's invoices: an app reads the invoices and credit notes of its
customers, creates manual invoices for them and credits their invoices.

The routes are thin: ``mno.billing.manual`` writes a manual invoice, ``credit_notes`` a
credit note, ``export`` shapes both as ``invoice show -o json`` does (money as
``{"amount": "83.22", "currency": "EUR"}``, times in UTC with ``Z``). An app sees the
invoices of the tenants it may bill (its customers, or as the app's access rules allow);
another tenant's invoice is answered 404. Both POSTs honour an ``Idempotency-Key``: the
same key returns the first result (200), a key used for another request is a 409.
"""

from __future__ import annotations

import uuid
from typing import Any

import sqlalchemy as sa
from fastapi import APIRouter, Depends, Query
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from mno.api import threads
from mno.api.auth import Caller, app_caller
from mno.api.dev import IdempotencyKey, Money, may_bill, scoped_key
from mno.api.errors import ERRORS, READ, ApiError, ApiRoute
from mno.billing import credit_notes, export, invoices, manual
from mno.errors import NotFound
from mno.money import to_decimal
from mno.store.audit import jsonable
from mno.store.db import session_scope
from mno.store.models.billing import Invoice, LedgerEntry
from mno.tenancy import tenants

router = APIRouter(route_class=ApiRoute, tags=["developer"])

DECIMAL = r"^-?\d{1,15}(\.\d{1,8})?$"
POSITIVE = r"^\d{1,15}(\.\d{1,8})?$"


class Line(BaseModel):
    description: str
    kind: str
    quantity: str
    unit_price: str = Field(description="The unit price at full precision.")
    proration: str
    amount: Money
    period_start: str | None
    period_end: str | None
    detail: dict[str, Any] | None


class InvoiceOut(BaseModel):
    id: str
    number: str | None
    tenant: str
    period: str
    kind: str = Field(description="period, manual or credit_note")
    status: str = Field(description="draft, issued, partially_paid, paid or void")
    currency: str
    subtotal: Money
    discount: Money
    tax: Money
    credit: Money
    total: Money
    tax_note: str | None
    paid: Money
    amount_due: Money
    issued_at: str | None
    due_at: str | None
    paid_at: str | None
    credit_note_for: str | None = Field(None, description="A credit note: the invoice it credits.")
    reason: str | None = Field(None, description="A credit note: why.")
    lines: list[Line] = []


class Refund(BaseModel):
    amount: Money
    method: str | None
    reference: str | None


class CreditNoteOut(InvoiceOut):
    refund: Refund | None = None


class InvoicePage(BaseModel):
    invoices: list[InvoiceOut]
    next: str | None = Field(description="Pass as `after` for the next page.")


class CreditNotePage(BaseModel):
    credit_notes: list[CreditNoteOut]
    next: str | None = Field(description="Pass as `after` for the next page.")


class LineIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    description: str = Field(min_length=1, max_length=500)
    quantity: str = Field(min_length=1, max_length=40, pattern=DECIMAL)
    unit_price: str = Field(min_length=1, max_length=40, pattern=DECIMAL)
    tax_code: str | None = Field(None, min_length=1, max_length=32)


class ManualInvoiceRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "tenant": "acme",
                    "lines": [
                        {"description": "Migration work", "quantity": "3", "unit_price": "120.00"}
                    ],
                    "issue": True,
                }
            ]
        },
    )

    tenant: str = Field(min_length=1, max_length=40)
    currency: str | None = Field(None, pattern=r"^[A-Za-z]{3}$")
    lines: list[LineIn] = Field(min_length=1, max_length=200)
    issue: bool = Field(False, strict=True, description="Issue it at once (else it stays a draft).")


class CreditNoteRequest(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"reason": "Service outage"},
                {"reason": "Seat billed twice", "line": 1, "amount": "10.00"},
            ]
        },
    )

    reason: str = Field(min_length=1, max_length=500)
    line: int | None = Field(
        None, strict=True, ge=1, le=10_000, description="Credit this line (1-based)."
    )
    amount: str | None = Field(
        None, max_length=40, pattern=POSITIVE, description="Amount before tax (default: all)."
    )
    refund: bool = Field(
        False, strict=True, description="Return the money (default: to the balance)."
    )
    method: str | None = Field(None, min_length=1, max_length=32)
    reference: str | None = Field(None, max_length=200)


# -- reads ----------------------------------------------------------------------------


def _view(session: Session, inv: Invoice) -> dict[str, Any]:
    """``invoice show -o json``: the header, a credit note's refund, the lines."""
    data, lines = export.view(session, inv)
    data = {"credit_note_for": None, "reason": None, **data}
    if inv.kind == "credit_note":
        refund = session.exec(
            select(LedgerEntry).where(
                LedgerEntry.invoice_id == inv.id, LedgerEntry.type == "refund"
            )
        ).first()
        data["refund"] = export.credit_view(session, inv, refund)["refund"]
    return dict(jsonable({**data, "lines": lines}))


def _invoice_of(session: Session, caller: Caller, invoice_id: str, kind: str) -> Invoice:
    """An invoice (``kind`` ``invoice``) or credit note of a tenant the app may bill;
    404 for anything else."""
    missing = ApiError(404, "not_found", f"{kind.replace('_', ' ')} {invoice_id} not found")
    try:
        inv = invoices.get(session, invoice_id)
    except NotFound as exc:
        raise missing from exc
    if (inv.kind == "credit_note") != (kind == "credit_note"):
        raise missing
    try:
        may_bill(session, caller, tenants.get(session, inv.tenant_id).key)
    except ApiError as exc:
        raise missing from exc
    return inv


def _page(
    caller: Caller, tenant: str, notes: bool, limit: int, after: str | None
) -> dict[str, Any]:
    with session_scope(write=False) as s:
        t = may_bill(s, caller, tenant)
        q = select(Invoice).where(Invoice.tenant_id == t.id)
        q = (
            q.where(Invoice.kind == "credit_note")
            if notes
            else q.where(Invoice.kind != "credit_note")
        )
        if after:
            start = _invoice_of(s, caller, after, "credit_note" if notes else "invoice")
            q = q.where(
                sa.or_(
                    col(Invoice.created_at) < start.created_at,
                    sa.and_(
                        col(Invoice.created_at) == start.created_at, col(Invoice.id) < start.id
                    ),
                )
            )
        q = q.order_by(col(Invoice.created_at).desc(), col(Invoice.id).desc()).limit(limit + 1)
        rows = list(s.exec(q))
        items = [_view(s, inv) for inv in rows[:limit]]
    return {
        "credit_notes" if notes else "invoices": items,
        "next": str(rows[limit - 1].id) if len(rows) > limit else None,
    }


def _one(caller: Caller, invoice_id: str, kind: str) -> dict[str, Any]:
    with session_scope(write=False) as s:
        return _view(s, _invoice_of(s, caller, invoice_id, kind))


TenantQuery = Query(..., min_length=1, max_length=40, description="A customer's tenant key.")
LimitQuery = Query(50, ge=1, le=500)
AfterQuery = Query(None, max_length=64, description="The `next` of the previous page.")


@router.get(
    "/v1/dev/invoices",
    response_model=InvoicePage,
    responses=READ,
    summary="A customer's invoices (billing runs' and manual), newest first",
)
async def list_invoices(
    tenant: str = TenantQuery,
    limit: int = LimitQuery,
    after: str | None = AfterQuery,
    caller: Caller = Depends(app_caller),
) -> Any:
    return await threads.run(_page, caller, tenant, False, limit, after)


@router.get(
    "/v1/dev/invoices/{invoice_id}",
    response_model=InvoiceOut,
    responses=READ,
    summary="An invoice of a customer, with its lines (by id or number)",
)
async def get_invoice(invoice_id: str, caller: Caller = Depends(app_caller)) -> Any:
    return await threads.run(_one, caller, invoice_id, "invoice")


@router.get(
    "/v1/dev/credit-notes",
    response_model=CreditNotePage,
    responses=READ,
    summary="A customer's credit notes, newest first",
)
async def list_credit_notes(
    tenant: str = TenantQuery,
    limit: int = LimitQuery,
    after: str | None = AfterQuery,
    caller: Caller = Depends(app_caller),
) -> Any:
    return await threads.run(_page, caller, tenant, True, limit, after)


@router.get(
    "/v1/dev/credit-notes/{note_id}",
    response_model=CreditNoteOut,
    responses=READ,
    summary="A credit note of a customer, with its lines and refund (by id or number)",
)
async def get_credit_note(note_id: str, caller: Caller = Depends(app_caller)) -> Any:
    return await threads.run(_one, caller, note_id, "credit_note")


# -- writes ---------------------------------------------------------------------------


def _replay(tenant_id: uuid.UUID, idem: str | None, matches: Any) -> dict[str, Any] | None:
    """The first result of a repeated key (in a fresh read), or None when it is new."""
    if not idem:
        return None
    with session_scope(write=False) as s:
        found = invoices.by_idempotency_key(s, tenant_id, idem)
        if found is None:
            return None
        if not matches(found):
            raise ApiError(409, "conflict", "this Idempotency-Key was used for another request")
        return _view(s, found)


def _idempotent(caller: Caller, key: str | None, write: Any, tenant_of: Any, matches: Any) -> Any:
    """Run ``write`` once per idempotency key: a key seen before (or written by a
    concurrent request, the store's unique key says so) answers its first result, 200."""
    idem = scoped_key(caller, key)
    with session_scope(write=False) as s:
        tenant_id = tenant_of(s)
    before = _replay(tenant_id, idem, matches)
    if before is not None:
        return before, 200
    try:
        with session_scope() as s:
            data = write(s, idem)
    except IntegrityError:
        again = _replay(tenant_id, idem, matches)
        if again is None:
            raise
        return again, 200
    return data, 201


def _create_manual(
    caller: Caller, body: ManualInvoiceRequest, key: str | None
) -> tuple[dict[str, Any], int]:
    specs = [
        manual.check_line(
            manual.LineSpec(
                ln.description.strip(),
                to_decimal(ln.quantity),
                to_decimal(ln.unit_price),
                ln.tax_code,
            )
        )
        for ln in body.lines
    ]

    def tenant_of(s: Session) -> uuid.UUID:
        return uuid.UUID(str(may_bill(s, caller, body.tenant).id))

    def write(s: Session, idem: str | None) -> dict[str, Any]:
        inv = manual.create(
            s, body.tenant, specs, currency=body.currency, issue=body.issue, idempotency_key=idem
        )
        s.flush()
        return _view(s, inv)

    result: tuple[dict[str, Any], int] = _idempotent(
        caller, key, write, tenant_of, lambda found: found.kind == "manual"
    )
    return result


@router.post(
    "/v1/dev/invoices",
    response_model=InvoiceOut,
    status_code=201,
    responses={**ERRORS, 200: {"model": InvoiceOut, "description": "Replayed invoice"}},
    summary="Create a manual invoice for a customer (a draft, or issued)",
)
async def create_invoice(
    body: ManualInvoiceRequest,
    caller: Caller = Depends(app_caller),
    idempotency_key: str | None = IdempotencyKey,
) -> Any:
    data, status = await threads.run(_create_manual, caller, body, idempotency_key)
    return JSONResponse(data, status_code=status)


def _create_credit_note(
    caller: Caller, invoice_id: str, body: CreditNoteRequest, key: str | None
) -> tuple[dict[str, Any], int]:
    amount = to_decimal(body.amount) if body.amount is not None else None
    target: dict[str, uuid.UUID] = {}

    def tenant_of(s: Session) -> uuid.UUID:
        inv = _invoice_of(s, caller, invoice_id, "invoice")
        target["id"] = inv.id
        return inv.tenant_id

    def write(s: Session, idem: str | None) -> dict[str, Any]:
        booked = credit_notes.credit(
            s,
            str(target["id"]),
            reason=body.reason,
            line=body.line,
            amount=amount,
            refund=body.refund,
            method=body.method,
            reference=body.reference,
            idempotency_key=idem,
        )
        s.flush()
        return _view(s, booked.note)

    result: tuple[dict[str, Any], int] = _idempotent(
        caller,
        key,
        write,
        tenant_of,
        lambda found: found.kind == "credit_note" and found.credit_note_for == target["id"],
    )
    return result


@router.post(
    "/v1/dev/invoices/{invoice_id}/credit-notes",
    response_model=CreditNoteOut,
    status_code=201,
    responses={**ERRORS, 200: {"model": CreditNoteOut, "description": "Replayed credit note"}},
    summary="Credit a customer's issued or paid invoice (all, a line, or an amount)",
)
async def create_credit_note(
    invoice_id: str,
    body: CreditNoteRequest,
    caller: Caller = Depends(app_caller),
    idempotency_key: str | None = IdempotencyKey,
) -> Any:
    data, status = await threads.run(_create_credit_note, caller, invoice_id, body, idempotency_key)
    return JSONResponse(data, status_code=status)
