"""Billing tables: catalogue (metrics, plans, coupons, tax rates), subscriptions, usage,
one-off charges, billing runs, invoices with their lines, invoice counters and the ledger.

Money is stored as BigInteger minor units plus a 3-letter currency; unit prices and
quantities keep full precision as decimal strings.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlmodel import Field

from mno.store.models.base import Base
from mno.store.types import UTCDateTime


class BillingMetric(Base, table=True):
    __tablename__ = "billing_metric"

    code: str = Field(max_length=64, unique=True, index=True)
    name: str = Field(default="", max_length=200)
    aggregation: str = Field(default="sum", max_length=16)  # sum|count|max|unique_count|latest
    field: str | None = Field(default=None, max_length=64)  # property for unique_count


class Plan(Base, table=True):
    """One version of a plan; a price change adds a version, subscriptions stay pinned."""

    __tablename__ = "billing_plan"
    __table_args__ = (sa.UniqueConstraint("code", "version", name="uq_billing_plan_version"),)

    code: str = Field(max_length=64, index=True)
    version: int = Field(default=1)
    current: bool = Field(default=True)
    name: str = Field(default="", max_length=200)
    currency: str = Field(max_length=3)
    interval_unit: str = Field(default="month", max_length=16)
    interval_every: int = Field(default=1)
    trial_days: int = Field(default=0)
    setup_fee: str = Field(default="0", max_length=40)
    charges: list[dict[str, Any]] = Field(default_factory=list, sa_type=sa.JSON)


class Coupon(Base, table=True):
    __tablename__ = "billing_coupon"

    code: str = Field(max_length=64, unique=True, index=True)
    kind: str = Field(default="percentage", max_length=16)  # percentage|fixed
    value: str = Field(max_length=40)
    currency: str | None = Field(default=None, max_length=3)
    duration: str = Field(default="once", max_length=16)  # once|repeating|forever
    periods: int | None = Field(default=None)


class TaxRate(Base, table=True):
    __tablename__ = "billing_tax_rate"

    code: str = Field(max_length=64, unique=True, index=True)
    country: str = Field(max_length=2, index=True)
    region: str | None = Field(default=None, max_length=100)
    rate: str = Field(max_length=20)  # percent
    inclusive: bool = Field(default=False)


class Subscription(Base, table=True):
    __tablename__ = "billing_subscription"

    tenant_id: uuid.UUID = Field(foreign_key="tenant.id", index=True)
    plan_id: uuid.UUID = Field(foreign_key="billing_plan.id", index=True)
    plan_code: str = Field(max_length=64, index=True)
    app_code: str | None = Field(default=None, max_length=64)
    coupon_code: str | None = Field(default=None, max_length=64)
    status: str = Field(default="active", max_length=16, index=True)
    started_at: datetime = Field(sa_type=UTCDateTime)
    trial_ends_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    cancel_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    ended_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    cycle_limit: int | None = Field(default=None)
    periods_billed: int = Field(default=0)
    # periods of the coupon used before this subscription began (a plan change carries
    # the coupon over with what is left of it)
    coupon_periods_used: int = Field(default=0, sa_column_kwargs={"server_default": "0"})
    # a part of a bundle subscription (``billing_bundle_subscription.id``): billed,
    # cancelled and changed with the bundle
    bundle_subscription_id: uuid.UUID | None = Field(default=None, index=True)


class Bundle(Base, table=True):
    """Several plans and/or apps sold as one product: a fixed ``price`` per interval, or
    ``percent_off`` the sum of the part plans' fixed charges. Archived: no new subscribers."""

    __tablename__ = "billing_bundle"

    code: str = Field(max_length=64, unique=True, index=True)
    name: str = Field(default="", max_length=200)
    currency: str = Field(max_length=3)
    price: str | None = Field(default=None, max_length=40)  # per interval, a decimal string
    percent_off: str | None = Field(default=None, max_length=20)
    interval_unit: str = Field(default="month", max_length=16)
    interval_every: int = Field(default=1)
    plans: list[str] = Field(default_factory=list, sa_type=sa.JSON)  # plan codes
    apps: list[str] = Field(default_factory=list, sa_type=sa.JSON)  # app codes
    archived_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


class BundleSubscription(Base, table=True):
    """A tenant's subscription to a bundle; its plan parts are subscriptions pointing at
    it, its app parts are grants it made (``granted_apps``: revoked when it ends)."""

    __tablename__ = "billing_bundle_subscription"

    tenant_id: uuid.UUID = Field(foreign_key="tenant.id", index=True)
    bundle_id: uuid.UUID = Field(foreign_key="billing_bundle.id", index=True)
    bundle_code: str = Field(max_length=64, index=True)
    status: str = Field(default="active", max_length=16, index=True)
    started_at: datetime = Field(sa_type=UTCDateTime)
    cancel_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    ended_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    granted_apps: list[str] = Field(default_factory=list, sa_type=sa.JSON)


