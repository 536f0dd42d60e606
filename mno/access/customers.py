"""Which tenants an app serves, and which tenants an app may ask the hub about.

A tenant is a **customer** of an app when it has a live Nex instance of the app (any
status but ``terminated``) or a live billing subscription to it (``app_code`` is the
app's code and the status is neither ``canceled`` nor ``expired``). The Developer API
lists an app's customers; the IDM answers an app only about its customers and about the
tenant that owns (publishes) the app, and refuses the rest with the reason.

The nex and billing models are imported where they are read: either package may be left
out of an install, and the rules then skip its relation.
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any, Protocol

import sqlalchemy as sa

from mno.store.models.billing import Subscription
from mno.store.models.nex import Instance
from mno.store.types import table_of

if TYPE_CHECKING:
    from sqlmodel import Session

    from mno.store.models.tenancy import Tenant


class App(Protocol):
    """An app as these rules need it: an ``App`` row or any object with these fields."""

    @property
    def id(self) -> uuid.UUID: ...
    @property
    def code(self) -> str: ...
    @property
    def owner_id(self) -> uuid.UUID: ...


ENDED_SUBSCRIPTION = ("canceled", "expired")
ENDED_INSTANCE = ("terminated",)


def _sources(app: App) -> list[Any]:
    """One ``SELECT tenant_id`` per kind of relation: live instances, live subscriptions."""
    instances = table_of(Instance)
    subscriptions = table_of(Subscription)
    return [
        sa.select(instances.c.tenant_id).where(
            instances.c.app_id == app.id, instances.c.status.notin_(ENDED_INSTANCE)
        ),
        sa.select(subscriptions.c.tenant_id).where(
            subscriptions.c.app_code == app.code,
            subscriptions.c.status.notin_(ENDED_SUBSCRIPTION),
        ),
    ]


def customer_ids(session: Session, app: App) -> set[uuid.UUID]:
    """Ids of the tenants with a live instance of, or a live subscription to, ``app``."""
    selects = _sources(app)
    if not selects:
        return set()
    rows = session.execute(sa.union(*selects) if len(selects) > 1 else selects[0])
    return {row[0] for row in rows}


def is_customer(session: Session, app: App, tenant: Tenant) -> bool:
    """Whether ``tenant`` has a live instance of, or a live subscription to, ``app``."""
    for stmt in _sources(app):
        found = session.execute(stmt.where(stmt.selected_columns[0] == tenant.id).limit(1)).first()
        if found is not None:
            return True
    return False


def may_ask(session: Session, app: App, tenant: Tenant) -> tuple[bool, str]:
    """Whether ``app`` may ask the hub about ``tenant`` (IDM), and why."""
    if tenant.id == app.owner_id:
        return True, f"{tenant.key} owns {app.code}"
    if is_customer(session, app, tenant):
        return True, f"{tenant.key} is a customer of {app.code}"
    return False, not_a_customer(app, tenant.key)


def not_a_customer(app: App, asked: str) -> str:
    """The refusal for a tenant an app may not ask about. A tenant that does not exist
    gets the same words, so that an app cannot learn which tenant keys exist."""
    return (
        f"{asked} has no instance of and no subscription to {app.code}; "
        f"an app may ask only about its customers"
    )
