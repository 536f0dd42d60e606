"""nex: operator-supplied TLS certificates for instance domains (the HTTPS edge)

Revision ID: 0310_nex_edge
Revises: 0310_nex_restic
Create Date: 2026-12-07 03:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

import mno.store.types


revision: str = '0310_nex_edge'
down_revision: str | Sequence[str] | None = "0310_nex_restic"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table('nex_domain_cert',
    sa.Column('id', sa.Uuid(), nullable=False),
    sa.Column('created_at', mno.store.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('updated_at', mno.store.types.UTCDateTime(timezone=True), nullable=False),
    sa.Column('domain', sqlmodel.sql.sqltypes.AutoString(length=253), nullable=False),
    sa.Column('names', sa.JSON(), nullable=False),
    sa.Column('cert_pem', sa.Text(), nullable=False),
    sa.Column('key_enc', sa.Text(), nullable=False),
    sa.Column('fingerprint', sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
    sa.Column('not_after', mno.store.types.UTCDateTime(timezone=True), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('nex_domain_cert', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_nex_domain_cert_domain'), ['domain'], unique=True)


def downgrade() -> None:
    with op.batch_alter_table('nex_domain_cert', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_nex_domain_cert_domain'))

    op.drop_table('nex_domain_cert')
