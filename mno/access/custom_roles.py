"""Custom roles: a name and the actions it allows, beyond the four built-in roles.

A custom role is defined for every tenant (``tenant=None``) or for one tenant, whose
definition wins over a platform-wide one of the same name. Its permissions are actions
of ``mno.access.roles.ACTIONS``; a member holding it may do exactly those. A custom role
never counts as an admin: ``open`` still follows the member's teams, and it may not grant
``admin`` or ``super_admin``. A role cannot be deleted while a member holds it.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from sqlmodel import col, func, select

from mno.access import revocation, roles
from mno.errors import BadInput, Conflict, NotFound
from mno.store import audit, outbox
from mno.store.models.access import Membership, Role
from mno.store.models.tenancy import Tenant
from mno.tenancy import tenants

if TYPE_CHECKING:
    from sqlmodel import Session

_NAME = re.compile(r"^[a-z][a-z0-9_-]{0,15}$")


def check_name(name: str) -> str:
    if not _NAME.match(name or ""):
        raise BadInput(
            f"invalid role name {name!r}", "a-z first, then a-z, 0-9, '_' or '-', 16 at most"
        )
    if name in roles.ROLES:
        raise BadInput(f"{name} is a built-in role", "choose another name")
    return name


def check_permissions(permissions: list[str]) -> list[str]:
    if not permissions:
        raise BadInput("a role needs at least one --permission")
    for p in permissions:
        if p not in roles.ACTIONS:
            raise BadInput(f"unknown permission {p!r}", f"one of: {', '.join(roles.ACTIONS)}")
    return sorted(set(permissions))


def find(session: Session, name: str, tenant: Tenant | None) -> Role | None:
    """The role ``name`` as ``tenant`` sees it: its own definition, else the platform's."""
    if tenant is not None:
        own = session.exec(
            select(Role).where(Role.name == name, Role.tenant_id == tenant.id)
        ).first()
        if own is not None:
            return own
    return session.exec(
        select(Role).where(Role.name == name, col(Role.tenant_id).is_(None))
    ).first()


def get(session: Session, name: str, tenant_key: str | None = None) -> Role:
    tenant = tenants.get(session, tenant_key) if tenant_key else None
    row = (
        session.exec(select(Role).where(Role.name == name, Role.tenant_id == tenant.id)).first()
        if tenant is not None
        else find(session, name, None)
    )
    if row is None:
        where = f" in {tenant.key}" if tenant else ""
        raise NotFound(f"role {name}{where} not found", "see `mno role list`")
    return row


def check_role(session: Session, role: str, tenant: Tenant) -> str:
    """A role a member of ``tenant`` may hold: built-in, or custom and visible to it."""
    if role in roles.ROLES:
        return role
    if find(session, role, tenant) is None:
        raise BadInput(
            f"unknown role {role!r}",
            f"one of: {', '.join(roles.ROLES)}, or a custom role (see `mno role list`)",
        )
    return role


def permissions(session: Session, role: str, tenant: Tenant) -> tuple[str, ...]:
    """The actions ``role`` allows in ``tenant`` (built-in or custom)."""
    if role in roles.ROLES:
        return tuple(a for a, allowed in roles.ACTIONS.items() if role in allowed)
    row = find(session, role, tenant)
    return tuple(row.permissions) if row else ()


def allows(session: Session, role: str | None, tenant: Tenant, action: str) -> bool:
    """Whether ``role`` (built-in or custom) may do ``action`` in ``tenant``."""
    if role is None:
        return False
    if role in roles.ROLES:
        return roles.allows(role, action)
    return action in permissions(session, role, tenant)


def as_dict(session: Session, row: Role) -> dict[str, Any]:
    tenant = session.get(Tenant, row.tenant_id) if row.tenant_id else None
    held = session.exec(select(func.count()).select_from(Membership).where(*_holders(row))).one()
    return {
        "name": row.name,
        "tenant": tenant.key if tenant else None,
        "permissions": list(row.permissions),
        "members": int(held),
        "created_at": audit.jsonable(row.created_at),
    }


def _holders(row: Role) -> list[Any]:
    conds: list[Any] = [Membership.role == row.name]
    if row.tenant_id is not None:
        conds.append(Membership.tenant_id == row.tenant_id)
    return conds


def create(
    session: Session, name: str, permission_list: list[str], *, tenant_key: str | None = None
) -> Role:
    name = check_name(name)
    perms = check_permissions(permission_list)
    tenant = tenants.get(session, tenant_key) if tenant_key else None
    tenant_id = tenant.id if tenant else None
    taken = session.exec(
        select(Role).where(
            Role.name == name,
            Role.tenant_id == tenant_id if tenant_id else col(Role.tenant_id).is_(None),
        )
    ).first()
    if taken is not None:
        where = f" in {tenant.key}" if tenant else ""
        raise Conflict(f"role {name}{where} already exists")
    row = Role(name=name, tenant_id=tenant_id, permissions=perms)
    session.add(row)
    session.flush()
    payload = {"name": name, "tenant": tenant.key if tenant else None, "permissions": perms}
    audit.record(
        session,
        "role.create",
        target_type="role",
        target_id=row.id,
        target=name,
        after=payload,
        tenant_id=tenant_id,
    )
    outbox.emit(session, "role.created", payload, tenant_id)
    return row


def delete(session: Session, name: str, *, tenant_key: str | None = None) -> None:
    """Remove a custom role; refused while a member (that sees it) holds it."""
    row = get(session, name, tenant_key)
    held = int(
        session.exec(select(func.count()).select_from(Membership).where(*_holders(row))).one()
    )
    if held:
        raise Conflict(f"role {name} is held by {held} member(s)", "give them another role first")
    tenant = session.get(Tenant, row.tenant_id) if row.tenant_id else None
    payload = {
        "name": name,
        "tenant": tenant.key if tenant else None,
        "permissions": list(row.permissions),
    }
    session.delete(row)
    audit.record(
        session,
        "role.delete",
        target_type="role",
        target_id=row.id,
        target=name,
        before=payload,
        tenant_id=row.tenant_id,
    )
    outbox.emit(session, "role.deleted", payload, row.tenant_id)
    revocation.bump(session)
    session.flush()


def list_roles(session: Session, *, tenant_key: str | None = None) -> list[dict[str, Any]]:
    """Built-in roles first, then custom ones (all, or those a tenant sees)."""
    out: list[dict[str, Any]] = [
        {
            "name": r,
            "tenant": None,
            "permissions": [a for a, allowed in roles.ACTIONS.items() if r in allowed],
            "builtin": True,
        }
        for r in roles.ROLES
    ]
    stmt = select(Role).order_by(col(Role.name))
    if tenant_key:
        tenant = tenants.get(session, tenant_key)
        stmt = stmt.where((col(Role.tenant_id).is_(None)) | (Role.tenant_id == tenant.id))
    for row in session.exec(stmt):
        out.append(as_dict(session, row) | {"builtin": False})
    return out
