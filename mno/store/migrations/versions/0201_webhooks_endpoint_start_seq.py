"""webhooks: an endpoint takes the events from its start sequence on

An endpoint created before this revision keeps taking every event (start 0). Header
values stay as they are and are sealed when the endpoint's headers are next written.

Revision ID: 0201_webhooks
Revises: 0200
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0201_webhooks"
down_revision: str | Sequence[str] | None = "0200"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("webhook_endpoint") as batch:
        batch.add_column(
            sa.Column("start_seq", sa.BigInteger(), nullable=False, server_default="0")
        )


def downgrade() -> None:
    with op.batch_alter_table("webhook_endpoint") as batch:
        batch.drop_column("start_seq")
