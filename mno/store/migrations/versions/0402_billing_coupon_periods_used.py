"""billing: coupon periods carried over by a plan change

Revision ID: 0402_billing
Revises: 0401_billing
Create Date: 2026-11-29 09:45:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0402_billing"
down_revision: str | Sequence[str] | None = "0401_billing"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("billing_subscription") as batch:
        batch.add_column(
            sa.Column("coupon_periods_used", sa.Integer(), nullable=False, server_default="0")
        )


def downgrade() -> None:
    with op.batch_alter_table("billing_subscription") as batch:
        batch.drop_column("coupon_periods_used")
