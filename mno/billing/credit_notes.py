"""Credit notes and refunds against issued invoices, and voiding.

An issued invoice is never changed: what it billed too much is given back by a credit
note, an invoice of kind ``credit_note``, numbered in its own gapless series
(``CN-2026-000001``, ``invoices.next_number``) and linked to the invoice it credits
(``credit_note_for``). A credit note's amounts and its lines are stored positive, as on
an invoice, and its kind says they are taken away (as the reports read them, and as
Stripe and Lago credit notes carry them); only the ledger signs its entries (a credit is
negative). A credit note takes the whole of what remains creditable, the rest of one
line, or an amount of one line or of the invoice; its lines say which line of the invoice
each one credits.

Tax and discount are reversed in proportion to the subtotal credited, rounded once per
the money rule, on the running sum: after credit notes that together credit ``c`` of the
invoice's subtotal ``S``, the tax given back is ``round(tax * c / S)``. The credit notes of
an invoice therefore never give back more than it billed, and crediting all of it gives
back exactly its total.

The money goes one of two ways. To the tenant's balance (the default): a ledger credit
and a prepaid credit grant that the next invoices issued in that currency draw down. Or
back to the tenant (``refund``): the ledger credit and a refund entry that records how
the money was returned; a refund is limited to what was paid on the invoice and not
refunded yet.

``void`` cancels a draft (its lines are freed so that the period can be billed again) or
an issued unpaid invoice without credit notes, which books a credit note for all of it
through the same path and gives back the prepaid credit the invoice used. That credit
note is void like the invoice it cancels: neither counts as billed revenue, and the ledger
still shows the invoice and its credit.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Literal

import sqlalchemy as sa
from sqlmodel import Session, col, select

from mno import clock
from mno.billing import invoices
from mno.billing.ledger import ledger_add
from mno.errors import BadInput, Conflict, InvalidTransition
from mno.money import from_minor, round_money, to_minor
from mno.store import audit, outbox
from mno.store.models.billing import CreditGrant, Invoice, InvoiceLine, LedgerEntry
from mno.store.types import table_of
from mno.tenancy import tenants

SERIES = "CN"
CREDITABLE = ("issued", "paid")
Route = Literal["balance", "refund", "void"]


@dataclass(frozen=True, slots=True)
class Credited:
    """A credit note booked, and the refund entry when the money was returned."""

    note: Invoice
    refund: LedgerEntry | None = None


@dataclass(frozen=True, slots=True)
class Remaining:
    """What an invoice still has to credit: its subtotal, its total, each line's amount."""

    subtotal_minor: int
    total_minor: int
    lines: list[tuple[InvoiceLine, int]]


def notes_of(session: Session, inv: Invoice) -> list[Invoice]:
    """The credit notes booked against ``inv``, oldest first."""
    return list(
        session.exec(
            select(Invoice)
            .where(Invoice.credit_note_for == inv.id, Invoice.kind == "credit_note")
            .order_by(col(Invoice.created_at), col(Invoice.id))
        )
    )


def remaining(session: Session, inv: Invoice, notes: list[Invoice] | None = None) -> Remaining:
    """The subtotal not credited yet, and per line of the invoice what is left of it."""
    notes = notes_of(session, inv) if notes is None else notes
    credited_line: dict[str, int] = {}
    if notes:
        t = table_of(InvoiceLine).c
        rows = session.execute(
            sa.select(t.amount_minor, t.detail).where(t.invoice_id.in_([n.id for n in notes]))
        )
        for amount_minor, detail in rows:
            ref = (detail or {}).get("credits_line")
            if ref:
                credited_line[ref] = credited_line.get(ref, 0) + int(amount_minor)
    credited = sum(n.subtotal_minor for n in notes)
    return Remaining(
        inv.subtotal_minor - credited,
        inv.total_minor + inv.credit_minor - sum(n.total_minor for n in notes),
        [
            (ln, ln.amount_minor - credited_line.get(str(ln.id), 0))
            for ln in invoices.lines(session, inv)
        ],
    )


def _share(total_minor: int, part: int, whole: int, currency: str) -> int:
    """``total * part / whole`` in minor units, rounded once (half up)."""
    if whole == 0:
        return 0
    exact = from_minor(total_minor, currency) * Decimal(part) / Decimal(whole)
    return to_minor(round_money(exact, currency), currency)


