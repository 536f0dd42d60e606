"""connec: app subscriptions to a tenant's entities; the index of a filtered page of one
tenant's records (tenant, entity, updated_at, id) on sync_record

Revision ID: 0510_connec
Revises: 0505_sync
Create Date: 2026-12-07 12:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

import mno.store.types

revision: str = "0510_connec"
down_revision: str | Sequence[str] | None = "0505_sync"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "connec_subscription",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("created_at", mno.store.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", mno.store.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("app_id", sa.Uuid(), nullable=False),
        sa.Column("endpoint_id", sa.Uuid(), nullable=False),
        sa.Column("entities", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(["app_id"], ["app.id"]),
        sa.ForeignKeyConstraint(["tenant_id"], ["tenant.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("endpoint_id"),
    )
    with op.batch_alter_table("connec_subscription", schema=None) as batch_op:
        batch_op.create_index(
            "ix_connec_subscription_tenant_app", ["tenant_id", "app_id"], unique=False
        )
    with op.batch_alter_table("sync_record", schema=None) as batch_op:
        batch_op.create_index(
            "ix_sync_record_connec_page",
            ["tenant_id", "entity", "updated_at", "id"],
            unique=False,
        )


def downgrade() -> None:
    with op.batch_alter_table("sync_record", schema=None) as batch_op:
        batch_op.drop_index("ix_sync_record_connec_page")
    with op.batch_alter_table("connec_subscription", schema=None) as batch_op:
        batch_op.drop_index("ix_connec_subscription_tenant_app")
    op.drop_table("connec_subscription")
