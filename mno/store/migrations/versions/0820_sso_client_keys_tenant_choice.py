"""sso: private_key_jwt client keys, used client assertions, the tenant chosen at consent

Revision ID: 0820_sso
Revises: 0810_oidc
Create Date: 2026-12-07 15:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

import mno.store.types

revision: str = "0820_sso"
down_revision: str | Sequence[str] | None = "0810_oidc"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

S = sqlmodel.sql.sqltypes.AutoString
T = mno.store.types.UTCDateTime


def upgrade() -> None:
    with op.batch_alter_table("oidc_client", schema=None) as b:
        b.add_column(sa.Column("jwks", sa.JSON(), nullable=True))
        b.add_column(sa.Column("jwks_uri", S(length=2000), nullable=True))
    with op.batch_alter_table("oidc_consent", schema=None) as b:
        b.add_column(sa.Column("tenant_id", sa.Uuid(), nullable=True))
    op.create_table(
        "oidc_assertion",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("created_at", T(timezone=True), nullable=False),
        sa.Column("updated_at", T(timezone=True), nullable=False),
        sa.Column("client_id", sa.Uuid(), nullable=False),
        sa.Column("jti", S(length=200), nullable=False),
        sa.Column("expires_at", T(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(["client_id"], ["oidc_client.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("client_id", "jti", name="uq_oidc_assertion"),
    )
    with op.batch_alter_table("oidc_assertion", schema=None) as b:
        b.create_index(b.f("ix_oidc_assertion_client_id"), ["client_id"], unique=False)
        b.create_index(b.f("ix_oidc_assertion_expires_at"), ["expires_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("oidc_assertion", schema=None) as b:
        b.drop_index(b.f("ix_oidc_assertion_expires_at"))
        b.drop_index(b.f("ix_oidc_assertion_client_id"))
    op.drop_table("oidc_assertion")
    with op.batch_alter_table("oidc_consent", schema=None) as b:
        b.drop_column("tenant_id")
    with op.batch_alter_table("oidc_client", schema=None) as b:
        b.drop_column("jwks_uri")
        b.drop_column("jwks")
