"""Monthly rollups of billed invoices, and the indexes the reports read through.

The rollups hold, per month of issue, what the KPI queries would otherwise aggregate from
a year of invoices: ``report_invoice_month`` counts and sums issued, paid and void
invoices by currency, status, kind and month of payment; ``report_revenue_month`` sums
the lines of billed (issued or paid) invoices by currency, plan, app and line kind,
signed (a credit note's lines subtract). Triggers on ``billing_invoice`` and
``billing_invoice_line`` keep them in step in the writing statement's transaction,
whatever writes them (see ``mno.reports.rollup``). They are derived data, keyed by what
they group on, so they carry no id or timestamps.

The indexes serve what is still read from the invoices. Status then issue time, covering
the amounts, due date and tenant, for receivables (``status = 'issued'`` up to a date is
one narrow range; status first so that the planner prefers it even on a store that was
never analysed). Tenant, currency, issue time, status, kind and total for the per-tenant
KPIs, tenants billed in the window and NRR: each tenant's probe is one seek answered from
the index alone, in tenant order. Creation time of tenants for tenants created per month.
"""

from __future__ import annotations

from datetime import datetime

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from mno.store.models.billing import Invoice, InvoiceLine
from mno.store.models.tenancy import Tenant
from mno.store.types import UTCDateTime, table_of

_invoice = table_of(Invoice)
_tenant = table_of(Tenant)
_line = table_of(InvoiceLine)

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
    sa.Index(
        "ix_report_invoice_tenant",
        _invoice.c.tenant_id,
        _invoice.c.currency,
        _invoice.c.issued_at,
        _invoice.c.status,
        _invoice.c.kind,
        _invoice.c.total_minor,
    ),
    sa.Index("ix_report_tenant_created", _tenant.c.created_at),
    # a subscription's lines, for the MRR rollup's trigger when its dates change
    sa.Index("ix_report_line_subscription", _line.c.subscription_id),
)


class ReportInvoiceMonth(SQLModel, table=True):
    """Issued, paid and void invoices by month of issue (UTC), currency, status, kind and
    month of payment (``''`` unless paid); ``month`` is ``''`` for one never issued."""

    __tablename__ = "report_invoice_month"

    month: str = Field(primary_key=True, max_length=7)  # YYYY-MM of issued_at, in UTC
    currency: str = Field(primary_key=True, max_length=3)
    status: str = Field(primary_key=True, max_length=16)
    kind: str = Field(primary_key=True, max_length=16)
    paid_month: str = Field(primary_key=True, max_length=7)  # of paid_at if paid, else ''
    invoices: int = Field(default=0, sa_type=sa.BigInteger)
    total_minor: int = Field(default=0, sa_type=sa.BigInteger)


class ReportRevenueMonth(SQLModel, table=True):
    """Billed invoice lines by month of issue (UTC), currency, plan, app and line kind.

    ``amount_minor`` is signed (credit notes subtract); ``plan_code`` and ``app_code`` are
    the line's subscription's, ``-`` for a line without one (or without an app)."""

    __tablename__ = "report_revenue_month"

    month: str = Field(primary_key=True, max_length=7)
    currency: str = Field(primary_key=True, max_length=3)
    plan_code: str = Field(primary_key=True, max_length=64)
    app_code: str = Field(primary_key=True, max_length=64)
    line_kind: str = Field(primary_key=True, max_length=16)
    lines: int = Field(default=0, sa_type=sa.BigInteger)
    amount_minor: int = Field(default=0, sa_type=sa.BigInteger)


class ReportMrrPeriod(SQLModel, table=True):
    """Recurring lines of billed invoices by what normalised MRR groups and filters on.

    ``dated`` is 0 for lines without a service period (their period columns hold the
    invoice's issue time, their timezone ``''``); ``issued_on`` is the UTC day of issue;
    ``start_at``/``end_at`` are the period clamped to the subscription's start (or trial
    end) and cancellation; ``amount_minor`` is signed (see ``mno.reports.mrr_rollup``)."""

    __tablename__ = "report_mrr_period"

    dated: int = Field(primary_key=True)
    currency: str = Field(primary_key=True, max_length=3)
    timezone: str = Field(primary_key=True, max_length=64)
    issued_on: str = Field(primary_key=True, max_length=10)  # YYYY-MM-DD of issued_at, UTC
    period_start: datetime = Field(primary_key=True, sa_type=UTCDateTime)
    period_end: datetime = Field(primary_key=True, sa_type=UTCDateTime)
    start_at: datetime = Field(primary_key=True, sa_type=UTCDateTime)
    end_at: datetime = Field(primary_key=True, sa_type=UTCDateTime)
    lines: int = Field(default=0, sa_type=sa.BigInteger)
    amount_minor: int = Field(default=0, sa_type=sa.BigInteger)
