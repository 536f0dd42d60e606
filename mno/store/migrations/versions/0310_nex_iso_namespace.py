"""nex: settings table holding the platform namespace

Revision ID: 0310_nex_iso
Revises: 0300
Create Date: 2026-12-07 02:50:00.000000

The namespace is created with the table, so every process sharing the store reads the
same one. A store upgraded in place gets a new namespace too: its containers created
before it carry no ``mno.namespace`` label and are still its own, because their
``mno.instance`` label is one of its instance ids (see ``mno.nex.namespace``).
"""

import secrets
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime

import sqlalchemy as sa
import sqlmodel
from alembic import op

import mno.store.types


revision: str = "0310_nex_iso"
down_revision: str | Sequence[str] | None = "0300"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    table = op.create_table(
        "nex_setting",
        sa.Column("id", sa.Uuid(), nullable=False),
        sa.Column("created_at", mno.store.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("updated_at", mno.store.types.UTCDateTime(timezone=True), nullable=False),
        sa.Column("key", sqlmodel.sql.sqltypes.AutoString(length=63), nullable=False),
        sa.Column("value", sqlmodel.sql.sqltypes.AutoString(length=500), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("nex_setting", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_nex_setting_key"), ["key"], unique=True)
    now = datetime.now(UTC)
    op.bulk_insert(
        table,
        [
            {
                "id": uuid.uuid4(),
                "created_at": now,
                "updated_at": now,
                "key": "namespace",
                "value": secrets.token_hex(4),
            }
        ],
    )


def downgrade() -> None:
    with op.batch_alter_table("nex_setting", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_nex_setting_key"))

    op.drop_table("nex_setting")
