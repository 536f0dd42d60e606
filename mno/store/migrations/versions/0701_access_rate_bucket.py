"""access rate bucket: one token bucket per app key, shared by API processes

Revision ID: 0701_access
Revises: 0700
Create Date: 2026-11-29 06:40:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

import mno.store.types

revision: str = "0701_access"
down_revision: str | Sequence[str] | None = "0700"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "access_rate_bucket",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("created_at", mno.store.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", mno.store.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("key_id", sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False),
        sa.Column("tokens", sa.Float(), nullable=False),
        sa.Column("refilled_at", mno.store.types.UTCDateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("key_id"),
    )


def downgrade() -> None:
    op.drop_table("access_rate_bucket")
