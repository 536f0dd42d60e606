"""billing: bundles (plans and apps sold as one product) and bundle subscriptions

A bundle has a fixed price per interval or a percentage off the sum of its plans' fixed
charges. A tenant's bundle subscription owns the subscriptions of its plans
(``billing_subscription.bundle_subscription_id``) and the app grants it made.

Revision ID: 0405_billing
Revises: 0404_billing
Create Date: 2026-12-06 23:55:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

import mno.store.types

revision: str = "0405_billing"
down_revision: str | Sequence[str] | None = "0404_billing"
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
        "billing_bundle",
        *_base(),
        sa.Column("code", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("name", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
        sa.Column("currency", sqlmodel.sql.sqltypes.AutoString(length=3), nullable=False),
        sa.Column("price", sqlmodel.sql.sqltypes.AutoString(length=40), nullable=True),
        sa.Column("percent_off", sqlmodel.sql.sqltypes.AutoString(length=20), nullable=True),
        sa.Column("interval_unit", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column("interval_every", sa.Integer(), nullable=False),
        sa.Column("plans", sa.JSON(), nullable=False),
        sa.Column("apps", sa.JSON(), nullable=False),
        sa.Column("archived_at", mno.store.types.UTCDateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("billing_bundle") as batch:
        batch.create_index(batch.f("ix_billing_bundle_code"), ["code"], unique=True)
    op.create_table(
        "billing_bundle_subscription",
        *_base(),
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("bundle_id", sa.Uuid(), nullable=False),
        sa.Column("bundle_code", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("status", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column("started_at", mno.store.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("cancel_at", mno.store.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("ended_at", mno.store.types.UTCDateTime(timezone=True), nullable=True),
        sa.Column("granted_apps", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(["bundle_id"], ["billing_bundle.id"]),
        sa.ForeignKeyConstraint(["tenant_id"], ["tenant.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("billing_bundle_subscription") as batch:
        for column in ("bundle_code", "bundle_id", "status", "tenant_id"):
            batch.create_index(batch.f(f"ix_billing_bundle_subscription_{column}"), [column])
    with op.batch_alter_table("billing_subscription") as batch:
        batch.add_column(sa.Column("bundle_subscription_id", sa.Uuid(), nullable=True))
        batch.create_index(
            batch.f("ix_billing_subscription_bundle_subscription_id"), ["bundle_subscription_id"]
        )


def downgrade() -> None:
    op.drop_index("ix_billing_subscription_bundle_subscription_id", "billing_subscription")
    if op.get_bind().dialect.name == "sqlite":
        # in place (SQLite 3.35+): a batch copy of the table would break the report
        # triggers that name it
        op.execute("ALTER TABLE billing_subscription DROP COLUMN bundle_subscription_id")
    else:
        op.drop_column("billing_subscription", "bundle_subscription_id")
    op.drop_table("billing_bundle_subscription")
    op.drop_table("billing_bundle")
