"""nex: swarm services' desired replicas, running tasks and last task error

Revision ID: 0320_swarm
Revises: 0310_nex_edge
Create Date: 2026-12-07 15:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision: str = "0320_swarm"
down_revision: str | Sequence[str] | None = "0310_nex_edge"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("nex_instance", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("replicas", sa.Integer(), nullable=False, server_default="1")
        )
        batch_op.add_column(sa.Column("tasks_running", sa.Integer(), nullable=True))
        batch_op.add_column(
            sa.Column("task_error", sqlmodel.sql.sqltypes.AutoString(length=500), nullable=True)
        )


def downgrade() -> None:
    with op.batch_alter_table("nex_instance", schema=None) as batch_op:
        batch_op.drop_column("task_error")
        batch_op.drop_column("tasks_running")
        batch_op.drop_column("replicas")
