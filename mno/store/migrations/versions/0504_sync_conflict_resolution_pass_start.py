"""sync: conflicts are resolved by an operator; a cursor keeps its last pass's start

``sync_conflict`` gets ``resolution`` (local|remote), ``resolved_by`` and
``resolved_at`` (NULL while the conflict is open) and an index by connection and
``resolved_at`` for listing a connection's (open) conflicts. ``sync_cursor`` gets
``pass_started_at``, the start of the last complete pass, shown by ``mno sync state``.

Revision ID: 0504_sync
Revises: 0503_sync
Create Date: 2026-12-06 23:50:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

import mno.store.types

revision: str = "0504_sync"
down_revision: str | Sequence[str] | None = "0503_sync"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("sync_conflict") as batch:
        batch.add_column(
            sa.Column("resolution", sqlmodel.sql.sqltypes.AutoString(length=16), nullable=True)
        )
        batch.add_column(
            sa.Column("resolved_by", sqlmodel.sql.sqltypes.AutoString(length=200), nullable=True)
        )
        batch.add_column(
            sa.Column("resolved_at", mno.store.types.UTCDateTime(timezone=True), nullable=True)
        )
        batch.create_index("ix_sync_conflict_connection", ["connection_id", "resolved_at"])
    with op.batch_alter_table("sync_cursor") as batch:
        batch.add_column(
            sa.Column("pass_started_at", mno.store.types.UTCDateTime(timezone=True), nullable=True)
        )


def downgrade() -> None:
    with op.batch_alter_table("sync_cursor") as batch:
        batch.drop_column("pass_started_at")
    with op.batch_alter_table("sync_conflict") as batch:
        batch.drop_index("ix_sync_conflict_connection")
        batch.drop_column("resolved_at")
        batch.drop_column("resolved_by")
        batch.drop_column("resolution")
