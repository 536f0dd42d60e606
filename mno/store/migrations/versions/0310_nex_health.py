"""nex: per-app health-check interval, the spec an instance's container runs

Revision ID: 0310_nex_health
Revises: 0310_nex_restore
Create Date: 2026-12-07 03:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op


revision: str = '0310_nex_health'
down_revision: str | Sequence[str] | None = "0310_nex_restore"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table('app', schema=None) as batch_op:
        batch_op.add_column(
            sa.Column('health_interval', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=True)
        )
    with op.batch_alter_table('nex_instance', schema=None) as batch_op:
        batch_op.add_column(sa.Column('deployed', sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('nex_instance', schema=None) as batch_op:
        batch_op.drop_column('deployed')
    with op.batch_alter_table('app', schema=None) as batch_op:
        batch_op.drop_column('health_interval')
