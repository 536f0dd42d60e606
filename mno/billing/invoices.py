"""Invoice lifecycle once a run (``run``, rated by ``tenant_rating``) or an operator
(``manual``) wrote the drafts: issue (gapless number per issuer, series and year, prepaid
credits drawn down), pay, flag overdue. Each step posts to the tenant's ``ledger``.
Credit notes, refunds and voiding are in ``credit_notes``."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import timedelta
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from mno import clock
from mno.billing.ledger import apply_credits, expire_credits, ledger_add
from mno.errors import BadInput, InvalidTransition, NotFound
from mno.money import to_minor
from mno.store import audit, leases, outbox, paging
from mno.store.models.billing import Invoice, InvoiceCounter, InvoiceLine
from mno.store.models.tenancy import Tenant
from mno.store.types import table_of
from mno.tenancy import tenants

T_CNT = table_of(InvoiceCounter)
DUE_DAYS = 30


def get(session: Session, invoice_id: str | uuid.UUID, lock: bool = False) -> Invoice:
    try:
        iid = invoice_id if isinstance(invoice_id, uuid.UUID) else uuid.UUID(str(invoice_id))
    except ValueError:
        inv = session.exec(select(Invoice).where(Invoice.number == str(invoice_id))).first()
        if inv is None:
            raise NotFound(f"invoice {invoice_id} not found") from None
        iid = inv.id
    q = select(Invoice).where(Invoice.id == iid)
    if lock:
        q = leases.for_update(session, q)
    inv = session.exec(q).first()
    if inv is None:
        raise NotFound(f"invoice {invoice_id} not found")
    return inv


def lines(session: Session, inv: Invoice) -> list[InvoiceLine]:
    return list(
        session.exec(
            select(InvoiceLine)
            .where(InvoiceLine.invoice_id == inv.id)
            .order_by(InvoiceLine.line_key)
        )
    )


def list_invoices(
    session: Session,
    tenant_key: str | None = None,
    status: str | None = None,
    period: str | None = None,
    limit: int = 100,
) -> list[Invoice]:
    q = _invoices(session, tenant_key, status, period)
    return list(session.exec(q.order_by(col(Invoice.created_at).desc()).limit(limit)))


_INVOICE_ORDER = [col(Invoice.created_at), col(Invoice.id)]


def _invoices(
    session: Session, tenant_key: str | None, status: str | None, period: str | None
) -> Any:
    q = select(Invoice)
    if tenant_key:
        q = q.where(Invoice.tenant_id == tenants.get(session, tenant_key).id)
    if status:
        q = q.where(Invoice.status == status)
    if period:
        q = q.where(Invoice.period == period)
    return q


def page_invoices(
    session: Session,
    tenant_key: str | None = None,
    status: str | None = None,
    period: str | None = None,
    *,
    after: str | None = None,
    limit: int = paging.DEFAULT_LIMIT,
) -> paging.Page[Invoice]:
    """One page of invoices, newest first, after the cursor ``after``."""
    q = _invoices(session, tenant_key, status, period)
    return paging.page_of(session, q, _INVOICE_ORDER, after, limit, descending=True)


def stream_invoices(
    session: Session,
    tenant_key: str | None = None,
    status: str | None = None,
    period: str | None = None,
    *,
    after: str | None = None,
) -> Iterator[Invoice]:
    """Every invoice, newest first, read a chunk at a time."""
    q = _invoices(session, tenant_key, status, period)
    return paging.each(session, q, _INVOICE_ORDER, after, descending=True)


def next_number(session: Session, issuer: str, year: int, series: str = "INV") -> str:
    """Bump the counter row of ``series`` (``INV`` invoices, ``CN`` credit notes) under
    its row lock, inside the issuing transaction: the number is used iff the transaction
    commits, so numbers never gap and never stall."""
    for _ in range(2):
        row = session.execute(
            sa.update(T_CNT)
            .where(T_CNT.c.issuer == issuer, T_CNT.c.series == series, T_CNT.c.year == year)
            .values(last=T_CNT.c.last + 1, updated_at=clock.now())
            .returning(T_CNT.c.last)
        ).first()
        if row is not None:
            return f"{series}-{year}-{row[0]:06d}"
        try:
            with session.begin_nested():
                session.add(InvoiceCounter(issuer=issuer, series=series, year=year, last=0))
                session.flush()
        except IntegrityError:
            pass
    raise RuntimeError("invoice counter unavailable")


def payload(inv: Invoice, key: str) -> dict[str, Any]:
    """The payload of every ``invoice.*`` event."""
    return {
        "id": str(inv.id),
        "tenant": key,
        "number": inv.number,
        "status": inv.status,
        "currency": inv.currency,
        "total_minor": inv.total_minor,
        "period": inv.period,
    }


def issue(session: Session, invoice_id: str, due_days: int = DUE_DAYS) -> Invoice:
    inv = get(session, invoice_id, lock=True)
    if inv.status != "draft":
        raise InvalidTransition(f"invoice {inv.number or inv.id} is {inv.status}, not draft")
    before = audit.snapshot(inv)
    now = clock.now()
    inv.number = next_number(session, inv.issuer, now.year)
    inv.status = "issued"
    inv.issued_at = now
    inv.due_at = now + timedelta(days=due_days)
    # credits last (after tax): live prepaid credit pays what it can; expired credit first
    # goes to the ledger as an expiry and is not applied
    expire_credits(session, tenant_id=inv.tenant_id, currency=inv.currency, now=now)
    applied = apply_credits(session, inv.tenant_id, inv.currency, inv.total_minor, now)
    inv.credit_minor, inv.total_minor = applied, inv.total_minor - applied
    if inv.total_minor == 0:
        inv.status, inv.paid_at = "paid", now
    inv.touch()
    session.add(inv)
    ledger_add(
        session,
        inv.tenant_id,
        inv.currency,
        "invoice",
        inv.total_minor + applied,
        inv.number,
        inv.id,
    )
    t = tenants.get(session, inv.tenant_id)
    audit.record(
        session,
        "invoice.issue",
        target_type="invoice",
        target_id=inv.id,
        target=inv.number or "",
        before=before,
        after=audit.snapshot(inv),
        tenant_id=inv.tenant_id,
    )
    outbox.emit(session, "invoice.issued", payload(inv, t.key), inv.tenant_id)
    return inv


def pay(
    session: Session,
    invoice_id: str,
    amount_minor: int | None = None,
    reference: str | None = None,
    *,
    amount: Decimal | None = None,
) -> Invoice:
    """Record a payment of ``amount_minor``, or of ``amount`` in the invoice's currency
    (default: what is due)."""
    inv = get(session, invoice_id, lock=True)
    if amount is not None:
        amount_minor = to_minor(amount, inv.currency)
    if inv.status != "issued":
        raise InvalidTransition(f"invoice {inv.number or inv.id} is {inv.status}, not issued")
    due = inv.total_minor - inv.paid_minor
    paying = due if amount_minor is None else amount_minor
    if paying <= 0 or paying > due:
        raise BadInput(f"amount must be between 1 and {due} minor units")
    before = audit.snapshot(inv)
    inv.paid_minor += paying
    if inv.paid_minor == inv.total_minor:
        inv.status = "paid"
        inv.paid_at = clock.now()
    inv.touch()
    session.add(inv)
    ledger_add(
        session, inv.tenant_id, inv.currency, "payment", -paying, reference or inv.number, inv.id
    )
    t = tenants.get(session, inv.tenant_id)
    audit.record(
        session,
        "invoice.pay",
        target_type="invoice",
        target_id=inv.id,
        target=inv.number or "",
        before=before,
        after=audit.snapshot(inv),
        tenant_id=inv.tenant_id,
    )
    if inv.status == "paid":
        outbox.emit(session, "invoice.paid", payload(inv, t.key), inv.tenant_id)
    return inv


def flag_overdue(session: Session, grace_days: int = 0, suspend: bool = False) -> int:
    """Issued invoices unpaid past due + grace: tenant.in_arrears, optionally suspend."""
    cutoff = clock.now() - timedelta(days=grace_days)
    rows = session.exec(
        select(Invoice).where(
            Invoice.status == "issued",
            col(Invoice.due_at) < cutoff,
            col(Invoice.kind).in_(("period", "manual")),
        )
    ).all()
    flagged = 0
    for inv in rows:
        t = session.get(Tenant, inv.tenant_id)
        if t is None or t.in_arrears:
            continue
        t.in_arrears = True
        session.add(t)
        outbox.emit(session, "invoice.overdue", payload(inv, t.key), t.id)
        audit.record(
            session,
            "tenant.in_arrears",
            target_type="tenant",
            target_id=t.id,
            target=t.key,
            after={"in_arrears": True},
            tenant_id=t.id,
        )
        if suspend and t.status == "active":
            tenants.suspend(session, t.key, f"invoice {inv.number} overdue")
        flagged += 1
    return flagged
