"""Connec tables: the apps' subscriptions to a tenant's entities (each one a webhook
endpoint of the tenant that takes ``connec.<entity>.*`` events, never the ones its own app
wrote), and the index a filtered page of one tenant's records reads (tenant, entity,
updated_at, id) on the sync engine's ``sync_record``."""

from __future__ import annotations

import uuid
from typing import Any

import sqlalchemy as sa
from sqlmodel import Field

import mno.store.models.sync  # noqa: F401  (the table the page index is on)
from mno.store.models.base import Base
from mno.store.models.sync import SyncRecord
from mno.store.types import table_of


class ConnecSubscription(Base, table=True):
    """An app's subscription to some entities of a tenant, delivered to a webhook endpoint."""

    __tablename__ = "connec_subscription"
    __table_args__ = (sa.Index("ix_connec_subscription_tenant_app", "tenant_id", "app_id"),)

    tenant_id: uuid.UUID = Field(foreign_key="tenant.id")
    app_id: uuid.UUID = Field(foreign_key="app.id")
    endpoint_id: uuid.UUID = Field(unique=True)  # the webhook endpoint (removed with it)
    entities: list[str] = Field(default_factory=list, sa_type=sa.JSON)


_record: Any = table_of(SyncRecord)
PAGE_INDEX = sa.Index(
    "ix_sync_record_connec_page",
    _record.c.tenant_id,
    _record.c.entity,
    _record.c.updated_at,
    _record.c.id,
)
