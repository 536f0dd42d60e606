"""nex: restic backup runs (nex_backup) and an app's backup schedule (app.backup_every)

Revision ID: 0310_nex_restic
Revises: 0310_nex_health
Create Date: 2026-12-07 02:50:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

import mno.store.types


revision: str = '0310_nex_restic'
down_revision: str | Sequence[str] | None = "0310_nex_health"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('nex_backup',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('created_at', mno.store.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('updated_at', mno.store.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('instance_id', sa.Uuid(), nullable=False),
    sa.Column('status', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('trigger', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
    sa.Column('repository', sqlmodel.sql.sqltypes.AutoString(length=500), nullable=False),
    sa.Column('snapshot_id', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True),
    sa.Column('bytes', sa.BigInteger(), nullable=True),
    sa.Column('owner', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=True),
    sa.Column('started_at', mno.store.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('finished_at', mno.store.types.UTCDateTime(timezone=True), nullable=True),
    sa.Column('error', sqlmodel.sql.sqltypes.AutoString(), nullable=True),
    sa.ForeignKeyConstraint(['instance_id'], ['nex_instance.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('nex_backup', schema=None) as batch_op:
        batch_op.create_index('ix_nex_backup_instance_started', ['instance_id', 'started_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_nex_backup_instance_id'), ['instance_id'], unique=False)
    with op.batch_alter_table('app', schema=None) as batch_op:
        batch_op.add_column(sa.Column('backup_every', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('app', schema=None) as batch_op:
        batch_op.drop_column('backup_every')
    with op.batch_alter_table('nex_backup', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_nex_backup_instance_id'))
        batch_op.drop_index('ix_nex_backup_instance_started')
    op.drop_table('nex_backup')
