"""sync: the hot tables check their parent once per page instead of once per row

An initial sync writes a record, an id map and a change row per pulled record, and a
foreign key on each checks its parent row once per row: 100,000 records meant 300,000
lookups (and row locks) of the same tenant, connection and run. These three foreign keys
go; the sync engine checks the parents once per page instead, in the page transaction:

- ``sync_id_map.connection_id``: the page transaction locks its connection row (``FOR
  KEY SHARE`` on PostgreSQL, as the foreign key did for each row), and ``connection
  remove`` locks that row ``FOR UPDATE`` before it deletes the connection's id maps, so
  a page either commits before the removal deletes its id maps or finds the connection
  gone and writes nothing;
- ``sync_record.tenant_id``: the connection's own ``tenant_id`` references the tenant,
  and a tenant with synced records cannot be deleted (``tenants.delete`` refuses);
- ``sync_change.run_id``: the page transaction updates its run's row (locking it), and
  retention deletes only finished runs without change rows.

The foreign keys to ``sync_record`` stay: those rows are never deleted.

Revision ID: 0502_sync
Revises: 0501_sync
Create Date: 2026-11-29 09:40:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0502_sync"
down_revision: str | Sequence[str] | None = "0501_sync"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# SQLite stores these constraints without a name; batch mode names them on reflection.
NAMES = {"fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s"}
KEYS = [
    ("sync_record", "tenant_id", "tenant"),
    ("sync_id_map", "connection_id", "sync_connection"),
    ("sync_change", "run_id", "sync_run"),
]


def _name(table: str, column: str, parent: str) -> str:
    if op.get_bind().dialect.name == "sqlite":
        return f"fk_{table}_{column}_{parent}"
    return f"{table}_{column}_fkey"


def upgrade() -> None:
    for table, column, parent in KEYS:
        with op.batch_alter_table(table, schema=None, naming_convention=NAMES) as batch_op:
            batch_op.drop_constraint(_name(table, column, parent), type_="foreignkey")


def downgrade() -> None:
    for table, column, parent in KEYS:
        with op.batch_alter_table(table, schema=None, naming_convention=NAMES) as batch_op:
            batch_op.create_foreign_key(_name(table, column, parent), parent, [column], ["id"])
