"""Invoice lifecycle once a run (``run``, rated by ``tenant_rating``) or an operator
(``manual``) wrote the drafts: issue (gapless number per issuer, series and year, prepaid
credits drawn down), pay (in part, in full, or beyond: the excess becomes prepaid
credit), flag overdue. Each step posts to the tenant's ``ledger``.
Credit notes, refunds and voiding are in ``credit_notes``."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from mno import clock
from mno.billing.ledger import apply_credits, expire_credits, ledger_add
from mno.errors import BadInput, InvalidTransition, NotFound
from mno.money import from_minor, to_minor
from mno.store import audit, leases, lookup, outbox, paging
from mno.store.models.billing import CreditGrant, Invoice, InvoiceCounter, InvoiceLine, LedgerEntry
from mno.store.models.tenancy import Tenant
from mno.store.types import table_of
from mno.tenancy import tenants

T_CNT = table_of(InvoiceCounter)
DUE_DAYS = 30


def get(session: Session, invoice_id: str | uuid.UUID, lock: bool = False) -> Invoice:
    """An invoice by id, unique id prefix or number."""
    if isinstance(invoice_id, uuid.UUID):
        iid = invoice_id
    else:
        inv = session.exec(select(Invoice).where(Invoice.number == str(invoice_id))).first()
        if inv is None:
            inv = lookup.find(session, Invoice, invoice_id, "invoice")
        if inv is None:
            raise NotFound(f"invoice {invoice_id} not found", "see `mno invoice list`")
        iid = inv.id
    q = select(Invoice).where(Invoice.id == iid)
    if lock:
        q = leases.for_update(session, q)
    inv = session.exec(q).first()
    if inv is None:
        raise NotFound(f"invoice {invoice_id} not found")
    return inv


def by_idempotency_key(session: Session, tenant_id: uuid.UUID, key: str) -> Invoice | None:
    """The invoice or credit note created with ``key`` for the tenant, if any."""
    return session.exec(
        select(Invoice).where(Invoice.tenant_id == tenant_id, Invoice.idempotency_key == key)
    ).first()


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
    if status == "partially_paid":  # as status_of shows it
        q = q.where(Invoice.status == "issued", col(Invoice.paid_minor) > 0)
    elif status == "issued":
        q = q.where(Invoice.status == "issued", col(Invoice.paid_minor) == 0)
    elif status:
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
        "status": status_of(inv),
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


@dataclass(frozen=True, slots=True)
class Payment:
    """A payment recorded: the invoice after it, its ledger entry, what it paid of the
    invoice and what went beyond it to the tenant's credit balance."""

    invoice: Invoice
    entry: LedgerEntry
    applied_minor: int
    overpaid_minor: int


def status_of(inv: Invoice) -> str:
    """The status shown: ``partially_paid`` for an issued invoice paid in part (the store
    keeps ``issued`` until it is paid in full, as the reports read it)."""
    if inv.status == "issued" and inv.kind != "credit_note" and 0 < inv.paid_minor:
        return "partially_paid"
    return inv.status


def amount_due(inv: Invoice) -> int:
    """What is left to pay, in minor units (0 unless issued and not paid in full)."""
    if inv.status != "issued" or inv.kind == "credit_note":
        return 0
    return max(inv.total_minor - inv.paid_minor, 0)


# what the audit row of a payment keeps of it
_PAYMENT_KEYS = (
    "payment",
    "amount_minor",
    "applied_minor",
    "overpaid_minor",
    "method",
    "reference",
)


def record_payment(
    session: Session,
    invoice_id: str,
    amount_minor: int | None = None,
    *,
    method: str | None = None,
    reference: str | None = None,
) -> Payment:
    """Record a payment of ``amount_minor`` (default: what is due) on an issued invoice.

    Less than is due leaves the invoice partially paid; the rest pays it. More than is due
    pays it, and the excess becomes prepaid credit in its currency (a credit grant) that
    the next invoices issued draw down, as a credit note's does. The payment is one ledger
    entry (minus all that was received), one audit row, an ``invoice.payment_recorded``
    event, and ``invoice.paid`` when it completes the invoice."""
    how = (method or "").strip() or None
    if len(how or "") > 32 or len(reference or "") > 200:
        raise BadInput("--method is at most 32 characters, --reference 200")
    inv = get(session, invoice_id, lock=True)
    label = inv.number or str(inv.id)
    if inv.kind == "credit_note":
        raise InvalidTransition(f"{label} is a credit note; it is not paid")
    if inv.status != "issued":
        hint = "issue it first: mno invoice issue" if inv.status == "draft" else None
        raise InvalidTransition(
            f"invoice {label} is {inv.status}; only issued invoices are paid", hint
        )
    due = amount_due(inv)
    paying = due if amount_minor is None else amount_minor
    if paying <= 0:
        raise BadInput(
            f"payment of {from_minor(paying, inv.currency)} {inv.currency}: give a positive amount"
        )
    applied, overpaid = min(paying, due), max(paying - due, 0)
    before = audit.snapshot(inv)
    now = clock.now()
    inv.paid_minor += applied
    if inv.paid_minor >= inv.total_minor:
        inv.status, inv.paid_at = "paid", now
    inv.touch()
    session.add(inv)
    entry = ledger_add(
        session,
        inv.tenant_id,
        inv.currency,
        "payment",
        -paying,
        reference or inv.number,
        inv.id,
        method=how,
    )
    if overpaid:
        session.add(
            CreditGrant(
                tenant_id=inv.tenant_id,
                currency=inv.currency,
                amount_minor=overpaid,
                remaining_minor=overpaid,
                reference=f"overpayment of {label}"[:200],
            )
        )
    session.flush()
    t = tenants.get(session, inv.tenant_id)
    event = {
        **payload(inv, t.key),
        "payment": str(entry.id),
        "amount_minor": paying,
        "applied_minor": applied,
        "overpaid_minor": overpaid,
        "amount_due_minor": amount_due(inv),
        "method": how,
        "reference": reference,
    }
    audit.record(
        session,
        "invoice.pay",
        target_type="invoice",
        target_id=inv.id,
        target=label,
        before=before,
        after={**audit.snapshot(inv), "payment": {k: event[k] for k in _PAYMENT_KEYS}},
        tenant_id=inv.tenant_id,
    )
    outbox.emit(session, "invoice.payment_recorded", event, inv.tenant_id)
    if inv.status == "paid":
        outbox.emit(session, "invoice.paid", payload(inv, t.key), inv.tenant_id)
    return Payment(inv, entry, applied, overpaid)


def pay(
    session: Session,
    invoice_id: str,
    amount_minor: int | None = None,
    reference: str | None = None,
    *,
    amount: Decimal | None = None,
    method: str | None = None,
) -> Invoice:
    """Record a payment of ``amount_minor``, or of ``amount`` in the invoice's currency
    (default: what is due); see ``record_payment``."""
    if amount is not None:
        amount_minor = to_minor(amount, get(session, invoice_id).currency)
    return record_payment(
        session, invoice_id, amount_minor, method=method, reference=reference
    ).invoice


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
