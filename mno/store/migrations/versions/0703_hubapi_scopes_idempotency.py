"""hub api: scopes on personal tokens; the first response to each Idempotency-Key

Revision ID: 0703_hubapi
Revises: 0702_access
Create Date: 2026-12-07 12:10:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

import mno.store.types

revision: str = "0703_hubapi"
down_revision: str | Sequence[str] | None = "0702_access"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("access_user_token", schema=None) as batch_op:
        batch_op.add_column(sa.Column("scopes", sa.JSON(), nullable=True))
    op.create_table(
        "hub_idempotency_key",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("created_at", mno.store.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", mno.store.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("credential", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("key", sqlmodel.sql.sqltypes.AutoString(length=255), nullable=False),
        sa.Column("request_hash", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("status", sa.Integer(), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("location", sqlmodel.sql.sqltypes.AutoString(length=500), nullable=True),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("credential", "key", name="uq_hub_idempotency_key"),
    )
    with op.batch_alter_table("hub_idempotency_key", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_hub_idempotency_key_credential"), ["credential"], unique=False
        )


def downgrade() -> None:
    with op.batch_alter_table("hub_idempotency_key", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_hub_idempotency_key_credential"))
    op.drop_table("hub_idempotency_key")
    with op.batch_alter_table("access_user_token", schema=None) as batch_op:
        batch_op.drop_column("scopes")
