"""access: app grants record who granted them; packages of apps; custom roles; app
thumbnails and metadata

Revision ID: 0702_access
Revises: 0701_access
Create Date: 2026-12-07 00:45:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

import mno.store.types

revision: str = "0702_access"
down_revision: str | Sequence[str] | None = "0701_access"
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
        "app_package",
        *_base(),
        sa.Column("name", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("description", sqlmodel.sql.sqltypes.AutoString(length=500), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("app_package", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_app_package_name"), ["name"], unique=True)
    op.create_table(
        "app_package_app",
        *_base(),
        sa.Column("package_id", sa.Uuid(), nullable=False),
        sa.Column("app_id", sa.Uuid(), nullable=False),
        sa.ForeignKeyConstraint(["app_id"], ["app.id"]),
        sa.ForeignKeyConstraint(["package_id"], ["app_package.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("package_id", "app_id", name="uq_app_package_app"),
    )
    with op.batch_alter_table("app_package_app", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_app_package_app_app_id"), ["app_id"], unique=False)
        batch_op.create_index(
            batch_op.f("ix_app_package_app_package_id"), ["package_id"], unique=False
        )
    op.create_table(
        "app_package_grant",
        *_base(),
        sa.Column("package_id", sa.Uuid(), nullable=False),
        sa.Column("tenant_id", sa.Uuid(), nullable=False),
        sa.Column("can_edit", sa.Boolean(), nullable=False),
        sa.Column("granted_by", sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False),
        sa.ForeignKeyConstraint(["package_id"], ["app_package.id"]),
        sa.ForeignKeyConstraint(["tenant_id"], ["tenant.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("package_id", "tenant_id", name="uq_app_package_grant"),
    )
    with op.batch_alter_table("app_package_grant", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_app_package_grant_package_id"), ["package_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_app_package_grant_tenant_id"), ["tenant_id"], unique=False
        )
    with op.batch_alter_table("app_grant", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column(
                "granted_by",
                sqlmodel.sql.sqltypes.AutoString(length=40),
                nullable=False,
                server_default="system",
            )
        )
        batch_op.add_column(sa.Column("package_id", sa.Uuid(), nullable=True))
        batch_op.create_index(batch_op.f("ix_app_grant_package_id"), ["package_id"], unique=False)
        batch_op.create_foreign_key(
            "fk_app_grant_package_id", "app_package", ["package_id"], ["id"]
        )
    with op.batch_alter_table("app_grant", schema=None) as batch_op:
        batch_op.alter_column("granted_by", server_default=None)
    with op.batch_alter_table("app", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("thumbnail", sqlmodel.sql.sqltypes.AutoString(length=500), nullable=True)
        )
        batch_op.add_column(sa.Column("meta", sa.JSON(), nullable=False, server_default="{}"))
    with op.batch_alter_table("app", schema=None) as batch_op:
        batch_op.alter_column("meta", server_default=None)
    op.create_table(
        "access_role",
        *_base(),
        sa.Column("name", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=False),
        sa.Column("tenant_id", sa.Uuid(), nullable=True),
        sa.Column("permissions", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(["tenant_id"], ["tenant.id"]),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("tenant_id", "name", name="uq_access_role"),
    )
    with op.batch_alter_table("access_role", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_access_role_name"), ["name"], unique=False)
        batch_op.create_index(batch_op.f("ix_access_role_tenant_id"), ["tenant_id"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("access_role", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_access_role_tenant_id"))
        batch_op.drop_index(batch_op.f("ix_access_role_name"))
    op.drop_table("access_role")
    with op.batch_alter_table("app", schema=None) as batch_op:
        batch_op.drop_column("meta")
        batch_op.drop_column("thumbnail")
    with op.batch_alter_table("app_grant", schema=None) as batch_op:
        batch_op.drop_constraint("fk_app_grant_package_id", type_="foreignkey")
        batch_op.drop_index(batch_op.f("ix_app_grant_package_id"))
        batch_op.drop_column("package_id")
        batch_op.drop_column("granted_by")
    for table in ("app_package_grant", "app_package_app"):
        op.drop_table(table)
    with op.batch_alter_table("app_package", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_app_package_name"))
    op.drop_table("app_package")
