"""billing: an invoice's idempotency key

A manual invoice or a credit note created through the Developer API keeps the request's
``Idempotency-Key`` (scoped by the calling app), unique per tenant, so a repeated request
returns the first result instead of booking twice.

Revision ID: 0406_billing
Revises: 0405_billing
Create Date: 2026-12-07 00:15:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "0406_billing"
down_revision: str | Sequence[str] | None = "0405_billing"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # add_column and a unique index: no table rebuild (the report triggers stay in place)
    op.add_column(
        "billing_invoice",
        sa.Column("idempotency_key", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=True),
    )
    op.create_index(
        "uq_billing_invoice_idem",
        "billing_invoice",
        ["tenant_id", "idempotency_key"],
        unique=True,
    )


def downgrade() -> None:
    op.drop_index("uq_billing_invoice_idem", table_name="billing_invoice")
    op.drop_column("billing_invoice", "idempotency_key")
