"""sso: a pending second step keeps a longer ``next`` (an /authorize URL with its query)

Revision ID: 0812_ssoweb
Revises: 0811_ssoweb
Create Date: 2026-12-07 12:20:00.000000
"""

from collections.abc import Sequence

import sqlmodel
from alembic import op

revision: str = "0812_ssoweb"
down_revision: str | Sequence[str] | None = "0811_ssoweb"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("sso_mfa_challenge", schema=None) as batch_op:
        batch_op.alter_column(
            "next_url",
            existing_type=sqlmodel.sql.sqltypes.AutoString(length=500),
            type_=sqlmodel.sql.sqltypes.AutoString(length=2048),
            existing_nullable=False,
        )


def downgrade() -> None:
    with op.batch_alter_table("sso_mfa_challenge", schema=None) as batch_op:
        batch_op.alter_column(
            "next_url",
            existing_type=sqlmodel.sql.sqltypes.AutoString(length=2048),
            type_=sqlmodel.sql.sqltypes.AutoString(length=500),
            existing_nullable=False,
        )
