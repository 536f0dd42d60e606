"""Indexes the reports read through (no tables of their own).

The KPI queries aggregate a year of invoices. These covering indexes let both stores
answer from narrow, ordered index ranges instead of the wide invoice and line rows: status
then issue time for revenue, invoices issued and receivables (``status IN (…) AND
issued_at`` in a range is a few seeks); status then payment time for invoices paid by
month; and the invoice's lines with their kind, subscription and amount for the last
billed month's MRR and revenue by plan and app. Status comes first so that the planner
prefers these indexes even on a store that was never analysed; the invoice id at the end
lets the join to the lines stay in the index.
"""

from __future__ import annotations

import sqlalchemy as sa

from mno.store.models.billing import Invoice, InvoiceLine

_invoice = Invoice.__table__  # type: ignore[attr-defined]
_line = InvoiceLine.__table__  # type: ignore[attr-defined]

INDEXES = (
    sa.Index(
        "ix_report_invoice_issued",
        _invoice.c.status,
        _invoice.c.issued_at,
        _invoice.c.currency,
        _invoice.c.kind,
        _invoice.c.total_minor,
        _invoice.c.paid_minor,
        _invoice.c.due_at,
        _invoice.c.tenant_id,
        _invoice.c.id,
    ),
    sa.Index("ix_report_invoice_paid", _invoice.c.status, _invoice.c.paid_at),
    sa.Index(
        "ix_report_line_invoice",
        _line.c.invoice_id,
        _line.c.kind,
        _line.c.subscription_id,
        _line.c.amount_minor,
    ),
)
