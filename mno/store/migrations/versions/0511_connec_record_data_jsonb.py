"""connec: sync_record.data as jsonb on PostgreSQL, with a GIN (jsonb_path_ops) index for
containment, so that a filtered page reads fields without parsing each document again;
the (tenant_id, entity) index goes (the page index's prefix)

PostgreSQL's ``json`` keeps the text and parses it for every field a filter reads, on
every row the filter looks at; ``jsonb`` is stored parsed. Equality filters compile to
``data @> '{"field": value}'``, which the GIN index answers. SQLite keeps its JSON text;
there the index is an empty partial one (``WHERE 0``), so both stores have the model's
indexes and SQLite writes pay nothing for it.

The index ``ix_sync_record_tenant_entity`` (tenant_id, entity) goes: it is the prefix of
``ix_sync_record_connec_page`` (tenant_id, entity, updated_at, id), which answers the same
lookups, and each record written updated both.

Revision ID: 0511_connec
Revises: 0510_connec
Create Date: 2026-12-07 13:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0511_connec"
down_revision: str | Sequence[str] | None = "0510_connec"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.alter_column(
            "sync_record",
            "data",
            type_=postgresql.JSONB(),
            existing_type=sa.JSON(),
            existing_nullable=False,
            postgresql_using="data::jsonb",
        )
    with op.batch_alter_table("sync_record", schema=None) as batch_op:
        batch_op.drop_index("ix_sync_record_tenant_entity")
        batch_op.create_index(
            "ix_sync_record_data",
            ["data"],
            unique=False,
            postgresql_using="gin",
            postgresql_ops={"data": "jsonb_path_ops"},
            sqlite_where=sa.text("0"),
        )


def downgrade() -> None:
    with op.batch_alter_table("sync_record", schema=None) as batch_op:
        batch_op.drop_index("ix_sync_record_data")
        batch_op.create_index(
            "ix_sync_record_tenant_entity", ["tenant_id", "entity"], unique=False
        )
    if op.get_bind().dialect.name == "postgresql":
        op.alter_column(
            "sync_record",
            "data",
            type_=sa.JSON(),
            existing_type=postgresql.JSONB(),
            existing_nullable=False,
            postgresql_using="data::json",
        )
