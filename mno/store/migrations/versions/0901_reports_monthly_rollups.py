"""reports: monthly invoice and revenue rollups, kept in step by triggers, backfilled

Revision ID: 0901_reports
Revises: 0900_reports
Create Date: 2026-11-29 09:40:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "0901_reports"
down_revision: str | Sequence[str] | None = "0900_reports"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _key(name: str, length: int) -> sa.Column:
    return sa.Column(name, sqlmodel.sql.sqltypes.AutoString(length=length), nullable=False)


def upgrade() -> None:
    from mno.reports import rollup

    op.create_table(
        "report_invoice_month",
        _key("month", 7),
        _key("currency", 3),
        _key("status", 16),
        _key("kind", 16),
        _key("paid_month", 7),
        sa.Column("invoices", sa.BigInteger(), nullable=False),
        sa.Column("total_minor", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("month", "currency", "status", "kind", "paid_month"),
    )
    op.create_table(
        "report_revenue_month",
        _key("month", 7),
        _key("currency", 3),
        _key("plan_code", 64),
        _key("app_code", 64),
        _key("line_kind", 16),
        sa.Column("lines", sa.BigInteger(), nullable=False),
        sa.Column("amount_minor", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("month", "currency", "plan_code", "app_code", "line_kind"),
    )
    # the triggers, then one INSERT … SELECT … GROUP BY per table over the invoices
    rollup.install(op.get_bind())


def downgrade() -> None:
    from mno.reports import rollup

    bind = op.get_bind()
    for stmt in rollup.drop_sql(bind.dialect.name):
        bind.exec_driver_sql(stmt)
    op.drop_table("report_revenue_month")
    op.drop_table("report_invoice_month")
