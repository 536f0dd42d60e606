"""Packages: a named set of apps granted to a tenant together.

Granting a package grants each of its apps (read, or edit with ``can_edit``); those
grants name the package. Revoking the package removes the grants it gave and leaves the
grants given directly (``mno app grant``) alone. When another package granted to the same
tenant also holds an app, that app's grant moves to it instead of going.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from sqlmodel import col, select

from mno.errors import BadInput, Conflict, NotFound
from mno.store import audit, outbox, paging
from mno.store.models.tenancy import (
    App,
    AppGrant,
    AppPackage,
    AppPackageApp,
    AppPackageGrant,
    Tenant,
)
from mno.tenancy import apps, tenants

if TYPE_CHECKING:
    from sqlmodel import Session


def check_name(name: str) -> str:
    name = (name or "").strip()
    try:
        return apps.check_code(name)
    except BadInput as exc:
        raise BadInput(f"invalid package name {name!r}", exc.hint) from exc


def get(session: Session, name: str) -> AppPackage:
    row = session.exec(select(AppPackage).where(AppPackage.name == name)).first()
    if row is None:
        raise NotFound(f"package {name} not found", "see `mno app package list`")
    return row


def app_codes(session: Session, package: AppPackage) -> list[str]:
    return list(
        session.exec(
            select(App.code)
            .where(AppPackageApp.package_id == package.id, AppPackageApp.app_id == App.id)
            .order_by(App.code)
        )
    )


def as_dict(session: Session, package: AppPackage) -> dict[str, Any]:
    grants = session.exec(
        select(AppPackageGrant, Tenant)
        .where(AppPackageGrant.package_id == package.id, AppPackageGrant.tenant_id == Tenant.id)
        .order_by(Tenant.key)
    ).all()
    return {
        "name": package.name,
        "description": package.description,
        "apps": app_codes(session, package),
        "grants": [
            {"tenant": t.key, "can_edit": bool(g.can_edit), "granted_by": g.granted_by}
            for g, t in grants
        ],
        "created_at": audit.jsonable(package.created_at),
    }


def page_packages(
    session: Session, *, after: str | None = None, limit: int = paging.DEFAULT_LIMIT
) -> paging.Page[dict[str, Any]]:
    """One page of packages by name, after the cursor ``after`` (a name)."""
    order = [col(AppPackage.name)]
    rows, nxt = paging.page(session, select(AppPackage), order, after, limit)
    return paging.Page([as_dict(session, p) for p in rows], nxt)


def stream_packages(session: Session, *, after: str | None = None) -> Iterator[dict[str, Any]]:
    """Every package by name, read a chunk at a time."""
    for p in paging.each(session, select(AppPackage), [col(AppPackage.name)], after):
        yield as_dict(session, p)


def create(
    session: Session, name: str, app_list: list[str], *, description: str = ""
) -> AppPackage:
    """A package of the named apps (at least one, each once)."""
    name = check_name(name)
    if not app_list:
        raise BadInput(f"package {name} needs at least one app", "give --app CODE")
    if len(set(app_list)) != len(app_list):
        raise BadInput(f"package {name} names an app twice")
    if len(description) > 500:
        raise BadInput("description is too long", "at most 500 characters")
    if session.exec(select(AppPackage).where(AppPackage.name == name)).first():
        raise Conflict(f"package {name} already exists")
    members = [apps.get(session, code) for code in app_list]
    package = AppPackage(name=name, description=description)
    session.add(package)
    session.flush()
    session.add_all([AppPackageApp(package_id=package.id, app_id=a.id) for a in members])
    codes = sorted(a.code for a in members)
    audit.record(
        session,
        "app_package.create",
        target_type="app_package",
        target_id=package.id,
        target=name,
        after={"apps": codes, "description": description},
    )
    outbox.emit(session, "app_package.created", {"name": name, "apps": codes})
    session.flush()
    return package


def delete(session: Session, name: str) -> None:
    """Remove a package; refused while it is granted to a tenant."""
    package = get(session, name)
    granted = session.exec(
        select(AppPackageGrant).where(AppPackageGrant.package_id == package.id)
    ).first()
    if granted is not None:
        raise Conflict(
            f"package {name} is still granted", "revoke it first (`mno app package revoke`)"
        )
    codes = app_codes(session, package)
    for row in session.exec(select(AppPackageApp).where(AppPackageApp.package_id == package.id)):
        session.delete(row)
    session.flush()
    session.delete(package)
    audit.record(
        session,
        "app_package.delete",
        target_type="app_package",
        target_id=package.id,
        target=name,
        before={"apps": codes},
    )
    outbox.emit(session, "app_package.deleted", {"name": name})
    session.flush()


def _apps_of(session: Session, package_id: uuid.UUID) -> list[App]:
    return list(
        session.exec(
            select(App)
            .where(AppPackageApp.package_id == package_id, AppPackageApp.app_id == App.id)
            .order_by(App.code)
        )
    )


def grant(
    session: Session,
    name: str,
    tenant_key: str,
    *,
    can_edit: bool = False,
    by: str | None = None,
) -> AppPackageGrant:
    """Grant every app of the package to a tenant. ``by`` (a tenant key, ``None``: the
    platform operator) must be allowed to grant each app: its owner or system."""
    package = get(session, name)
    tenant = tenants.get(session, tenant_key)
    members = _apps_of(session, package.id)
    granted_by = {a.code: apps.granter(session, a, by) for a in members}
    who = by if by is not None else tenants.SYSTEM_KEY
    row = session.exec(
        select(AppPackageGrant).where(
            AppPackageGrant.package_id == package.id, AppPackageGrant.tenant_id == tenant.id
        )
    ).first()
    if row is not None and row.can_edit == can_edit:
        return row
    if row is None:
        row = AppPackageGrant(
            package_id=package.id, tenant_id=tenant.id, can_edit=can_edit, granted_by=who
        )
        before: dict[str, Any] = {}
    else:
        before = {"can_edit": row.can_edit}
        row.can_edit = can_edit
        row.touch()
    session.add(row)
    session.flush()
    for a in members:
        if a.owner_id == tenant.id:
            continue  # the owner needs no grant
        apps.grant(session, a.code, tenant.key, can_edit=can_edit, by=by, package_id=package.id)
    after = {"tenant": tenant.key, "can_edit": can_edit, "granted_by": who}
    audit.record(
        session,
        "app_package.grant",
        target_type="app_package",
        target_id=package.id,
        target=package.name,
        before=before,
        after=after | {"apps": sorted(granted_by)},
        tenant_id=tenant.id,
    )
    outbox.emit(
        session,
        "app_package.granted",
        {"name": package.name, "apps": sorted(granted_by)} | after,
        tenant.id,
    )
    session.flush()
    return row


def revoke(session: Session, name: str, tenant_key: str, *, by: str | None = None) -> list[str]:
    """Revoke a package from a tenant with the grants it gave; returns the app codes whose
    grant went (grants given directly, or held through another package, stay)."""
    package = get(session, name)
    tenant = tenants.get(session, tenant_key)
    row = session.exec(
        select(AppPackageGrant).where(
            AppPackageGrant.package_id == package.id, AppPackageGrant.tenant_id == tenant.id
        )
    ).first()
    if row is None:
        raise NotFound(f"{tenant.key} has no grant of package {name}")
    for a in _apps_of(session, package.id):
        apps.granter(session, a, by)
    session.delete(row)
    session.flush()
    others = list(
        session.exec(
            select(AppPackageGrant).where(
                AppPackageGrant.tenant_id == tenant.id,
                AppPackageGrant.package_id != package.id,
            )
        )
    )
    removed: list[str] = []
    grants = session.exec(
        select(AppGrant, App).where(
            AppGrant.package_id == package.id,
            AppGrant.tenant_id == tenant.id,
            AppGrant.app_id == App.id,
        )
    ).all()
    for g, a in grants:
        keeper = next(
            (
                o
                for o in others
                if session.exec(
                    select(AppPackageApp).where(
                        AppPackageApp.package_id == o.package_id, AppPackageApp.app_id == a.id
                    )
                ).first()
            ),
            None,
        )
        if keeper is not None:
            apps.grant(
                session,
                a.code,
                tenant.key,
                can_edit=keeper.can_edit,
                by=None if keeper.granted_by == tenants.SYSTEM_KEY else keeper.granted_by,
                package_id=keeper.package_id,
                replaces=package.id,
            )
            continue
        apps.remove_grant(session, a, tenant, g, by or tenants.SYSTEM_KEY)
        removed.append(a.code)
    audit.record(
        session,
        "app_package.revoke",
        target_type="app_package",
        target_id=package.id,
        target=package.name,
        before={"tenant": tenant.key, "can_edit": row.can_edit},
        after={"revoked_apps": removed},
        tenant_id=tenant.id,
    )
    outbox.emit(
        session,
        "app_package.revoked",
        {"name": package.name, "tenant": tenant.key, "apps": removed},
        tenant.id,
    )
    session.flush()
    return sorted(removed)
