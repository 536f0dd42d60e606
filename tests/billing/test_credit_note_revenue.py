"""Credit notes take revenue away in the reports, on SQLite and PostgreSQL.

A credit note is stored with positive amounts (its lines too) and ``kind ==
"credit_note"`` says they are taken away, as the reports read them."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from contextlib import AbstractContextManager
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
import sqlalchemy as sa

from mno import clock
from mno.billing import credit_notes, documents, invoices, subscriptions
from mno.billing import run as billing
from mno.reports import kpis
from mno.reports.model import Window
from mno.store import db
from mno.store.models.billing import Invoice, InvoiceLine
from mno.tenancy import tenants
from tests.reports.test_rollup import check

MIGRATION = importlib.import_module(
    "mno.store.migrations.versions.0403_billing_credit_notes_refunds"
)

Opener = Callable[..., AbstractContextManager[Any]]

BIZ = """
kind: Plan
metadata: {name: biz}
spec:
  currency: EUR
  interval: {unit: month, every: 1}
  charges:
    - {kind: fixed, amount: "100.00", timing: advance}
"""


def _at(y: int, m: int, d: int) -> datetime:
    return datetime(y, m, d, tzinfo=UTC)


@pytest.fixture
def billed(store_url: str, session: Opener, catalogue: None) -> str:
    """acme and other (FR, VAT 20%) on biz (100.00 a month, in advance): October's run
    bills November's 100.00 + VAT 20.00 = 120.00 to each, issued on November 2."""
    clock.set_now(_at(2026, 10, 20))
    with session() as s:
        documents.apply_text(s, BIZ)
        for key in ("acme", "other"):
            tenants.create(s, key, country="FR")
            subscriptions.create(s, key, "biz", start=_at(2026, 9, 1))
    clock.set_now(_at(2026, 11, 2))
    billing.run("2026-10", url=store_url)
    with session() as s:
        for key in ("acme", "other"):
            inv = invoices.issue(s, str(invoices.list_invoices(s, key)[0].id))
            assert (inv.subtotal_minor, inv.tax_minor, inv.total_minor) == (10000, 2000, 12000)
    return store_url


def _credit_and_void(session: Opener) -> None:
    """acme: a credit note of 40.00 of line 1 (November 10); other's invoice is voided."""
    clock.set_now(_at(2026, 11, 10))
    with session() as s:
        acme = invoices.list_invoices(s, "acme")[0]
        other = invoices.list_invoices(s, "other")[0]
        booked = credit_notes.credit(
            s, str(acme.id), reason="outage", line=1, amount=Decimal("40.00")
        )
        note = booked.note
        assert (note.subtotal_minor, note.tax_minor, note.total_minor) == (4000, 800, 4800)
        assert [(ln.amount_minor, ln.unit_price) for ln in invoices.lines(s, note)] == [
            (4000, "40.00")
        ]
        credit_notes.void(s, str(other.id), reason="wrong tenant")
        (cancel,) = credit_notes.notes_of(s, invoices.get(s, str(other.id)))
        assert (cancel.status, cancel.total_minor) == ("void", 12000)


def _november(session: Opener) -> dict[str, Any]:
    with session(write=False) as s:
        report = kpis.revenue_report(s, Window.ending("2026-11", 1))
    return {
        "monthly": report.tables["monthly"],
        "revenue": report.metrics["revenue_in_window"],
        "mrr": report.metrics["mrr"],
        "arr": report.metrics["arr"],
        "by_plan": report.tables["by_plan"],
    }


# November as computed by hand in the docstring below
NOVEMBER = {
    "monthly": [{"month": "2026-11", "EUR": {"amount": "72.00", "currency": "EUR"}}],
    "revenue": {"EUR": {"amount": "72.00", "currency": "EUR"}},
    "mrr": {"EUR": {"amount": "100.00", "currency": "EUR"}},
    "arr": {"EUR": {"amount": "1200.00", "currency": "EUR"}},
    "by_plan": [{"plan": "biz", "revenue": {"amount": "60.00", "currency": "EUR"}}],
}


def test_credit_note_and_void_take_revenue_away(billed: str, session: Opener) -> None:
    """November, by hand. acme: invoice 100.00 + VAT 20.00 = 120.00; a credit note of
    40.00 of its line gives back VAT in proportion, 20.00 x 40 / 100 = 8.00: 48.00. other:
    invoice 120.00, voided; the credit note the void books cancels it, so other bills
    nothing. Billed revenue (totals, VAT included) = 120.00 - 48.00 + 0 = 72.00.
    MRR = the fixed lines billed in the month (before tax), credits are not recurring:
    acme's 100.00 (other's voided invoice is not billed) = 100.00, ARR 1200.00. Revenue by
    plan (lines, before tax): 100.00 - 40.00 = 60.00."""
    _credit_and_void(session)
    assert _november(session) == NOVEMBER
    check(session)


def test_migration_turns_old_negative_credit_notes_positive(billed: str, session: Opener) -> None:
    """Credit notes stored negative (as before) with the void's credit note issued are
    written through SQL; the report then adds them: 120.00 + 48.00 + 120.00 = 288.00.
    Migration 0403's updates turn them positive and the void's note void, the rollup
    triggers follow, and November is the hand-computed one again."""
    _credit_and_void(session)
    with session() as s:
        s.execute(
            sa.text(
                "UPDATE billing_invoice SET subtotal_minor = -subtotal_minor,"
                " discount_minor = -discount_minor, tax_minor = -tax_minor,"
                " total_minor = -total_minor, status = 'issued' WHERE kind = 'credit_note'"
            )
        )
        s.execute(
            sa.text(
                "UPDATE billing_invoice_line SET amount_minor = -amount_minor,"
                " unit_price = '-' || unit_price WHERE invoice_id IN"
                " (SELECT id FROM billing_invoice WHERE kind = 'credit_note')"
            )
        )
    check(session)
    assert _november(session)["revenue"] == {"EUR": {"amount": "288.00", "currency": "EUR"}}
    with db.get_engine(billed).begin() as conn:
        for statement in MIGRATION.POSITIVE_CREDIT_NOTES:
            conn.execute(sa.text(statement))
    check(session)
    assert _november(session) == NOVEMBER
    with session(write=False) as s:
        notes = s.execute(
            sa.select(Invoice).where(Invoice.kind == "credit_note").order_by(Invoice.number)
        ).scalars()
        assert [(n.status, n.subtotal_minor, n.tax_minor, n.total_minor) for n in notes] == [
            ("issued", 4000, 800, 4800),
            ("void", 10000, 2000, 12000),
        ]
        lines = s.execute(
            sa.select(InvoiceLine.amount_minor, InvoiceLine.unit_price)
            .join(Invoice, Invoice.id == InvoiceLine.invoice_id)
            .where(Invoice.kind == "credit_note")
            .order_by(InvoiceLine.amount_minor)
        ).all()
        assert [tuple(r) for r in lines] == [(4000, "40.00"), (10000, "100.00")]
    # and back (the downgrade), and forth again: the rollups stay in step
    with db.get_engine(billed).begin() as conn:
        for statement in MIGRATION.NEGATIVE_CREDIT_NOTES + MIGRATION.POSITIVE_CREDIT_NOTES:
            conn.execute(sa.text(statement))
    check(session)
    assert _november(session) == NOVEMBER
