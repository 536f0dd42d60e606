"""billing: credit note series and reason, refund method

Credit notes are numbered in their own gapless series (``CN-2026-000001``) next to the
invoices' (``INV-...``): the counter is kept per issuer, series and year. A credit note
carries its reason; a refund's ledger entry carries how the money was returned.

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


def downgrade() -> None:
    with op.batch_alter_table("billing_ledger") as batch:
        batch.drop_column("method")
    with op.batch_alter_table("billing_invoice") as batch:
        batch.drop_column("reason")
    op.execute("DELETE FROM billing_invoice_counter WHERE series <> 'INV'")
    with op.batch_alter_table("billing_invoice_counter") as batch:
        batch.drop_constraint("uq_billing_counter", type_="unique")
        batch.create_unique_constraint("uq_billing_counter", ["issuer", "year"])
        batch.drop_column("series")
