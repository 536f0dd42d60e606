"""onboarding: frontends (credentials, origins, branding) and the onboarding record of
each lead signed up over the API

Revision ID: 0710_onboard
Revises: 0702_access
Create Date: 2026-12-07 12:10:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

import mno.store.types

revision: str = "0710_onboard"
down_revision: str | Sequence[str] | None = "0702_access"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _base() -> list[sa.Column]:  # type: ignore[type-arg]
    return [
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("created_at", mno.store.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", mno.store.types.UTCDateTime(timezone=True), nullable=False),
    ]


def upgrade() -> None:
    op.create_table(
        "frontend",
        *_base(),
        sa.Column("name", sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False),
        sa.Column("customers", sqlmodel.sql.sqltypes.AutoString(length=10), nullable=False),
        sa.Column("origins", sa.JSON(), nullable=False),
        sa.Column("brand_name", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=True),
        sa.Column("from_address", sqlmodel.sql.sqltypes.AutoString(length=300), nullable=True),
        sa.Column("logo_url", sqlmodel.sql.sqltypes.AutoString(length=500), nullable=True),
        sa.Column("key_id", sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False),
        sa.Column("secret_hash", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("frontend", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_frontend_name"), ["name"], unique=True)
        batch_op.create_index(batch_op.f("ix_frontend_key_id"), ["key_id"], unique=True)
    op.create_table(
        "onboarding_lead",
        *_base(),
        sa.Column("lead_id", sa.Uuid(), nullable=False),
        sa.Column("frontend_id", sa.Uuid(), nullable=True),
        sa.Column("app_id", sa.Uuid(), nullable=True),
        sa.Column("isolated", sa.Boolean(), nullable=False),
        sa.Column("token_hash", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=True),
        sa.Column(
            "token_expires_at", mno.store.types.UTCDateTime(timezone=True), nullable=True
        ),
        sa.Column("tenant_id", sa.Uuid(), nullable=True),
        sa.ForeignKeyConstraint(["lead_id"], ["lead.id"]),
        sa.ForeignKeyConstraint(["frontend_id"], ["frontend.id"]),
        sa.ForeignKeyConstraint(["app_id"], ["app.id"]),
        sa.ForeignKeyConstraint(["tenant_id"], ["tenant.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("onboarding_lead", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_onboarding_lead_lead_id"), ["lead_id"], unique=True)
        batch_op.create_index(
            batch_op.f("ix_onboarding_lead_frontend_id"), ["frontend_id"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_onboarding_lead_app_id"), ["app_id"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_onboarding_lead_token_hash"), ["token_hash"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_onboarding_lead_tenant_id"), ["tenant_id"], unique=False
        )


def downgrade() -> None:
    op.drop_table("onboarding_lead")
    op.drop_table("frontend")