def _picks(
    inv: Invoice, left: Remaining, line: int | None, amount_minor: int | None
) -> list[tuple[InvoiceLine | None, int]]:
    """What this credit note credits: (line of the invoice or None, amount) pairs."""
    cur = inv.currency
    if left.subtotal_minor <= 0 or left.total_minor <= 0:
        raise Conflict(f"invoice {inv.number} has nothing left to credit")
    if line is not None:
        if not 1 <= line <= len(left.lines):
            raise BadInput(f"--line {line}: invoice {inv.number} has lines 1 to {len(left.lines)}")
        ln, line_left = left.lines[line - 1]
        can = min(line_left, left.subtotal_minor)
        if can <= 0:
            raise Conflict(f"line {line} of invoice {inv.number} has nothing left to credit")
        take = can if amount_minor is None else amount_minor
        if take > can:
            raise Conflict(
                f"only {from_minor(can, cur)} {cur} of line {line} of invoice {inv.number}"
                " remains creditable"
            )
        return [(ln, take)]
    if amount_minor is not None:
        if amount_minor > left.subtotal_minor:
            raise Conflict(
                f"only {from_minor(left.subtotal_minor, cur)} {cur} of invoice {inv.number}"
                " remains creditable (before tax)"
            )
        return [(None, amount_minor)]
    picks: list[tuple[InvoiceLine | None, int]] = []
    rest = left.subtotal_minor
    for ln, line_left in left.lines:
        take = min(line_left, rest)
        if take > 0:
            picks.append((ln, take))
            rest -= take
    if rest > 0:
        picks.append((None, rest))
    return picks


def credit(
    session: Session,
    invoice_id: str,
    *,
    reason: str,
    line: int | None = None,
    amount: Decimal | None = None,
    refund: bool = False,
    method: str | None = None,
    reference: str | None = None,
    idempotency_key: str | None = None,
) -> Credited:
    """Book a credit note against an issued or paid invoice: all that remains creditable,
    the rest of ``line`` (1-based, as ``invoice show`` lists them), or ``amount`` (before
    tax) of that line or of the invoice. ``refund`` returns the money (``method``, and
    ``reference``); otherwise it goes to the tenant's balance."""
    why = (reason or "").strip()
    if not why:
        raise BadInput("a credit note needs a reason", "--reason 'what was wrong'")
    if len(why) > 500:
        raise BadInput("the reason is longer than 500 characters")
    if amount is not None and amount <= 0:
        raise BadInput(f"amount {amount}: give a positive amount to credit")
    how = (method or "").strip()
    if refund and not how:
        raise BadInput("a refund needs --method", "e.g. --method bank_transfer")
    if not refund and (method or reference):
        raise BadInput("--method and --reference go with --refund")
    if len(how) > 32 or len(reference or "") > 200:
        raise BadInput("--method is at most 32 characters, --reference 200")
    inv = invoices.get(session, invoice_id, lock=True)
    if inv.kind == "credit_note":
        raise InvalidTransition(f"{inv.number} is a credit note; credit the invoice it credits")
    if inv.status not in CREDITABLE:
        hint = (
            "change its lines (mno invoice line ...) or void it" if inv.status == "draft" else None
        )
        raise InvalidTransition(
            f"invoice {inv.number or inv.id} is {inv.status}; only issued or paid invoices"
            " are credited",
            hint,
        )
    amount_minor = None if amount is None else to_minor(amount, inv.currency)
    return book(
        session,
        inv,
        why,
        line=line,
        amount_minor=amount_minor,
        route="refund" if refund else "balance",
        method=how or None,
        reference=reference,
        idempotency_key=idempotency_key,
    )


