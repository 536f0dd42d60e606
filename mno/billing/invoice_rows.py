"""Draft invoices written as rows: what a billing run's chunk and a subscription's first
invoice (``subscription create --invoice-now``) share.

Both rate tenants first (``mno.billing.invoicing``), then write the invoices and their
lines in bulk through ``store.bulk`` (one COPY per table on PostgreSQL, multi-row INSERTs
on SQLite), mark the one-off charges they billed as invoiced and count a billed period on
each subscription. ``existing_lines`` finds the lines already billed, so that neither
bills a line twice.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlmodel import Session

from mno.store import leases
from mno.store.bulk import Rows
from mno.store.models.billing import Charge, Invoice, InvoiceLine, Subscription
from mno.store.types import table_of

T_INV = table_of(Invoice)
T_LINE = table_of(InvoiceLine)
T_SUB = table_of(Subscription)
T_CHG = table_of(Charge)

# columns that hold one value in every row a chunk writes
INVOICE_SAME = ("created_at", "updated_at", "run_id", "period", "kind", "issuer", "status")
LINE_SAME = ("created_at", "updated_at")


def id_in(s: Session, column: Any, values: list[Any]) -> Any:
    """``column IN values``, as one array parameter on PostgreSQL."""
    return leases._id_in(s, column, values)


def existing_lines(s: Session, keys: Iterable[str]) -> dict[str, dict[str, Any]]:
    """Lines already billed among ``keys``: line key -> detail."""
    keys = list(keys)
    out: dict[str, dict[str, Any]] = {}
    for i in range(0, len(keys), 5000):
        part = keys[i : i + 5000]
        for k, detail in s.execute(
            sa.select(T_LINE.c.line_key, T_LINE.c.detail).where(id_in(s, T_LINE.c.line_key, part))
        ):
            out[k] = detail or {}
    return out


def invoice_row(
    inv_id: uuid.UUID | str,
    tenant_id: uuid.UUID,
    run_id: str | None,
    period: str,
    kind: str,
    currency: str,
    totals: dict[str, Any],
    now: datetime,
) -> dict[str, Any]:
    """A draft invoice's row: every column, ``totals`` as ``rate_tenant`` made them."""
    return {
        "id": inv_id,
        "created_at": now,
        "updated_at": now,
        "tenant_id": tenant_id,
        "run_id": uuid.UUID(run_id) if run_id else None,
        "period": period,
        "kind": kind,
        "issuer": "default",
        "status": "draft",
        "currency": currency,
        "paid_minor": 0,
        **totals,
    }


def write(
    s: Session,
    inv_rows: list[dict[str, Any]],
    line_rows: list[dict[str, Any]],
    billed_charges: list[uuid.UUID],
    billed_subs: set[uuid.UUID],
    now: datetime,
) -> None:
    """Insert the invoices and lines in the session's transaction, mark the billed
    one-off charges as invoiced and count a billed period on each subscription."""
    rows = Rows(s.connection())
    rows.insert_dicts(T_INV, inv_rows, INVOICE_SAME)
    rows.insert_dicts(T_LINE, line_rows, LINE_SAME)
    if billed_charges:
        s.execute(
            T_CHG.update()
            .where(id_in(s, T_CHG.c.id, billed_charges))
            .values(status="invoiced", updated_at=now)
        )
    if billed_subs:
        s.execute(
            T_SUB.update()
            .where(id_in(s, T_SUB.c.id, list(billed_subs)))
            .values(periods_billed=T_SUB.c.periods_billed + 1)
        )
