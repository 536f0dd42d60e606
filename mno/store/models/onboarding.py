"""Onboarding tables: frontends (sign-up sites with their own credentials, origins and
branding) and the onboarding record of each lead signed up over the API.

A frontend's API secret and a lead's verification token are stored only as SHA-256
hashes of high-entropy random values.
"""

from __future__ import annotations

import uuid
from datetime import datetime

import sqlalchemy as sa
from sqlmodel import Field

import mno.store.models.tenancy  # noqa: F401  (tables its foreign keys point at)
from mno.store.models.base import Base
from mno.store.types import UTCDateTime


class Frontend(Base, table=True):
    __tablename__ = "frontend"

    name: str = Field(max_length=40, unique=True, index=True)
    customers: str = Field(default="shared", max_length=10)  # shared | isolated
    origins: list[str] = Field(default_factory=list, sa_type=sa.JSON)
    brand_name: str | None = Field(default=None, max_length=200)
    from_address: str | None = Field(default=None, max_length=300)
    logo_url: str | None = Field(default=None, max_length=500)
    key_id: str = Field(max_length=40, unique=True, index=True)
    secret_hash: str = Field(max_length=64)


class OnboardingLead(Base, table=True):
    """Who signed a lead up (a frontend or an app), its verification token once verified,
    and the tenant it became."""

    __tablename__ = "onboarding_lead"

    lead_id: uuid.UUID = Field(foreign_key="lead.id", unique=True, index=True)
    frontend_id: uuid.UUID | None = Field(default=None, foreign_key="frontend.id", index=True)
    app_id: uuid.UUID | None = Field(default=None, foreign_key="app.id", index=True)
    isolated: bool = Field(default=False)
    token_hash: str | None = Field(default=None, max_length=64, index=True)
    token_expires_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    tenant_id: uuid.UUID | None = Field(default=None, foreign_key="tenant.id", index=True)
