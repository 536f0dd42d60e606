"""Teams: named sets of a tenant's app instances that their members may open.

A member in no team may open every instance of the tenant; admins open all of them.
Instances are referenced by id (the Nex ``instance`` table, checked when it exists).
"""

from __future__ import annotations

import uuid
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlmodel import SQLModel, select

from mno.access import custom_roles, members, revocation, users
from mno.errors import BadInput, Conflict, NotFound
from mno.store import audit, outbox
from mno.store.models import load_all
from mno.store.models.access import Team, TeamInstance, TeamMember, User
from mno.store.models.tenancy import Tenant
from mno.tenancy import tenants

if TYPE_CHECKING:
    from sqlmodel import Session


def _check_actor(session: Session, tenant: Tenant, by: str | None) -> None:
    if by is None:
        return

    role = members._actor_role(session, tenant, by)
    if not custom_roles.allows(session, role, tenant, "manage_teams"):
        raise members.Forbidden(f"a {role} cannot manage teams")


def get(session: Session, tenant_key: str, name: str) -> tuple[Tenant, Team]:
    tenant = tenants.get(session, tenant_key)
    team = session.exec(select(Team).where(Team.tenant_id == tenant.id, Team.name == name)).first()
    if team is None:
        raise NotFound(f"team {name} not found in {tenant.key}", "see `mno team list`")
    return tenant, team


def as_dict(session: Session, team: Team, tenant: Tenant) -> dict[str, Any]:
    emails = session.exec(
        select(User.email)
        .where(TeamMember.team_id == team.id, TeamMember.user_id == User.id)
        .order_by(User.email)
    ).all()
    instances = session.exec(
        select(TeamInstance.instance_id).where(TeamInstance.team_id == team.id)
    ).all()
    return {
        "tenant": tenant.key,
        "name": team.name,
        "members": list(emails),
        "instances": sorted(str(i) for i in instances),
    }


def create(
    session: Session,
    tenant_key: str,
    name: str,
    *,
    by: str | None = None,
    if_not_exists: bool = False,
) -> tuple[Team, bool]:
    name = (name or "").strip()
    if not name or len(name) > 100:
        raise BadInput("team name must be 1 to 100 characters")
    tenant = tenants.get(session, tenant_key)
    _check_actor(session, tenant, by)
    existing = session.exec(
        select(Team).where(Team.tenant_id == tenant.id, Team.name == name)
    ).first()
    if existing is not None:
        if if_not_exists:
            return existing, False
        raise Conflict(f"team {name} already exists in {tenant.key}")
    team = Team(tenant_id=tenant.id, name=name)
    session.add(team)
    session.flush()
    audit.record(
        session,
        "team.create",
        target_type="team",
        target_id=team.id,
        target=f"{tenant.key}/{name}",
        after={"name": name},
        tenant_id=tenant.id,
    )
    outbox.emit(session, "team.created", {"tenant": tenant.key, "team": name}, tenant.id)
    return team, True


def add_member(
    session: Session, tenant_key: str, name: str, email: str, *, by: str | None = None
) -> Team:
    tenant, team = get(session, tenant_key, name)
    _check_actor(session, tenant, by)
    user = users.get(session, email)
    if members.find(session, user, tenant) is None:
        raise BadInput(f"{user.email} is not a member of {tenant.key}", "add them first")
    if session.exec(
        select(TeamMember).where(TeamMember.team_id == team.id, TeamMember.user_id == user.id)
    ).first():
        return team
    session.add(TeamMember(team_id=team.id, user_id=user.id))
    audit.record(
        session,
        "team.add_member",
        target_type="team",
        target_id=team.id,
        target=f"{tenant.key}/{name}",
        after={"member": user.email},
        tenant_id=tenant.id,
    )
    outbox.emit(
        session,
        "team.member_added",
        {"tenant": tenant.key, "team": name, "email": user.email},
        tenant.id,
    )
    revocation.bump(session)
    return team


def _instance_tenant(session: Session, instance_id: uuid.UUID) -> uuid.UUID | None | bool:
    """The instance's tenant id; False when the instance table exists but has no such row;
    None when there is no instance table to check against."""
    load_all()
    table = SQLModel.metadata.tables.get("instance")
    if table is None or "tenant_id" not in table.c:
        return None
    row = session.execute(sa.select(table.c.tenant_id).where(table.c.id == instance_id)).first()
    return False if row is None else row[0]


def parse_instance(value: str | uuid.UUID) -> uuid.UUID:
    if isinstance(value, uuid.UUID):
        return value
    try:
        return uuid.UUID(str(value))
    except ValueError as exc:
        raise BadInput(f"invalid instance id {value!r}", "give the instance's UUID") from exc


def add_instance(
    session: Session, tenant_key: str, name: str, instance: str, *, by: str | None = None
) -> Team:
    tenant, team = get(session, tenant_key, name)
    _check_actor(session, tenant, by)
    instance_id = parse_instance(instance)
    owner = _instance_tenant(session, instance_id)
    if owner is False:
        raise NotFound(f"instance {instance_id} not found")
    if owner is not None and owner != tenant.id:
        raise BadInput(f"instance {instance_id} does not belong to {tenant.key}")
    if session.exec(
        select(TeamInstance).where(
            TeamInstance.team_id == team.id, TeamInstance.instance_id == instance_id
        )
    ).first():
        return team
    session.add(TeamInstance(team_id=team.id, instance_id=instance_id))
    audit.record(
        session,
        "team.add_instance",
        target_type="team",
        target_id=team.id,
        target=f"{tenant.key}/{name}",
        after={"instance": str(instance_id)},
        tenant_id=tenant.id,
    )
    outbox.emit(
        session,
        "team.instance_added",
        {"tenant": tenant.key, "team": name, "instance": instance_id},
        tenant.id,
    )
    revocation.bump(session)
    return team


def list_teams(session: Session, tenant_key: str) -> list[dict[str, Any]]:
    tenant = tenants.get(session, tenant_key)
    teams = session.exec(select(Team).where(Team.tenant_id == tenant.id).order_by(Team.name))
    return [as_dict(session, t, tenant) for t in teams]
