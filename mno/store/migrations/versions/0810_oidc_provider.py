"""oidc: OpenID Connect provider keys, clients, consents, codes and tokens

Revision ID: 0810_oidc
Revises: 0800_sso
Create Date: 2026-12-07 12:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

import mno.store.types

revision: str = "0810_oidc"
down_revision: str | Sequence[str] | None = "0800_sso"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

S = sqlmodel.sql.sqltypes.AutoString
T = mno.store.types.UTCDateTime


def _base() -> list[sa.Column]:  # type: ignore[type-arg]
    return [
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("created_at", T(timezone=True), nullable=False),
        sa.Column("updated_at", T(timezone=True), nullable=False),
    ]


def upgrade() -> None:
    op.create_table(
        "oidc_key",
        *_base(),
        sa.Column("kid", S(length=64), nullable=False),
        sa.Column("alg", S(length=8), nullable=False),
        sa.Column("status", S(length=10), nullable=False),
        sa.Column("private_sealed", sa.Text(), nullable=False),
        sa.Column("public_jwk", sa.JSON(), nullable=False),
        sa.Column("retired_at", T(timezone=True), nullable=True),
        sa.Column("publish_until", T(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("oidc_key", schema=None) as b:
        b.create_index(b.f("ix_oidc_key_kid"), ["kid"], unique=True)

    op.create_table(
        "oidc_client",
        *_base(),
        sa.Column("app_id", sa.Uuid(), nullable=False),
        sa.Column("client_id", S(length=80), nullable=False),
        sa.Column("secret_hash", S(length=64), nullable=True),
        sa.Column("public", sa.Boolean(), nullable=False),
        sa.Column("redirect_uris", sa.JSON(), nullable=False),
        sa.Column("logout_uris", sa.JSON(), nullable=False),
        sa.Column("id_token_alg", S(length=8), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(["app_id"], ["app.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("oidc_client", schema=None) as b:
        b.create_index(b.f("ix_oidc_client_app_id"), ["app_id"], unique=True)
        b.create_index(b.f("ix_oidc_client_client_id"), ["client_id"], unique=True)

    op.create_table(
        "oidc_consent",
        *_base(),
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("client_id", sa.Uuid(), nullable=False),
        sa.Column("scope", S(length=500), nullable=False),
        sa.ForeignKeyConstraint(["client_id"], ["oidc_client.id"]),
        sa.ForeignKeyConstraint(["user_id"], ["access_user.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("user_id", "client_id", name="uq_oidc_consent"),
    )
    with op.batch_alter_table("oidc_consent", schema=None) as b:
        b.create_index(b.f("ix_oidc_consent_client_id"), ["client_id"], unique=False)
        b.create_index(b.f("ix_oidc_consent_user_id"), ["user_id"], unique=False)

    op.create_table(
        "oidc_code",
        *_base(),
        sa.Column("code_hash", S(length=64), nullable=False),
        sa.Column("client_id", sa.Uuid(), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("session_id", sa.Uuid(), nullable=True),
        sa.Column("redirect_uri", S(length=2000), nullable=False),
        sa.Column("scope", S(length=500), nullable=False),
        sa.Column("nonce", S(length=500), nullable=True),
        sa.Column("code_challenge", S(length=128), nullable=True),
        sa.Column("auth_time", T(timezone=True), nullable=False),
        sa.Column("expires_at", T(timezone=True), nullable=False),
        sa.Column("used_at", T(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["client_id"], ["oidc_client.id"]),
        sa.ForeignKeyConstraint(["tenant_id"], ["tenant.id"]),
        sa.ForeignKeyConstraint(["user_id"], ["access_user.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("oidc_code", schema=None) as b:
        b.create_index(b.f("ix_oidc_code_client_id"), ["client_id"], unique=False)
        b.create_index(b.f("ix_oidc_code_code_hash"), ["code_hash"], unique=True)
        b.create_index(b.f("ix_oidc_code_user_id"), ["user_id"], unique=False)

    op.create_table(
        "oidc_token",
        *_base(),
        sa.Column("kind", S(length=8), nullable=False),
        sa.Column("lookup", S(length=64), nullable=False),
        sa.Column("family_id", sa.Uuid(), nullable=False),
        sa.Column("code_id", sa.Uuid(), nullable=True),
        sa.Column("client_id", sa.Uuid(), nullable=False),
        sa.Column("user_id", sa.Uuid(), nullable=False),
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("session_id", sa.Uuid(), nullable=True),
        sa.Column("scope", S(length=500), nullable=False),
        sa.Column("auth_time", T(timezone=True), nullable=False),
        sa.Column("expires_at", T(timezone=True), nullable=False),
        sa.Column("used_at", T(timezone=True), nullable=True),
        sa.Column("revoked_at", T(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["client_id"], ["oidc_client.id"]),
        sa.ForeignKeyConstraint(["tenant_id"], ["tenant.id"]),
        sa.ForeignKeyConstraint(["user_id"], ["access_user.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("oidc_token", schema=None) as b:
        b.create_index(b.f("ix_oidc_token_client_id"), ["client_id"], unique=False)
        b.create_index(b.f("ix_oidc_token_code_id"), ["code_id"], unique=False)
        b.create_index(b.f("ix_oidc_token_expires_at"), ["expires_at"], unique=False)
        b.create_index(b.f("ix_oidc_token_family_id"), ["family_id"], unique=False)
        b.create_index(b.f("ix_oidc_token_lookup"), ["lookup"], unique=True)
        b.create_index(b.f("ix_oidc_token_user_id"), ["user_id"], unique=False)


def downgrade() -> None:
    for table in ("oidc_token", "oidc_code", "oidc_consent", "oidc_client", "oidc_key"):
        op.drop_table(table)
