"""nex: the volume a restore replaced, and the volume of a restore in progress

A restore fills a fresh volume and swaps it in only once the instance is healthy on it.
``previous_volume`` names the volume it replaced, kept until ``previous_volume_until``
(the housekeeper removes it then); ``restore_volume`` names the fresh volume while a
restore is in progress, so that the provisioner can clear what an interrupted restore left.

Revision ID: 0310_nex_restore
Revises: 0310_nex_iso
Create Date: 2026-12-07 03:00:00.000000
"""

from collections.abc import Sequence

import sqlalchemy as sa
import sqlmodel
from alembic import op

import mno.store.types

revision: str = "0310_nex_restore"
down_revision: str | Sequence[str] | None = "0310_nex_iso"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("nex_instance") as batch:
        batch.add_column(
            sa.Column(
                "previous_volume", sqlmodel.sql.sqltypes.AutoString(length=128), nullable=True
            )
        )
        batch.add_column(
            sa.Column(
                "previous_volume_until", mno.store.types.UTCDateTime(timezone=True), nullable=True
            )
        )
        batch.add_column(
            sa.Column("restore_volume", sqlmodel.sql.sqltypes.AutoString(length=128), nullable=True)
        )


def downgrade() -> None:
    with op.batch_alter_table("nex_instance") as batch:
        batch.drop_column("restore_volume")
        batch.drop_column("previous_volume_until")
        batch.drop_column("previous_volume")
