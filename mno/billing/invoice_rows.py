"""Draft invoices written as rows: what a billing run's chunk and a subscription's first
invoice (``subscription create --invoice-now``) share.

Both rate tenants first (``mno.billing.tenant_rating``), then write the invoices and their
lines in bulk through ``store.bulk`` (one COPY per table on PostgreSQL, multi-row INSERTs
on SQLite), mark the one-off charges they billed as invoiced and count a billed period on
each subscription. ``existing_lines`` finds the lines already billed, so that neither
bills a line twice. ``record_created`` writes a run's audit rows and ``invoice.created``
events in bulk, in the same transaction.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlmodel import Session

from mno.store import audit, leases, outbox
from mno.store.bulk import Rows, dashed, dumps, hex_ids
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
    return leases.id_in(s, column, values)


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


_NOT_AUDITED = ("created_at", "updated_at")


def record_created(
    s: Session, inv_rows: list[dict[str, Any]], keys: list[str], now: datetime
) -> None:
    """The audit row (``invoice.create``) and the ``invoice.created`` event of each
    invoice of ``inv_rows`` (rows as ``invoice_row`` makes them, with 32-hex-digit ids;
    ``keys`` the tenant key of each), written in bulk in the session's transaction. The
    payload has the shape of every ``invoice.*`` event; the audit diff holds the
    invoice's fields, as ``audit.snapshot`` gives them for a create."""
    if not inv_rows:
        return
    w = Rows(s.connection())
    at = w.time(now)
    # the create diff (see audit.diff): the fields that hold a value, in key order; the
    # values are JSON-safe but for UUIDs, which dumps writes as text
    audited = [k for k in sorted(inv_rows[0]) if k not in _NOT_AUDITED]
    events: list[tuple[Any, ...]] = []
    entries: list[tuple[Any, ...]] = []
    for row, key, event_id, entry_id in zip(
        inv_rows, keys, hex_ids(len(inv_rows)), hex_ids(len(inv_rows)), strict=True
    ):
        inv_id = dashed(row["id"])
        tenant_id = w.uid(row["tenant_id"])
        payload = {
            "id": inv_id,
            "tenant": key,
            "number": None,
            "status": row["status"],
            "currency": row["currency"],
            "total_minor": row["total_minor"],
            "period": row["period"],
        }
        after = {k: row[k] for k in audited if row[k] is not None}
        after["id"] = inv_id
        events.append((event_id, tenant_id, dumps(payload)))
        entries.append((entry_id, inv_id, key, tenant_id, dumps({"before": {}, "after": after})))
    outbox.emit_rows(
        w,
        ("id", "tenant_id", "payload"),
        events,
        {"created_at": at, "updated_at": at, "type": "invoice.created"},
    )
    audit.record_rows(
        w,
        ("id", "target_id", "target", "tenant_id", "diff"),
        entries,
        {
            "created_at": at,
            "updated_at": at,
            "at": at,
            "action": "invoice.create",
            "target_type": "invoice",
        },
    )
