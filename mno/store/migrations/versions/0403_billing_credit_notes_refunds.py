"""billing: credit note series and reason, refund method

Credit notes are numbered in their own gapless series (``CN-2026-000001``) next to the
invoices' (``INV-...``): the counter is kept per issuer, series and year. A credit note
carries its reason; a refund's ledger entry carries how the money was returned.

A credit note's amounts and lines are stored positive (its kind says they are taken away,
as the reports read them). Credit notes written before with negative amounts are turned
positive, and the credit note a void booked is void like the invoice it cancels; the
report rollup triggers keep the monthly rollups in step with these updates.

Revision ID: 0403_billing
Revises: 0402_billing
Create Date: 2026-12-06 22:15:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "0403_billing"
down_revision: str | Sequence[str] | None = "0402_billing"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


_NEGATIVE = (
    "subtotal_minor < 0 OR discount_minor < 0 OR tax_minor < 0 OR total_minor < 0"
)
_POSITIVE = (
    "subtotal_minor > 0 OR discount_minor > 0 OR tax_minor > 0 OR total_minor > 0"
)
_FLIP_INVOICE = (
    "UPDATE billing_invoice SET subtotal_minor = -subtotal_minor,"
    " discount_minor = -discount_minor, tax_minor = -tax_minor, total_minor = -total_minor"
    " WHERE kind = 'credit_note' AND ({0})"
)
_FLIP_LINES = (
    "UPDATE billing_invoice_line SET amount_minor = -amount_minor, unit_price = {1}"
    " WHERE {0} AND invoice_id IN (SELECT id FROM billing_invoice WHERE kind = 'credit_note')"
)
_VOID_NOTES = (
    "UPDATE billing_invoice SET status = '{1}' WHERE kind = 'credit_note' AND status = '{0}'"
    " AND credit_note_for IN (SELECT v.id FROM billing_invoice AS v WHERE v.status = 'void'"
    " AND v.kind <> 'credit_note')"
)
# credit notes and their lines from negative to positive; a void's credit note is void
POSITIVE_CREDIT_NOTES = (
    _FLIP_LINES.format(
        "amount_minor < 0",
        "(CASE WHEN unit_price LIKE '-%' THEN substr(unit_price, 2) ELSE unit_price END)",
    ),
    _FLIP_INVOICE.format(_NEGATIVE),
    _VOID_NOTES.format("issued", "void"),
)
NEGATIVE_CREDIT_NOTES = (
    _VOID_NOTES.format("void", "issued"),
    _FLIP_INVOICE.format(_POSITIVE),
    _FLIP_LINES.format(
        "amount_minor > 0",
        "(CASE WHEN unit_price LIKE '-%' THEN unit_price ELSE '-' || unit_price END)",
    ),
)


def upgrade() -> None:
    with op.batch_alter_table("billing_invoice_counter") as batch:
        batch.add_column(
            sa.Column(
                "series",
                sqlmodel.sql.sqltypes.AutoString(length=8),
                nullable=False,
                server_default="INV",
            )
        )
        batch.drop_constraint("uq_billing_counter", type_="unique")
        batch.create_unique_constraint("uq_billing_counter", ["issuer", "series", "year"])
    with op.batch_alter_table("billing_invoice") as batch:
        batch.add_column(
            sa.Column("reason", sqlmodel.sql.sqltypes.AutoString(length=500), nullable=True)
        )
    with op.batch_alter_table("billing_ledger") as batch:
        batch.add_column(
            sa.Column("method", sqlmodel.sql.sqltypes.AutoString(length=32), nullable=True)
        )
    for statement in POSITIVE_CREDIT_NOTES:
        op.execute(statement)


def downgrade() -> None:
    for statement in NEGATIVE_CREDIT_NOTES:
        op.execute(statement)
    with op.batch_alter_table("billing_ledger") as batch:
        batch.drop_column("method")
    with op.batch_alter_table("billing_invoice") as batch:
        batch.drop_column("reason")
    op.execute("DELETE FROM billing_invoice_counter WHERE series <> 'INV'")
    with op.batch_alter_table("billing_invoice_counter") as batch:
        batch.drop_constraint("uq_billing_counter", type_="unique")
        batch.create_unique_constraint("uq_billing_counter", ["issuer", "year"])
        batch.drop_column("series")
