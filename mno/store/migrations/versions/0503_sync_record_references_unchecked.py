"""sync: id maps and change rows reference their record without a foreign key

After 0502_sync, the two foreign keys to ``sync_record`` were a fifth of the database's
work in an initial sync (one lookup and row lock of the record per id map and per change
row). They guard nothing the writers do not: a record row is never deleted (a deleted
record keeps its row, with ``deleted_at``), a pulled record's id map and change row are
written in the transaction that inserts the record, and every other writer references a
record it has just read.

Revision ID: 0503_sync
Revises: 0502_sync
Create Date: 2026-11-29 10:00:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0503_sync"
down_revision: str | Sequence[str] | None = "0502_sync"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# SQLite stores these constraints without a name; batch mode names them on reflection.
NAMES = {"fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s"}
TABLES = ["sync_id_map", "sync_change"]


def _name(table: str) -> str:
    if op.get_bind().dialect.name == "sqlite":
        return f"fk_{table}_record_id_sync_record"
    return f"{table}_record_id_fkey"


def upgrade() -> None:
    for table in TABLES:
        with op.batch_alter_table(table, schema=None, naming_convention=NAMES) as batch_op:
            batch_op.drop_constraint(_name(table), type_="foreignkey")


def downgrade() -> None:
    for table in TABLES:
        with op.batch_alter_table(table, schema=None, naming_convention=NAMES) as batch_op:
            batch_op.create_foreign_key(_name(table), "sync_record", ["record_id"], ["id"])
