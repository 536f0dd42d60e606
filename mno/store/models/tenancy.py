"""Tenancy tables: tenants and their hierarchy, domains, contacts, leads, apps and grants."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlmodel import Field

from mno.store.models.base import Base
from mno.store.types import UTCDateTime


class Tenant(Base, table=True):
    __tablename__ = "tenant"

    key: str = Field(max_length=40, unique=True, index=True)
    name: str = Field(max_length=200)
    tier: str = Field(default="pooled", max_length=10)
    status: str = Field(default="pending_provision", max_length=32, index=True)
    status_reason: str | None = Field(default=None, max_length=500)
    parent_id: uuid.UUID | None = Field(default=None, foreign_key="tenant.id", index=True)
    currency: str = Field(default="USD", max_length=3)
    timezone: str = Field(default="UTC", max_length=64)
    address: str | None = Field(default=None, max_length=200)
    city: str | None = Field(default=None, max_length=100)
    zip: str | None = Field(default=None, max_length=20)
    region: str | None = Field(default=None, max_length=100)
    country: str | None = Field(default=None, max_length=2)
    in_arrears: bool = Field(default=False)
    meta: dict[str, Any] = Field(
        default_factory=dict, sa_column=sa.Column("metadata", sa.JSON(), nullable=False)
    )
    resources: dict[str, Any] = Field(default_factory=dict, sa_type=sa.JSON)


class TenantDomain(Base, table=True):
    __tablename__ = "tenant_domain"

    tenant_id: uuid.UUID = Field(foreign_key="tenant.id", index=True)
    domain: str = Field(max_length=253, unique=True, index=True)


class TenantContact(Base, table=True):
    __tablename__ = "tenant_contact"

    tenant_id: uuid.UUID = Field(foreign_key="tenant.id", index=True)
    name: str = Field(max_length=200)
    email: str = Field(max_length=254)
    type: str = Field(default="admin", max_length=20)
    primary: bool = Field(default=False)


class Lead(Base, table=True):
    __tablename__ = "lead"

    email: str = Field(max_length=254, index=True)
    first_name: str = Field(max_length=100)
    last_name: str = Field(max_length=100)
    company: str = Field(max_length=200)
    address: str | None = Field(default=None, max_length=200)
    city: str | None = Field(default=None, max_length=100)
    zip: str | None = Field(default=None, max_length=20)
    country: str | None = Field(default=None, max_length=2)
    status: str = Field(default="pending", max_length=20, index=True)
    code_hash: str | None = Field(default=None, max_length=64)
    code_expires_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    failed_attempts: int = Field(default=0)
    verified_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    converted_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    tenant_id: uuid.UUID | None = Field(default=None, foreign_key="tenant.id")


class App(Base, table=True):
    __tablename__ = "app"

    code: str = Field(max_length=64, unique=True, index=True)
    name: str = Field(max_length=200)
    stack: str = Field(default="cloud", max_length=16)
    type: str = Field(default="app", max_length=8)
    access: str = Field(default="own", max_length=10)
    owner_id: uuid.UUID = Field(foreign_key="tenant.id", index=True)
    enabled: bool = Field(default=True)
    multi_instantiable: bool = Field(default=False)
    image: str | None = Field(default=None, max_length=300)
    port: int | None = Field(default=None)
    env: dict[str, Any] = Field(default_factory=dict, sa_type=sa.JSON)
    health_path: str | None = Field(default=None, max_length=200)
    # seconds between health checks of a running instance, e.g. "10s" (nex apps; None:
    # the provisioner's default)
    health_interval: str | None = Field(default=None, max_length=16)
    memory: str | None = Field(default=None, max_length=16)
    cpus: str | None = Field(default=None, max_length=16)
    volume_path: str | None = Field(default=None, max_length=200)
    backup_every: str | None = Field(default=None, max_length=16)  # nex: backup schedule, e.g. 6h
    labels: dict[str, Any] = Field(default_factory=dict, sa_type=sa.JSON)
    thumbnail: str | None = Field(default=None, max_length=500)
    meta: dict[str, Any] = Field(default_factory=dict, sa_type=sa.JSON)


class AppGrant(Base, table=True):
    __tablename__ = "app_grant"
    __table_args__ = (sa.UniqueConstraint("app_id", "tenant_id", name="uq_app_grant"),)

    app_id: uuid.UUID = Field(foreign_key="app.id", index=True)
    tenant_id: uuid.UUID = Field(foreign_key="tenant.id", index=True)
    can_edit: bool = Field(default=False)
    # who granted it: the owner's tenant key or "system"
    granted_by: str = Field(default="system", max_length=40)
    # set when the grant came from a package (revoking the package removes it)
    package_id: uuid.UUID | None = Field(default=None, foreign_key="app_package.id", index=True)


class AppPackage(Base, table=True):
    """A named set of apps granted together."""

    __tablename__ = "app_package"

    name: str = Field(max_length=64, unique=True, index=True)
    description: str = Field(default="", max_length=500)


class AppPackageApp(Base, table=True):
    __tablename__ = "app_package_app"
    __table_args__ = (sa.UniqueConstraint("package_id", "app_id", name="uq_app_package_app"),)

    package_id: uuid.UUID = Field(foreign_key="app_package.id", index=True)
    app_id: uuid.UUID = Field(foreign_key="app.id", index=True)


class AppPackageGrant(Base, table=True):
    __tablename__ = "app_package_grant"
    __table_args__ = (sa.UniqueConstraint("package_id", "tenant_id", name="uq_app_package_grant"),)

    package_id: uuid.UUID = Field(foreign_key="app_package.id", index=True)
    tenant_id: uuid.UUID = Field(foreign_key="tenant.id", index=True)
    can_edit: bool = Field(default=False)
    granted_by: str = Field(default="system", max_length=40)


class TenantStatusChange(Base, table=True):
    """Every status transition of a tenant, for history and churn reporting."""

    __tablename__ = "tenant_status_change"

    tenant_id: uuid.UUID = Field(foreign_key="tenant.id", index=True)
    from_status: str = Field(max_length=32)
    to_status: str = Field(max_length=32, index=True)
    reason: str | None = Field(default=None, max_length=500)
    at: datetime = Field(sa_type=UTCDateTime, index=True)
