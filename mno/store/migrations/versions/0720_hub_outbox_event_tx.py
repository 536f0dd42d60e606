"""hub: the writing transaction of each outbox event, so cursor readers never skip one

Revision ID: 0720_hub
Revises: 0703_hubapi
Create Date: 2026-12-07 15:00:00.000000

Rows written before this revision keep ``tx`` 0: they were all committed when it ran
(adding the column locks the table), so they sort before every later event.
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0720_hub"
down_revision: str | Sequence[str] | None = "0703_hubapi"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("outbox_event", schema=None) as batch_op:
        # a constant default fills the existing rows without rewriting the table
        batch_op.add_column(
            sa.Column("tx", sa.BigInteger(), server_default=sa.text("0"), nullable=False)
        )
        batch_op.create_index("ix_outbox_event_tx_seq", ["tx", "seq"], unique=False)
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            "ALTER TABLE outbox_event ALTER COLUMN tx SET DEFAULT "
            "(pg_current_xact_id()::text::bigint)"
        )


def downgrade() -> None:
    with op.batch_alter_table("outbox_event", schema=None) as batch_op:
        batch_op.drop_index("ix_outbox_event_tx_seq")
        batch_op.drop_column("tx")