class UsageEvent(Base, table=True):
    __tablename__ = "billing_usage_event"
    __table_args__ = (
        sa.UniqueConstraint("tenant_id", "idempotency_key", name="uq_billing_usage_idem"),
        sa.Index("ix_billing_usage_tenant_metric_at", "tenant_id", "metric_code", "at"),
        sa.Index("ix_billing_usage_metric_at", "metric_code", "at"),
        # late usage not billed yet: a run reads it through this small partial index
        sa.Index(
            "ix_billing_usage_late_open",
            "tenant_id",
            postgresql_where=sa.text("late_period IS NOT NULL AND late_invoice_id IS NULL"),
            sqlite_where=sa.text("late_period IS NOT NULL AND late_invoice_id IS NULL"),
        ),
    )

    tenant_id: uuid.UUID = Field(foreign_key="tenant.id")
    metric_code: str = Field(max_length=64)
    quantity: Decimal = Field(sa_type=sa.Numeric(30, 8))
    at: datetime = Field(sa_type=UTCDateTime)
    idempotency_key: str | None = Field(default=None, max_length=200)
    properties: dict[str, Any] = Field(default_factory=dict, sa_type=sa.JSON)
    # late usage: the period (YYYY-MM) already invoiced when the event arrived, and the
    # invoice that billed it afterwards (a later period's)
    late_period: str | None = Field(default=None, max_length=7)
    late_invoice_id: uuid.UUID | None = Field(default=None)


class Charge(Base, table=True):
    """A one-off charge ("bill"): submitted, then invoiced or cancelled."""

    __tablename__ = "billing_charge"
    __table_args__ = (
        sa.UniqueConstraint("tenant_id", "idempotency_key", name="uq_billing_charge_idem"),
    )

    tenant_id: uuid.UUID = Field(foreign_key="tenant.id", index=True)
    amount_minor: int = Field(sa_type=sa.BigInteger)
    currency: str = Field(max_length=3)
    description: str = Field(default="", max_length=500)
    status: str = Field(default="submitted", max_length=16, index=True)
    app_code: str | None = Field(default=None, max_length=64)
    idempotency_key: str | None = Field(default=None, max_length=200)
    invoice_id: uuid.UUID | None = Field(default=None)


class BillingRun(Base, table=True):
    __tablename__ = "billing_run"

    period: str = Field(max_length=7, index=True)
    status: str = Field(default="running", max_length=16)
    tenant_key: str | None = Field(default=None, max_length=40)
    tenants: int = Field(default=0)
    invoices: int = Field(default=0)
    failed: list[dict[str, Any]] = Field(default_factory=list, sa_type=sa.JSON)
    totals: dict[str, Any] = Field(default_factory=dict, sa_type=sa.JSON)
    finished_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


class Invoice(Base, table=True):
    __tablename__ = "billing_invoice"
    __table_args__ = (
        sa.UniqueConstraint("issuer", "number", name="uq_billing_invoice_number"),
        sa.UniqueConstraint(
            "tenant_id", "period", "currency", "kind", name="uq_billing_invoice_period"
        ),
        sa.Index("uq_billing_invoice_idem", "tenant_id", "idempotency_key", unique=True),
    )

    tenant_id: uuid.UUID = Field(foreign_key="tenant.id", index=True)
    run_id: uuid.UUID | None = Field(default=None, index=True)
    period: str = Field(max_length=20)  # 2026-10, or a one-off marker
    kind: str = Field(default="period", max_length=16)  # period|credit_note|manual
    issuer: str = Field(default="default", max_length=64)
    number: str | None = Field(default=None, max_length=40)
    status: str = Field(default="draft", max_length=16, index=True)
    currency: str = Field(max_length=3)
    subtotal_minor: int = Field(default=0, sa_type=sa.BigInteger)
    discount_minor: int = Field(default=0, sa_type=sa.BigInteger)
    tax_minor: int = Field(default=0, sa_type=sa.BigInteger)
    credit_minor: int = Field(default=0, sa_type=sa.BigInteger)
    total_minor: int = Field(default=0, sa_type=sa.BigInteger)
    paid_minor: int = Field(default=0, sa_type=sa.BigInteger)
    tax_detail: dict[str, Any] = Field(default_factory=dict, sa_type=sa.JSON)
    issued_at: datetime | None = Field(default=None, sa_type=UTCDateTime, index=True)
    due_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    paid_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    voided_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    void_reason: str | None = Field(default=None, max_length=500)
    credit_note_for: uuid.UUID | None = Field(default=None)
    # a credit note's reason
    reason: str | None = Field(default=None, max_length=500)
    # a Developer API request's Idempotency-Key (scoped by app): a repeat returns this one
    idempotency_key: str | None = Field(default=None, max_length=200)


