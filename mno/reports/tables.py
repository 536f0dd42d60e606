"""The columns the KPI queries read, as plain Core tables rather than the ORM models.

``mno report summary`` reads some fifteen tables across six areas; building their SQLModel
classes on import costs a command more than its queries do on a warm store. The reports
only need table and column names with the types that bind parameters (UTC timestamps,
UUIDs, JSON), so they are declared here on a metadata of their own, which nothing ever
creates or migrates. ``tests/reports/test_tables.py`` checks each column against the model.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from mno.store.types import UTCDateTime

SYSTEM_KEY = "system"  # the platform's own tenant (mno.tenancy.tenants.SYSTEM_KEY)

metadata = sa.MetaData()


def _table(name: str, *columns: sa.Column[Any]) -> sa.Table:
    return sa.Table(name, metadata, *columns)


def _str(name: str) -> sa.Column[str]:
    return sa.Column(name, sa.String())


def _at(name: str) -> sa.Column[datetime]:
    return sa.Column(name, UTCDateTime())


def _id(name: str = "id") -> sa.Column[uuid.UUID]:
    return sa.Column(name, sa.Uuid())


def _int(name: str) -> sa.Column[int]:
    return sa.Column(name, sa.Integer())


def _big(name: str) -> sa.Column[int]:
    return sa.Column(name, sa.BigInteger())


def _bool(name: str) -> sa.Column[bool]:
    return sa.Column(name, sa.Boolean())


tenant = _table(
    "tenant",
    _id(),
    _str("key"),
    _str("status"),
    _str("tier"),
    _bool("in_arrears"),
    _at("created_at"),
    _str("timezone"),
)
tenant_status_change = _table(
    "tenant_status_change", _id("tenant_id"), _str("from_status"), _str("to_status"), _at("at")
)
app = _table("app", _id(), _str("code"))
invoice = _table(
    "billing_invoice",
    _id(),
    _id("tenant_id"),
    _str("kind"),
    _str("status"),
    _str("currency"),
    _big("total_minor"),
    _big("paid_minor"),
    _at("issued_at"),
    _at("due_at"),
    _at("paid_at"),
)
invoice_line = _table(
    "billing_invoice_line",
    _id("invoice_id"),
    _id("subscription_id"),
    _str("kind"),
    _at("period_start"),
    _at("period_end"),
    _big("amount_minor"),
)
subscription = _table(
    "billing_subscription",
    _id(),
    _at("started_at"),
    _at("trial_ends_at"),
    _at("cancel_at"),
)
invoice_month = _table(
    "report_invoice_month",
    _str("month"),
    _str("currency"),
    _str("status"),
    _str("kind"),
    _str("paid_month"),
    _big("invoices"),
    _big("total_minor"),
)
revenue_month = _table(
    "report_revenue_month",
    _str("month"),
    _str("currency"),
    _str("plan_code"),
    _str("app_code"),
    _str("line_kind"),
    _big("lines"),
    _big("amount_minor"),
)
mrr_period = _table(
    "report_mrr_period",
    _int("dated"),
    _str("currency"),
    _str("timezone"),
    _str("issued_on"),
    _at("period_start"),
    _at("period_end"),
    _at("start_at"),
    _at("end_at"),
    _big("lines"),
    _big("amount_minor"),
)
instance = _table(
    "nex_instance",
    _id(),
    _id("app_id"),
    _str("status"),
    _str("host"),
    _at("created_at"),
)
audit_entry = _table(
    "audit_entry",
    _at("at"),
    _str("action"),
    _str("target_type"),
    _str("target_id"),
    sa.Column("diff", sa.JSON()),
)
sync_connection = _table(
    "sync_connection",
    _id(),
    _str("name"),
    _id("tenant_id"),
    _bool("paused"),
    _int("consecutive_failures"),
    _at("created_at"),
)
sync_run = _table("sync_run", _id("connection_id"), _str("status"), _at("finished_at"))
sync_change = _table("sync_change", _at("created_at"))
sync_conflict = _table("sync_conflict", _at("created_at"))
webhook_delivery = _table(
    "webhook_delivery",
    _str("channel"),
    _str("status"),
    _at("created_at"),
    _at("event_at"),
    _at("done_at"),
)
webhook_attempt = _table(
    "webhook_attempt", _at("at"), _int("status_code"), sa.Column("latency_ms", sa.Float())
)
webhook_endpoint = _table("webhook_endpoint", _bool("enabled"))
