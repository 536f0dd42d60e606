"""reports: indexes for the per-tenant probes (tenants billed, NRR) and tenants created;
the payment-time and line indexes go, as the rollups answer what they served

Revision ID: 0902_reports
Revises: 0901_reports
Create Date: 2026-11-29 10:20:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0902_reports"
down_revision: str | Sequence[str] | None = "0901_reports"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

INVOICE = ["tenant_id", "currency", "issued_at", "status", "kind", "total_minor"]


LINE = ["invoice_id", "kind", "subscription_id", "amount_minor"]


def upgrade() -> None:
    with op.batch_alter_table("billing_invoice", schema=None) as batch_op:
        batch_op.drop_index("ix_report_invoice_paid")
        batch_op.create_index("ix_report_invoice_tenant", INVOICE, unique=False)
    with op.batch_alter_table("billing_invoice_line", schema=None) as batch_op:
        batch_op.drop_index("ix_report_line_invoice")
    with op.batch_alter_table("tenant", schema=None) as batch_op:
        batch_op.create_index("ix_report_tenant_created", ["created_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("tenant", schema=None) as batch_op:
        batch_op.drop_index("ix_report_tenant_created")
    with op.batch_alter_table("billing_invoice_line", schema=None) as batch_op:
        batch_op.create_index("ix_report_line_invoice", LINE, unique=False)
    with op.batch_alter_table("billing_invoice", schema=None) as batch_op:
        batch_op.drop_index("ix_report_invoice_tenant")
        batch_op.create_index("ix_report_invoice_paid", ["status", "paid_at"], unique=False)
