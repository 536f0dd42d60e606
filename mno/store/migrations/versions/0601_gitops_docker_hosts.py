"""gitops: Docker hosts kept in the store (DockerHost documents, mno host add)

Revision ID: 0601_gitops
Revises: 0600
Create Date: 2026-11-29 06:40:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

import mno.store.types


revision: str = '0601_gitops'
down_revision: str | Sequence[str] | None = '0600'
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('nex_host',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('created_at', mno.store.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('updated_at', mno.store.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('name', sqlmodel.sql.sqltypes.AutoString(length=63), nullable=False),
    sa.Column('base_url', sqlmodel.sql.sqltypes.AutoString(length=500), nullable=False),
    sa.Column('publish_address', sqlmodel.sql.sqltypes.AutoString(length=253), nullable=False),
    sa.Column('memory', sqlmodel.sql.sqltypes.AutoString(length=16), nullable=True),
    sa.Column('max_instances', sa.Integer(), nullable=True),
    sa.Column('labels', sa.JSON(), nullable=False),
    sa.Column('timeout', sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('nex_host', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_nex_host_name'), ['name'], unique=True)


def downgrade() -> None:
    with op.batch_alter_table('nex_host', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_nex_host_name'))

    op.drop_table('nex_host')
