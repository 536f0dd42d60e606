"""sync: drop the redundant tenant foreign key and the unique id index of sync_change

Every created record writes a change row, so each constraint on ``sync_change`` is
checked once per record of an initial sync. Two of them guard nothing that is not
already guarded:

- ``tenant_id`` references ``tenant``: the row's ``record_id`` already references a
  ``sync_record`` whose own ``tenant_id`` references ``tenant``;
- the unique index on ``id``: the primary key is ``seq``, no query or foreign key looks
  a change up by ``id``, and the id is a fresh time-ordered UUID.

Revision ID: 0501_sync
Revises: 0500
Create Date: 2026-11-29 08:10:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0501_sync"
down_revision: str | Sequence[str] | None = "0500"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# SQLite stores both constraints without a name; batch mode names them on reflection.
NAMES = {
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
}


def _names() -> tuple[str, str]:
    if op.get_bind().dialect.name == "sqlite":
        return "fk_sync_change_tenant_id_tenant", "uq_sync_change_id"
    return "sync_change_tenant_id_fkey", "sync_change_id_key"


def upgrade() -> None:
    fk, uq = _names()
    with op.batch_alter_table("sync_change", schema=None, naming_convention=NAMES) as batch_op:
        batch_op.drop_constraint(fk, type_="foreignkey")
        batch_op.drop_constraint(uq, type_="unique")


def downgrade() -> None:
    fk, uq = _names()
    with op.batch_alter_table("sync_change", schema=None, naming_convention=NAMES) as batch_op:
        batch_op.create_unique_constraint(uq, ["id"])
        batch_op.create_foreign_key(fk, "tenant", ["tenant_id"], ["id"])


