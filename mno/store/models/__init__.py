"""SQLModel tables, one module per domain. Importing this package registers them all."""

from mno.store.models.agents import (
    AgentTick,
    ConsumerCursor,
    Heartbeat,
    ProbeEffect,
    ProbeItem,
)
from mno.store.models.base import Base, WorkItem
from mno.store.models.core import AuditEntry, Event, LeaseLock
from mno.store.models.gitops import GitopsResource
from mno.store.models.tenancy import (
    App,
    AppGrant,
    Lead,
    Tenant,
    TenantContact,
    TenantDomain,
    TenantStatusChange,
)

__all__ = [
    "AgentTick",
    "ConsumerCursor",
    "Heartbeat",
    "ProbeEffect",
    "ProbeItem",
    "App",
    "AppGrant",
    "AuditEntry",
    "Base",
    "Event",
    "GitopsResource",
    "Lead",
    "LeaseLock",
    "Tenant",
    "TenantContact",
    "TenantDomain",
    "TenantStatusChange",
    "WorkItem",
]
