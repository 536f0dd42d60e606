"""billing: late usage

A usage event that arrives for a period already invoiced for its tenant keeps that period
(``late_period``) and, once a later invoice bills it, that invoice (``late_invoice_id``).
A partial index holds the late events not billed yet.

Revision ID: 0404_billing
Revises: 0403_billing
Create Date: 2026-12-07 00:10:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "0404_billing"
down_revision: str | Sequence[str] | None = "0403_billing"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

_OPEN = "late_period IS NOT NULL AND late_invoice_id IS NULL"


def upgrade() -> None:
    with op.batch_alter_table("billing_usage_event") as batch:
        batch.add_column(
            sa.Column("late_period", sqlmodel.sql.sqltypes.AutoString(length=7), nullable=True)
        )
        batch.add_column(sa.Column("late_invoice_id", sa.Uuid(), nullable=True))
    op.create_index(
        "ix_billing_usage_late_open",
        "billing_usage_event",
        ["tenant_id"],
        postgresql_where=sa.text(_OPEN),
        sqlite_where=sa.text(_OPEN),
    )


def downgrade() -> None:
    op.drop_index("ix_billing_usage_late_open", table_name="billing_usage_event")
    with op.batch_alter_table("billing_usage_event") as batch:
        batch.drop_column("late_invoice_id")
        batch.drop_column("late_period")
