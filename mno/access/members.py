"""Memberships: a user's role in a tenant, and the rules for changing it.

``by`` names the acting user (their role in the tenant decides what they may do);
``by=None`` is the platform operator. Whoever acts, the last super_admin of a tenant
cannot be demoted or removed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from sqlmodel import col, delete, func, select

from mno.access import custom_roles, revocation, roles, users
from mno.errors import Conflict, Forbidden, NotFound
from mno.store import audit, outbox
from mno.store.models.access import Membership, Team, TeamMember, User
from mno.store.models.tenancy import Tenant
from mno.tenancy import tenants

if TYPE_CHECKING:
    from sqlmodel import Session


__all__ = ["Forbidden"]


def as_dict(m: Membership, user: User, tenant: Tenant) -> dict[str, Any]:
    return {
        "tenant": tenant.key,
        "email": user.email,
        "name": user.name,
        "role": m.role,
        "status": user.status,
        "since": audit.jsonable(m.created_at),
    }


def find(session: Session, user: User, tenant: Tenant) -> Membership | None:
    return session.exec(
        select(Membership).where(Membership.user_id == user.id, Membership.tenant_id == tenant.id)
    ).first()


def get(session: Session, tenant_key: str, email: str) -> tuple[Membership, User, Tenant]:
    """The membership of ``email`` in the tenant, with its user and tenant; NotFound."""
    tenant = tenants.get(session, tenant_key)
    user = users.get(session, email)
    m = find(session, user, tenant)
    if m is None:
        raise NotFound(f"{user.email} is not a member of {tenant.key}")
    return m, user, tenant


def role_of(session: Session, user: User, tenant: Tenant) -> str | None:
    m = find(session, user, tenant)
    return m.role if m else None


def _actor_role(session: Session, tenant: Tenant, by: str | None) -> str | None:
    if by is None:
        return None
    actor = users.get(session, by)
    role = role_of(session, actor, tenant)
    if role is None or actor.status != "active":
        raise Forbidden(f"{actor.email} is not an active member of {tenant.key}")
    return role


def _may_grant(
    session: Session, tenant: Tenant, by: str | None, target: str, current: str | None
) -> str | None:
    """``roles.may_grant``, where an actor holding a custom role with ``manage_members``
    counts as an admin that may not touch admins."""
    actor = _actor_role(session, tenant, by)
    if actor is not None and actor not in roles.ROLES:
        if "manage_members" not in custom_roles.permissions(session, actor, tenant):
            return f"a {actor} cannot manage members"
        if target in roles.ADMINS or current in roles.ADMINS:
            return f"a {actor} cannot grant or change admin roles"
        return None
    return roles.may_grant(actor, target, current)


def _super_admins(session: Session, tenant: Tenant) -> int:
    return int(
        session.exec(
            select(func.count())
            .select_from(Membership)
            .where(Membership.tenant_id == tenant.id, Membership.role == "super_admin")
        ).one()
    )


def add(
    session: Session,
    tenant_key: str,
    email: str,
    role: str = "member",
    *,
    by: str | None = None,
    if_not_exists: bool = False,
    name: str = "",
) -> tuple[Membership, bool]:
    """Add a user (created when unknown) to a tenant with ``role``."""
    tenant = tenants.get(session, tenant_key)
    role = custom_roles.check_role(session, role, tenant)
    why = _may_grant(session, tenant, by, role, None)
    if why:
        raise Forbidden(why)
    user, _ = users.create(session, email, name=name, if_not_exists=True)
    existing = find(session, user, tenant)
    if existing is not None:
        if if_not_exists:
            return existing, False
        raise Conflict(
            f"{user.email} is already a member of {tenant.key}",
            "use `mno member set-role` to change the role",
        )
    m = Membership(user_id=user.id, tenant_id=tenant.id, role=role)
    session.add(m)
    session.flush()
    audit.record(
        session,
        "member.add",
        target_type="membership",
        target_id=m.id,
        target=f"{tenant.key}/{user.email}",
        after={"role": role},
        tenant_id=tenant.id,
    )
    outbox.emit(
        session,
        "member.added",
        {"tenant": tenant.key, "email": user.email, "role": role},
        tenant.id,
    )
    revocation.bump(session)
    return m, True


def set_role(
    session: Session, tenant_key: str, email: str, role: str, *, by: str | None = None
) -> Membership:
    tenant = tenants.get(session, tenant_key)
    role = custom_roles.check_role(session, role, tenant)
    user = users.get(session, email)
    m = find(session, user, tenant)
    if m is None:
        raise NotFound(f"{user.email} is not a member of {tenant.key}")
    why = _may_grant(session, tenant, by, role, m.role)
    if why:
        raise Forbidden(why)
    if m.role == role:
        return m
    if m.role == "super_admin" and _super_admins(session, tenant) <= 1:
        raise Conflict(
            f"{user.email} is the last super_admin of {tenant.key}",
            "make another member super_admin first",
        )
    before = m.role
    m.role = role
    m.touch()
    session.add(m)
    audit.record(
        session,
        "member.set_role",
        target_type="membership",
        target_id=m.id,
        target=f"{tenant.key}/{user.email}",
        before={"role": before},
        after={"role": role},
        tenant_id=tenant.id,
    )
    outbox.emit(
        session,
        "member.role_changed",
        {"tenant": tenant.key, "email": user.email, "from": before, "to": role},
        tenant.id,
    )
    revocation.bump(session)
    return m


def remove(session: Session, tenant_key: str, email: str, *, by: str | None = None) -> None:
    tenant = tenants.get(session, tenant_key)
    user = users.get(session, email)
    m = find(session, user, tenant)
    if m is None:
        raise NotFound(f"{user.email} is not a member of {tenant.key}")
    why = _may_grant(session, tenant, by, "member", m.role)
    if why:
        raise Forbidden(why)
    if m.role == "super_admin" and _super_admins(session, tenant) <= 1:
        raise Conflict(
            f"{user.email} is the last super_admin of {tenant.key}",
            "make another member super_admin first",
        )
    team_ids = select(Team.id).where(Team.tenant_id == tenant.id)
    session.exec(
        delete(TeamMember).where(
            col(TeamMember.user_id) == user.id, col(TeamMember.team_id).in_(team_ids)
        )
    )
    session.delete(m)
    audit.record(
        session,
        "member.remove",
        target_type="membership",
        target_id=m.id,
        target=f"{tenant.key}/{user.email}",
        before={"role": m.role},
        tenant_id=tenant.id,
    )
    outbox.emit(session, "member.removed", {"tenant": tenant.key, "email": user.email}, tenant.id)
    revocation.bump(session)


def list_members(session: Session, tenant_key: str) -> list[dict[str, Any]]:
    tenant = tenants.get(session, tenant_key)
    rows = session.exec(
        select(Membership, User)
        .where(Membership.tenant_id == tenant.id, Membership.user_id == User.id)
        .order_by(User.email)
    ).all()
    return [as_dict(m, u, tenant) for m, u in rows]
