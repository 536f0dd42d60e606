"""Webhook and email-notification tables: endpoints, rules, deliveries, attempts, buckets."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlmodel import Field

from mno.store.models.base import Base, WorkItem
from mno.store.types import UTCDateTime


class WebhookEndpoint(Base, table=True):
    """A receiver URL with its filters, limits and encrypted signing secrets.

    ``headers`` maps each custom header to ``secret:NAME`` (resolved when sending) or to
    its value sealed by ``mno.crypto`` (``sealed:…``); a plain value is never stored."""

    __tablename__ = "webhook_endpoint"

    url: str = Field(max_length=2000)
    tenant_id: uuid.UUID | None = Field(default=None, index=True)
    events: list[str] = Field(default_factory=list, sa_type=sa.JSON)  # [] = every event
    description: str = Field(default="", max_length=500)
    rate_limit: float | None = Field(default=None)  # deliveries per second, all processes
    ordered: bool = Field(default=False)
    timeout_s: float = Field(default=15.0)
    headers: dict[str, str] = Field(default_factory=dict, sa_type=sa.JSON)
    enabled: bool = Field(default=True, index=True)
    disabled_reason: str | None = Field(default=None, max_length=500)
    secret_enc: str = Field()  # whsec_… sealed by mno.crypto
    old_secret_enc: str | None = Field(default=None)
    old_secret_until: datetime | None = Field(default=None, sa_type=UTCDateTime)
    failing_since: datetime | None = Field(default=None, sa_type=UTCDateTime)
    # the endpoint takes events from this outbox seq on: by default the first one after
    # its creation (Stripe's rule), earlier with --from-event / --since
    start_seq: int = Field(default=0, sa_type=sa.BigInteger)


class NotifyRule(Base, table=True):
    """Email these events to a tenant's primary contact or a fixed address."""

    __tablename__ = "notify_rule"

    events: list[str] = Field(default_factory=list, sa_type=sa.JSON)
    email_to: str = Field(max_length=320)  # "tenant-primary" or an address
    template: str = Field(max_length=100)
    tenant_id: uuid.UUID | None = Field(default=None, index=True)
    enabled: bool = Field(default=True)


class NotifyTemplate(Base, table=True):
    """A per-tenant (or platform-wide, tenant_id NULL) override of a built-in template."""

    __tablename__ = "notify_template"
    __table_args__ = (sa.UniqueConstraint("name", "tenant_id", name="uq_notify_template"),)

    name: str = Field(max_length=100, index=True)
    tenant_id: uuid.UUID | None = Field(default=None, index=True)
    subject: str = Field(max_length=500)
    body: str = Field()


class WebhookDelivery(Base, WorkItem, table=True):
    """One event to one target (an endpoint, a notify rule, or a direct email's recipient);
    retried until it lands.

    status: pending (due / retry scheduled), succeeded, exhausted, cancelled.
    ``last_status`` is the last attempt's outcome (``failed`` after a failed attempt).
    """

    __tablename__ = "webhook_delivery"
    __table_args__ = (
        sa.UniqueConstraint("event_id", "target_id", name="uq_webhook_delivery_event_target"),
        sa.Index("ix_webhook_delivery_due", "status", "next_attempt_at"),
        sa.Index("ix_webhook_delivery_target_seq", "target_id", "seq"),
    )

    channel: str = Field(default="webhook", max_length=16)  # webhook | email | direct_email
    target_id: uuid.UUID = Field()
    event_id: uuid.UUID = Field(index=True)
    seq: int = Field(sa_type=sa.BigInteger)
    event_type: str = Field(max_length=100, index=True)
    event_at: datetime = Field(sa_type=UTCDateTime)
    tenant_id: uuid.UUID | None = Field(default=None)
    body: str = Field()  # the compact JSON body, signed per attempt
    ordered: bool = Field(default=False)
    last_status: str | None = Field(default=None, max_length=16)
    last_code: int | None = Field(default=None)
    first_failed_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    done_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


class WebhookAttempt(Base, table=True):
    """One try of one delivery."""

    __tablename__ = "webhook_attempt"

    delivery_id: uuid.UUID = Field(index=True)
    at: datetime = Field(sa_type=UTCDateTime)
    status_code: int | None = Field(default=None)
    latency_ms: float = Field(default=0.0)
    error_class: str | None = Field(default=None, max_length=100)
    response: str | None = Field(default=None)  # first 4 KB
    owner: str = Field(default="", max_length=200)


class WebhookFanout(Base, table=True):
    """Fan-out state of an outbox consumer: highest seq read and the gaps below it."""

    __tablename__ = "webhook_fanout"

    name: str = Field(max_length=64, unique=True)
    high: int = Field(default=0, sa_type=sa.BigInteger)
    gaps: dict[str, Any] = Field(default_factory=dict, sa_type=sa.JSON)  # seq -> first seen


class WebhookBucket(Base, table=True):
    """A token bucket per rate-limited endpoint, shared by every dispatcher process."""

    __tablename__ = "webhook_bucket"

    endpoint_id: uuid.UUID = Field(unique=True)
    tokens: float = Field(default=0.0)
    refilled_at: datetime = Field(sa_type=UTCDateTime)
