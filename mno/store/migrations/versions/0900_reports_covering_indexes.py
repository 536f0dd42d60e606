"""reports: covering indexes on invoices and invoice lines for the KPI queries

Revision ID: 0900_reports
Revises: 0400 (the indexes are on billing tables)
Create Date: 2026-11-29 06:40:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0900_reports"
down_revision: str | Sequence[str] | None = "0400"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

INVOICE = {
    "ix_report_invoice_issued": [
        "status",
        "issued_at",
        "currency",
        "kind",
        "total_minor",
        "paid_minor",
        "due_at",
        "tenant_id",
        "id",
    ],
    "ix_report_invoice_paid": ["status", "paid_at"],
}
LINE = {"ix_report_line_invoice": ["invoice_id", "kind", "subscription_id", "amount_minor"]}


def upgrade() -> None:
    with op.batch_alter_table("billing_invoice", schema=None) as batch_op:
        for name, columns in INVOICE.items():
            batch_op.create_index(name, columns, unique=False)
    with op.batch_alter_table("billing_invoice_line", schema=None) as batch_op:
        for name, columns in LINE.items():
            batch_op.create_index(name, columns, unique=False)


def downgrade() -> None:
    with op.batch_alter_table("billing_invoice_line", schema=None) as batch_op:
        for name in LINE:
            batch_op.drop_index(name)
    with op.batch_alter_table("billing_invoice", schema=None) as batch_op:
        for name in INVOICE:
            batch_op.drop_index(name)
