"""sso: people's credentials (argon2id hash, sealed TOTP secret, lockout) and MFA challenges

Revision ID: 0811_ssoweb
Revises: 0800_sso
Create Date: 2026-12-07 12:10:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

import mno.store.types

revision: str = "0811_ssoweb"
down_revision: str | Sequence[str] | None = "0800_sso"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "user_credential",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("created_at", mno.store.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", mno.store.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("password_hash", sqlmodel.sql.sqltypes.AutoString(length=300), nullable=True),
        sa.Column("password_set_at", mno.store.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("totp_secret_enc", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.Column("totp_enabled_at", mno.store.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("totp_last_step", sa.BigInteger(), nullable=True),
        sa.Column("failures", sa.Integer(), nullable=False),
        sa.Column("failures_since", mno.store.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("locked_until", mno.store.types.UTCDateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["user_id"], ["access_user.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("user_credential", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_user_credential_user_id"), ["user_id"], unique=True)
    op.create_table(
        "sso_mfa_challenge",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("created_at", mno.store.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", mno.store.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("token_hash", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("expires_at", mno.store.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("used_at", mno.store.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_url", sqlmodel.sql.sqltypes.AutoString(length=500), nullable=False),
        sa.ForeignKeyConstraint(["user_id"], ["access_user.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("sso_mfa_challenge", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_sso_mfa_challenge_token_hash"), ["token_hash"], unique=True
        )
        batch_op.create_index(
            batch_op.f("ix_sso_mfa_challenge_user_id"), ["user_id"], unique=False
        )


def downgrade() -> None:
    op.drop_table("sso_mfa_challenge")
    op.drop_table("user_credential")
