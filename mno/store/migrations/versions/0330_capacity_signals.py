"""nex capacity: signals followed by the capacity checks (low, exhausted, scale-out)

Revision ID: 0330_capacity
Revises: 0310_nex_edge
Create Date: 2026-12-07 15:00:00.000000

The ``pending_capacity`` instance status needs no change: ``nex_instance.status`` is a
plain string column (16 characters) without a check constraint.
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

import mno.store.types

revision: str = "0330_capacity"
down_revision: str | Sequence[str] | None = "0310_nex_edge"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "nex_capacity_signal",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("created_at", mno.store.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", mno.store.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("name", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("since", mno.store.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("detail", sa.JSON(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("nex_capacity_signal", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_nex_capacity_signal_name"), ["name"], unique=True)


def downgrade() -> None:
    with op.batch_alter_table("nex_capacity_signal", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_nex_capacity_signal_name"))
    op.drop_table("nex_capacity_signal")
