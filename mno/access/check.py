"""``check(session, user, tenant, action, instance=None) -> (allowed, reason)``."""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING

from sqlmodel import col, select

from mno.access import custom_roles, members, roles, teams, users
from mno.errors import BadInput, NotFound
from mno.store.models.access import Team, TeamInstance, TeamMember, User
from mno.store.models.tenancy import Tenant
from mno.tenancy import tenants

if TYPE_CHECKING:
    from sqlmodel import Session

CLOSED = ("offboarding", "offboarded")


def check(
    session: Session,
    user: User | str,
    tenant: Tenant | str,
    action: str,
    instance: str | uuid.UUID | None = None,
) -> tuple[bool, str]:
    """Whether ``user`` may do ``action`` in ``tenant`` (on ``instance``), and why."""
    allowed, reason, _ = evaluate(session, user, tenant, action, instance)
    return allowed, reason


def evaluate(
    session: Session,
    user: User | str,
    tenant: Tenant | str,
    action: str,
    instance: str | uuid.UUID | None = None,
) -> tuple[bool, str, str | None]:
    """``check`` plus the user's role in the tenant (None when not a member)."""
    if action not in roles.ACTIONS:
        raise BadInput(f"unknown action {action!r}", f"one of: {', '.join(roles.ACTIONS)}")
    try:
        user = users.get(session, user) if isinstance(user, str) else user
    except NotFound:
        return False, f"no user {user}", None
    try:
        tenant = tenants.get(session, tenant) if isinstance(tenant, str) else tenant
    except NotFound:
        return False, f"no tenant {tenant}", None
    role = members.role_of(session, user, tenant)
    if user.status != "active":
        return False, f"{user.email} is {user.status}", role
    if tenant.status in CLOSED:
        return False, f"{tenant.key} is {tenant.status}", role
    if role is None:
        return False, f"{user.email} is not a member of {tenant.key}", role
    if role not in roles.ROLES:
        if action not in custom_roles.permissions(session, role, tenant):
            return (
                False,
                f"{action} is not a permission of the custom role {role} "
                f"of {user.email} in {tenant.key}",
                role,
            )
    elif not roles.allows(role, action):
        need = " or ".join(roles.ACTIONS[action])
        return False, f"{action} needs {need}; {user.email} is {role} in {tenant.key}", role
    if action != "open":
        if instance is not None:
            raise BadInput("--instance applies to the open action only")
        return True, f"{user.email} is {role} in {tenant.key}", role
    if instance is None:
        raise BadInput("the open action needs an instance")
    instance_id = teams.parse_instance(instance)
    owner = teams._instance_tenant(session, instance_id)
    if owner is False:
        return False, f"no instance {instance_id}", role
    if owner is not None and owner != tenant.id:
        return False, f"instance {instance_id} does not belong to {tenant.key}", role
    if role in roles.ADMINS:
        return True, f"{user.email} is {role} in {tenant.key} and opens every instance", role
    team_ids = list(
        session.exec(
            select(Team.id).where(
                Team.tenant_id == tenant.id,
                TeamMember.team_id == Team.id,
                TeamMember.user_id == user.id,
            )
        )
    )
    if not team_ids:
        return True, f"{user.email} is in no team of {tenant.key} and opens every instance", role

    hit = session.exec(
        select(Team.name).where(
            col(TeamInstance.team_id).in_(team_ids),
            TeamInstance.team_id == Team.id,
            TeamInstance.instance_id == instance_id,
        )
    ).first()
    if hit:
        return True, f"team {hit} of {user.email} includes instance {instance_id}", role
    return False, f"no team of {user.email} includes instance {instance_id}", role