def book(
    session: Session,
    inv: Invoice,
    reason: str,
    *,
    line: int | None = None,
    amount_minor: int | None = None,
    route: Route = "balance",
    method: str | None = None,
    reference: str | None = None,
    idempotency_key: str | None = None,
) -> Credited:
    """Write the credit note, its lines, ledger entries, audit rows and events; the
    caller has checked the invoice may be credited."""
    cur = inv.currency
    notes = notes_of(session, inv)
    picks = _picks(inv, remaining(session, inv, notes), line, amount_minor)
    part = sum(take for _, take in picks)
    whole = inv.subtotal_minor
    done = sum(n.subtotal_minor for n in notes)
    discount = _share(inv.discount_minor, done + part, whole, cur) - sum(
        n.discount_minor for n in notes
    )
    tax = _share(inv.tax_minor, done + part, whole, cur) - sum(n.tax_minor for n in notes)
    inclusive = bool((inv.tax_detail or {}).get("inclusive"))
    total = part - discount + (0 if inclusive else tax)
    gross = inv.total_minor + inv.credit_minor
    before_total = sum(n.total_minor for n in notes)
    if total < 0 or (total == 0 and route != "void") or before_total + total > gross:
        raise Conflict(
            f"invoice {inv.number} has {from_minor(gross - before_total, cur)} {cur} left to credit"
        )
    refundable = 0
    if route == "refund":
        refundable = inv.paid_minor - _refunded(session, notes)
        if total > refundable:
            raise Conflict(
                f"{from_minor(total, cur)} {cur} cannot be refunded: "
                f"{from_minor(max(refundable, 0), cur)} {cur} of invoice {inv.number}"
                " was paid and not refunded",
                "credit the tenant's balance instead (without --refund)",
            )
    now = clock.now()
    note_id = uuid.uuid4()
    note = Invoice(
        id=note_id,
        tenant_id=inv.tenant_id,
        period=f"cn-{note_id.hex[:16]}",
        kind="credit_note",
        issuer=inv.issuer,
        status="void" if route == "void" else "issued",
        currency=cur,
        subtotal_minor=part,
        discount_minor=discount,
        tax_minor=tax,
        total_minor=total,
        tax_detail=dict(inv.tax_detail or {}),
        credit_note_for=inv.id,
        issued_at=now,
        reason=reason,
        number=invoices.next_number(session, inv.issuer, now.year, SERIES),
        idempotency_key=idempotency_key,
    )
    session.add(note)
    session.flush()
    for n, (ln, take) in enumerate(picks, 1):
        unit = str(from_minor(take, cur))
        session.add(
            InvoiceLine(
                invoice_id=note.id,
                line_key=f"cn|{note.id.hex}|{n:04d}",
                subscription_id=ln.subscription_id if ln else None,
                charge_ref=ln.charge_ref if ln else "",
                kind="credit",
                description=f"Credit: {ln.description if ln else reason}"[:500],
                period_start=ln.period_start if ln else None,
                period_end=ln.period_end if ln else None,
                quantity="1",
                unit_price=unit,
                amount_minor=take,
                detail={"credits_line": str(ln.id)} if ln else {},
            )
        )
    ledger_add(session, inv.tenant_id, cur, "credit", -total, note.number, note.id)
    t = tenants.get(session, inv.tenant_id)
    refund_entry: LedgerEntry | None = None
    if route == "balance":
        session.add(_grant(inv, total, note))
    elif route == "void" and inv.credit_minor:
        # the prepaid credit the voided invoice used is given back
        session.add(_grant(inv, inv.credit_minor, note))
    audit.record(
        session,
        "credit_note.issue",
        target_type="invoice",
        target_id=note.id,
        target=note.number or "",
        after=audit.snapshot(note),
        tenant_id=inv.tenant_id,
    )
    outbox.emit(session, "credit_note.issued", _payload(note, inv, t.key), inv.tenant_id)
    if route == "refund":
        refund_entry = ledger_add(
            session, inv.tenant_id, cur, "refund", total, reference, note.id, method=method
        )
        payload = {
            "tenant": t.key,
            "credit_note": note.number,
            "invoice": inv.number,
            "currency": cur,
            "amount_minor": total,
            "method": method,
            "reference": reference,
        }
        audit.record(
            session,
            "refund.record",
            target_type="invoice",
            target_id=note.id,
            target=note.number or "",
            after=payload,
            tenant_id=inv.tenant_id,
        )
        outbox.emit(session, "refund.recorded", payload, inv.tenant_id)
    return Credited(note, refund_entry)


def _grant(inv: Invoice, amount_minor: int, note: Invoice) -> CreditGrant:
    return CreditGrant(
        tenant_id=inv.tenant_id,
        currency=inv.currency,
        amount_minor=amount_minor,
        remaining_minor=amount_minor,
        reference=f"given back by {note.number}",
    )


def _refunded(session: Session, notes: list[Invoice]) -> int:
    if not notes:
        return 0
    t = table_of(LedgerEntry).c
    total = session.execute(
        sa.select(sa.func.coalesce(sa.func.sum(t.amount_minor), 0)).where(
            t.type == "refund", t.invoice_id.in_([n.id for n in notes])
        )
    ).scalar_one()
    return int(total)


def _payload(note: Invoice, inv: Invoice, key: str) -> dict[str, Any]:
    return {
        "id": str(note.id),
        "tenant": key,
        "number": note.number,
        "status": note.status,
        "currency": note.currency,
        "total_minor": note.total_minor,
        "period": inv.period,
        "credit_note_for": inv.number,
        "reason": note.reason,
    }


def void(session: Session, invoice_id: str, reason: str | None = None) -> Invoice:
    """Void a draft, or an issued unpaid invoice without credit notes (which books a
    credit note for all of it)."""
    inv = invoices.get(session, invoice_id, lock=True)
    if inv.kind == "credit_note" or inv.status not in ("draft", "issued") or inv.paid_minor:
        raise InvalidTransition(f"invoice {inv.number or inv.id} is {inv.status}; cannot void")
    if inv.status == "issued" and notes_of(session, inv):
        # its credit notes already gave part of it to the tenant's balance
        raise InvalidTransition(
            f"invoice {inv.number} has credit notes; it cannot be voided",
            f"credit what is left: mno invoice credit {inv.number} --reason ...",
        )
    before = audit.snapshot(inv)
    was_issued = inv.status == "issued"
    inv.status = "void"
    inv.voided_at = clock.now()
    inv.void_reason = reason
    session.add(inv)
    if was_issued:
        book(session, inv, reason or "invoice voided", route="void")
    else:
        # a voided draft frees its lines so the period can be billed again
        lines_t = table_of(InvoiceLine)
        session.execute(sa.delete(lines_t).where(lines_t.c.invoice_id == inv.id))
        inv.period = f"void-{inv.id.hex[:12]}"
    t = tenants.get(session, inv.tenant_id)
    audit.record(
        session,
        "invoice.void",
        target_type="invoice",
        target_id=inv.id,
        target=inv.number or str(inv.id),
        before=before,
        after=audit.snapshot(inv),
        tenant_id=inv.tenant_id,
    )
    outbox.emit(session, "invoice.voided", invoices.payload(inv, t.key), inv.tenant_id)
    return inv
