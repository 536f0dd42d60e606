"""Hub API tables: the first response to each ``Idempotency-Key``.

A POST carrying ``Idempotency-Key`` inserts its row in the same transaction as the write
it makes, so a retry (or a concurrent twin) finds either no row and no write, or both.
The row keeps a hash of the request and the response to replay.
"""

from __future__ import annotations

import sqlalchemy as sa
from sqlmodel import Field

from mno.store.models.base import Base


class IdempotencyKey(Base, table=True):
    __tablename__ = "hub_idempotency_key"
    __table_args__ = (sa.UniqueConstraint("credential", "key", name="uq_hub_idempotency_key"),)

    credential: str = Field(max_length=64, index=True)
    key: str = Field(max_length=255)
    request_hash: str = Field(max_length=64)
    status: int = Field(default=0)
    body: str = Field(default="", sa_type=sa.Text)
    location: str | None = Field(default=None, max_length=500)
