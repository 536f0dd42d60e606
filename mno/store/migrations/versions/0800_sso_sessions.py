"""sso: browser sessions of the hub's sign-in page

Revision ID: 0800_sso
Revises: 0702_access
Create Date: 2026-12-07 06:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

import mno.store.types

revision: str = "0800_sso"
down_revision: str | Sequence[str] | None = "0702_access"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "sso_session",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("created_at", mno.store.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", mno.store.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("token_hash", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("expires_at", mno.store.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("mfa_at", mno.store.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("ended_at", mno.store.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("user_agent", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
        sa.ForeignKeyConstraint(["user_id"], ["access_user.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("sso_session", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_sso_session_token_hash"), ["token_hash"], unique=True)
        batch_op.create_index(batch_op.f("ix_sso_session_user_id"), ["user_id"], unique=False)


def downgrade() -> None:
    op.drop_table("sso_session")