class InvoiceLine(Base, table=True):
    """Unique on (subscription, charge, period start, period end): a line is billed once."""

    __tablename__ = "billing_invoice_line"
    __table_args__ = (
        sa.UniqueConstraint("line_key", name="uq_billing_line_key"),
        sa.Index("ix_billing_line_invoice", "invoice_id"),
    )

    invoice_id: uuid.UUID = Field(foreign_key="billing_invoice.id")
    # "<subscription id>|<charge index>|<period start>|<period end>" or "charge|<id>"
    line_key: str = Field(max_length=200)
    subscription_id: uuid.UUID | None = Field(default=None)
    charge_ref: str = Field(default="", max_length=64)
    kind: str = Field(max_length=16)
    description: str = Field(default="", max_length=500)
    period_start: datetime | None = Field(default=None, sa_type=UTCDateTime)
    period_end: datetime | None = Field(default=None, sa_type=UTCDateTime)
    quantity: str = Field(default="1", max_length=40)
    unit_price: str = Field(default="0", max_length=40)
    proration: str = Field(default="1", max_length=40)
    amount_minor: int = Field(default=0, sa_type=sa.BigInteger)
    detail: dict[str, Any] = Field(default_factory=dict, sa_type=sa.JSON)


class InvoiceCounter(Base, table=True):
    """Next number per issuer, series (``INV`` invoices, ``CN`` credit notes) and year,
    bumped under a row lock at issue."""

    __tablename__ = "billing_invoice_counter"
    __table_args__ = (sa.UniqueConstraint("issuer", "series", "year", name="uq_billing_counter"),)

    issuer: str = Field(max_length=64)
    series: str = Field(default="INV", max_length=8, sa_column_kwargs={"server_default": "INV"})
    year: int = Field()
    last: int = Field(default=0)


class LedgerEntry(Base, table=True):
    __tablename__ = "billing_ledger"
    __table_args__ = (sa.Index("ix_billing_ledger_tenant", "tenant_id", "currency", "seq"),)

    tenant_id: uuid.UUID = Field(foreign_key="tenant.id")
    currency: str = Field(max_length=3)
    seq: int = Field(default=0)
    type: str = Field(max_length=16)  # invoice|payment|credit|refund|adjustment
    amount_minor: int = Field(sa_type=sa.BigInteger)  # + owed by tenant, - in its favour
    balance_minor: int = Field(sa_type=sa.BigInteger)
    reference: str | None = Field(default=None, max_length=200)
    invoice_id: uuid.UUID | None = Field(default=None)
    expires_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    # a refund: how the money was returned (bank_transfer, card, ...)
    method: str | None = Field(default=None, max_length=32)


class CreditGrant(Base, table=True):
    """Prepaid credit: drawn down oldest-expiry first at issue; what is left at its expiry
    is written to the ledger as an expiry and is never applied."""

    __tablename__ = "billing_credit"
    __table_args__ = (sa.Index("ix_billing_credit_tenant", "tenant_id", "currency"),)

    tenant_id: uuid.UUID = Field(foreign_key="tenant.id")
    currency: str = Field(max_length=3)
    amount_minor: int = Field(sa_type=sa.BigInteger)
    remaining_minor: int = Field(sa_type=sa.BigInteger)
    expires_at: datetime | None = Field(default=None, sa_type=UTCDateTime, index=True)
    status: str = Field(default="open", max_length=16)  # open|used|expired
    reference: str | None = Field(default=None, max_length=200)


class TaxTreatment(Base, table=True):
    """A tenant exempt from tax, or under reverse charge, in a country (and optionally one
    region of it; an empty region covers the whole country)."""

    __tablename__ = "billing_tax_treatment"
    __table_args__ = (
        sa.UniqueConstraint("tenant_id", "country", "region", name="uq_billing_tax_treatment"),
    )

    tenant_id: uuid.UUID = Field(foreign_key="tenant.id", index=True)
    country: str = Field(max_length=2)
    region: str = Field(default="", max_length=100)
    treatment: str = Field(max_length=16)  # exempt|reverse_charge
    tax_id: str | None = Field(default=None, max_length=64)
    note: str | None = Field(default=None, max_length=500)
