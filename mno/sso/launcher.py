"""The app launcher: the apps a signed-in person may open, tenant by tenant.

For each tenant the user is a member of (and may ``read`` in, per
``mno.access.check``): the tenant's running Nex instances the user may ``open`` (team
restrictions included), at the instance's URL; and the enabled cloud apps the tenant may
use (``mno.tenancy.apps.check_access``: own, any, explicit and grants) that carry an
``http(s)`` ``url`` in their metadata. Opening an app is a plain link: an app that signs
in through the hub finds the browser signed in already.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sqlmodel import col, select

from mno.access import check
from mno.store.models.access import Membership, User
from mno.store.models.nex import Instance
from mno.store.models.tenancy import App, Tenant
from mno.tenancy import apps

if TYPE_CHECKING:
    from sqlmodel import Session


@dataclass(frozen=True)
class Tile:
    name: str
    code: str
    kind: str  # "nex" (an instance of the tenant) or "cloud"
    url: str
    thumbnail: str | None = None
    instance: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "code": self.code,
            "kind": self.kind,
            "url": self.url,
            "thumbnail": self.thumbnail,
            "instance": self.instance,
        }


@dataclass
class TenantApps:
    key: str
    name: str
    role: str
    tiles: list[Tile] = field(default_factory=list)


def _web_url(value: Any) -> str | None:
    if isinstance(value, str) and value.startswith(("https://", "http://")) and len(value) < 2000:
        return value
    return None


def tenants_of(session: Session, user: User) -> list[tuple[Tenant, str]]:
    """The tenants ``user`` may read in, by key, with their role."""
    rows = session.exec(
        select(Tenant, Membership.role)
        .where(Membership.user_id == user.id, Membership.tenant_id == Tenant.id)
        .order_by(col(Tenant.key))
    ).all()
    return [(t, role) for t, role in rows if check.check(session, user, t, "read")[0]]


def for_tenant(session: Session, user: User, tenant: Tenant, role: str) -> TenantApps:
    found = TenantApps(tenant.key, tenant.name or tenant.key, role)
    instances = session.exec(
        select(Instance, App)
        .where(
            Instance.tenant_id == tenant.id,
            Instance.status == "running",
            Instance.app_id == App.id,
        )
        .order_by(col(App.name), col(Instance.name))
    ).all()
    may_open = check.check(session, user, tenant, "read")[0]
    for inst, app in instances:
        url = _web_url(inst.url)
        if url is None or not may_open:
            continue
        if check.check(session, user, tenant, "open", inst.id)[0]:
            found.tiles.append(
                Tile(f"{app.name} ({inst.name})", app.code, "nex", url, app.thumbnail, inst.name)
            )
    clouds = session.exec(
        select(App).where(App.stack == "cloud", col(App.enabled).is_(True)).order_by(col(App.name))
    ).all()
    for app in clouds:
        url = _web_url((app.meta or {}).get("url"))
        if url is not None and apps.check_access(session, app, tenant)[0]:
            found.tiles.append(Tile(app.name, app.code, "cloud", url, app.thumbnail))
    return found


def launcher(
    session: Session, user: User, tenant_key: str | None = None
) -> tuple[list[tuple[str, str]], TenantApps | None]:
    """(every tenant as (key, name), the apps of the chosen one: ``tenant_key`` when the
    user belongs to it, else the first)."""
    tenants = tenants_of(session, user)
    if not tenants:
        return [], None
    chosen = next((t for t in tenants if t[0].key == tenant_key), tenants[0])
    listing = [(t.key, t.name or t.key) for t, _ in tenants]
    return listing, for_tenant(session, user, chosen[0], chosen[1])
