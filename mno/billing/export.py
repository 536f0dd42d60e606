"""Invoice views and exports: the same fields for ``show``, ``explain`` and ``export``.

``view`` turns an invoice and its lines into plain data (amounts as decimal strings in the
invoice's currency); ``export`` renders that view as JSON, CSV lines or a printable HTML
page (``invoice_pdf``: the built-in ``invoice.html.j2`` template or the tenant's
override; the same page is what the PDF shows). The CLI and the API call these; nothing
here prints. jinja2 is imported only when an HTML page is rendered (it is slow to import).
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mno.billing import invoices
from mno.errors import BadInput
from mno.money import MoneyJson, money_json
from mno.store.audit import jsonable
from mno.tenancy import tenants

if TYPE_CHECKING:
    from sqlmodel import Session

    from mno.billing.invoices import Payment
    from mno.store.models.billing import Invoice, InvoiceLine, LedgerEntry

FORMATS = ("json", "csv", "html")  # text; a PDF is invoice_pdf.render_pdf(page(...))
CSV_COLUMNS = ("description", "quantity", "unit_price", "proration", "amount", "currency")


def amount(minor: int, currency: str) -> MoneyJson:
    """Integer minor units as the one money shape, ``{"amount": "83.22", "currency":
    "EUR"}`` (as text, the amount alone: ``83.22``)."""
    return money_json(minor, currency)


def summary(session: Session, inv: Invoice) -> dict[str, Any]:
    """The invoice's header fields, amounts in major units."""
    cur = inv.currency
    return {
        "id": str(inv.id),
        "number": inv.number,
        "tenant": tenants.get(session, inv.tenant_id).key,
        "period": inv.period,
        "kind": inv.kind,
        "status": invoices.status_of(inv),
        "currency": cur,
        "subtotal": amount(inv.subtotal_minor, cur),
        "discount": amount(inv.discount_minor, cur),
        "tax": amount(inv.tax_minor, cur),
        "credit": amount(inv.credit_minor, cur),
        "total": amount(inv.total_minor, cur),
        "tax_note": (inv.tax_detail or {}).get("note"),
        "paid": amount(inv.paid_minor, cur),
        "amount_due": amount(invoices.amount_due(inv), cur),
        "issued_at": inv.issued_at,
        "due_at": inv.due_at,
        "paid_at": inv.paid_at,
    }


def credited(session: Session, note: Invoice) -> dict[str, Any]:
    """What a credit note adds to its header: the invoice it credits and why. Its amounts
    are positive, like an invoice's; its kind says they are taken away."""
    of = invoices.get(session, note.credit_note_for) if note.credit_note_for else None
    return {"credit_note_for": of.number if of else None, "reason": note.reason}


def credit_view(session: Session, note: Invoice, refund: LedgerEntry | None) -> dict[str, Any]:
    """A credit note's header, the invoice it credits, its reason and its refund."""
    return {
        **summary(session, note),
        **credited(session, note),
        "refund": (
            {
                "amount": amount(refund.amount_minor, refund.currency),
                "method": refund.method,
                "reference": refund.reference,
            }
            if refund
            else None
        ),
    }


def payment_view(session: Session, payment: Payment) -> dict[str, Any]:
    """An invoice's header after a payment, and the payment: received, applied to the
    invoice, and what went beyond it to the tenant's credit balance."""
    cur = payment.invoice.currency
    return {
        **summary(session, payment.invoice),
        "payment": {
            "id": str(payment.entry.id),
            "amount": amount(payment.applied_minor + payment.overpaid_minor, cur),
            "applied": amount(payment.applied_minor, cur),
            "overpaid": amount(payment.overpaid_minor, cur),
            "method": payment.entry.method,
            "reference": payment.entry.reference,
            "created_at": payment.entry.created_at,
        },
    }


def line_views(inv: Invoice, lines: list[InvoiceLine]) -> list[dict[str, Any]]:
    """Each line with how it was computed: quantity, unit price, proration, tiers."""
    return [
        {
            "description": ln.description,
            "kind": ln.kind,
            "quantity": ln.quantity,
            "unit_price": ln.unit_price,
            "proration": ln.proration,
            "amount": amount(ln.amount_minor, inv.currency),
            "period_start": ln.period_start,
            "period_end": ln.period_end,
            "detail": ln.detail,
        }
        for ln in lines
    ]


def view(session: Session, inv: Invoice) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """``(summary, lines)`` of one invoice; a credit note's summary names the invoice it
    credits and its reason."""
    data = summary(session, inv)
    if inv.kind == "credit_note":
        data.update(credited(session, inv))
    return data, line_views(inv, invoices.lines(session, inv))


def explain_text(inv: Invoice, data: dict[str, Any], lines: list[dict[str, Any]]) -> str:
    """Plain-text arithmetic of every line, then subtotal, discounts, tax and total
    (see ``mno.billing.explain``)."""
    from mno.billing.explain import explain

    return explain(inv.kind, data, lines, inv.tax_detail or {})


def export(session: Session, invoice_id: str, fmt: str) -> str:
    """The invoice as ``json``, ``csv`` (one row per line) or ``html`` text."""
    if fmt not in FORMATS:
        raise BadInput("--format: json, csv, html or pdf")
    inv = invoices.get(session, invoice_id)
    data, lines = view(session, inv)
    if fmt == "json":
        return json.dumps({**data, "lines": lines}, indent=2, default=jsonable)
    if fmt == "csv":
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(CSV_COLUMNS)
        for ln in lines:
            writer.writerow(
                [
                    ln["description"],
                    ln["quantity"],
                    ln["unit_price"],
                    ln["proration"],
                    ln["amount"],
                    inv.currency,
                ]
            )
        return buf.getvalue()
    return page(session, inv)[0]


def page(session: Session, inv: Invoice) -> tuple[str, Path | None]:
    """The invoice's printable HTML page, and the directory of the tenant's (or the
    platform's) template it came from, None for the built-in one (``invoice_pdf``)."""
    from mno.billing import invoice_pdf

    data, lines = view(session, inv)
    return invoice_pdf.html(inv, tenants.get(session, inv.tenant_id), data, lines)
