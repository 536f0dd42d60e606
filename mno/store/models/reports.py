"""Indexes the reports read through (no tables of their own).

The KPI queries aggregate a year of invoices in one pass per question. These covering
indexes let both stores answer from a narrow, ordered index range instead of the wide
invoice and line rows: revenue and invoices issued by month (``issued_at`` first), invoices
paid by month (``paid_at``), receivables (``status`` first) and the last billed month's
lines (``invoice_id`` with the line's kind, subscription and amount).
"""

from __future__ import annotations

import sqlalchemy as sa

from mno.store.models.billing import Invoice, InvoiceLine

_invoice = Invoice.__table__  # type: ignore[attr-defined]
_line = InvoiceLine.__table__  # type: ignore[attr-defined]

INDEXES = (
    sa.Index(
        "ix_report_invoice_issued",
        _invoice.c.issued_at,
        _invoice.c.status,
        _invoice.c.currency,
        _invoice.c.kind,
        _invoice.c.tenant_id,
        _invoice.c.total_minor,
    ),
    sa.Index("ix_report_invoice_paid", _invoice.c.paid_at, _invoice.c.status),
    sa.Index(
        "ix_report_invoice_open",
        _invoice.c.status,
        _invoice.c.currency,
        _invoice.c.kind,
        _invoice.c.issued_at,
        _invoice.c.due_at,
        _invoice.c.total_minor,
        _invoice.c.paid_minor,
    ),
    sa.Index(
        "ix_report_line_invoice",
        _line.c.invoice_id,
        _line.c.kind,
        _line.c.subscription_id,
        _line.c.amount_minor,
    ),
)
