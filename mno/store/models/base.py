"""The base every table inherits: a UUID ``id`` and UTC ``created_at``/``updated_at``."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlmodel import Field, SQLModel

from mno import clock
from mno.store.types import UTCDateTime, new_id


def utc_column(nullable: bool = True, index: bool = False) -> Any:
    return sa.Column(UTCDateTime(), nullable=nullable, index=index)


def json_column(nullable: bool = False) -> Any:
    return sa.Column(sa.JSON(), nullable=nullable)


class Base(SQLModel):
    id: uuid.UUID = Field(default_factory=new_id, primary_key=True)
    created_at: datetime = Field(
        default_factory=clock.now, sa_column_kwargs={"nullable": False}, sa_type=UTCDateTime
    )
    updated_at: datetime = Field(
        default_factory=clock.now, sa_column_kwargs={"nullable": False}, sa_type=UTCDateTime
    )

    def touch(self) -> None:
        self.updated_at = clock.now()


class WorkItem(SQLModel):
    """Columns every work queue carries; claim them through ``mno.store.leases``."""

    status: str = Field(default="pending", max_length=32, index=True)
    lease_owner: str | None = Field(default=None, max_length=200)
    lease_until: datetime | None = Field(default=None, sa_type=UTCDateTime)
    attempts: int = Field(default=0)
    next_attempt_at: datetime = Field(
        default_factory=clock.now, sa_type=UTCDateTime, sa_column_kwargs={"nullable": False}
    )
    last_error: str | None = Field(default=None)
