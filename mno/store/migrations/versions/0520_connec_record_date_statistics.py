"""connec: statistics on the records' date fields (PostgreSQL 14+), so that the planner
estimates a date range filter and walks the page index instead of sorting the tenant

A filter such as ``transaction_date ge 2024-03-01 and transaction_date lt 2024-04-01``
reads ``data->>'transaction_date'``, an expression PostgreSQL keeps no statistics on:
it guessed a range matches 0.5 % of the records, so a filtered page looked like a few
hundred rows to sort rather than a walk of ``ix_sync_record_connec_page`` in page order
that stops at the page's end, and it sorted the whole tenant (127 ms on 100,000
invoices against 1 ms for the walk). An extended statistics object on each date field's
expression gives ANALYZE (and autovacuum) a histogram of its values; nothing is added to
the writes, unlike an expression index. The fields are the date fields of the canonical
entities' schemas; a text extraction never fails, so ANALYZE cannot trip on a value.
SQLite and PostgreSQL before 14 (no statistics on expressions) get nothing.

Revision ID: 0520_connec
Revises: 0511_connec
Create Date: 2026-12-07 15:00:00
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0520_connec"
down_revision: str | Sequence[str] | None = "0511_connec"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

DATE_FIELDS = (
    "transaction_date",
    "due_date",
    "closed_date",
    "expected_close_date",
    "hire_date",
    "termination_date",
)


def _supported() -> bool:
    bind = op.get_bind()
    return bind.dialect.name == "postgresql" and (bind.dialect.server_version_info or (0,)) >= (14,)


def upgrade() -> None:
    if not _supported():
        return
    for name in DATE_FIELDS:
        op.execute(
            f"CREATE STATISTICS IF NOT EXISTS st_sync_record_{name} "
            f"ON ((data ->> '{name}')) FROM sync_record"
        )


def downgrade() -> None:
    if not _supported():
        return
    for name in DATE_FIELDS:
        op.execute(f"DROP STATISTICS IF EXISTS st_sync_record_{name}")
