"""Invites: ``staged -> pending -> accepted`` (or ``revoked``).

A staged invite has no token yet. Sending it issues a random token, keeps only its
SHA-256 hash, sets the expiry (``access.invite_ttl`` in the profile, default 3 days)
and emits ``invite.created`` (no token in the payload) for the notification channel.
The token is returned once, to the caller, and can be mailed directly through
``deliver()`` when SMTP is configured; the mail links to the hub's ``/invites/<token>`` page
(``page_url``). Accepting consumes the token: it is single use.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from sqlmodel import col, select

from mno import clock, mail, settings, validate
from mno.access import custom_roles, members, revocation, roles, secrets, users
from mno.errors import BadInput, Conflict, InvalidTransition, NotFound
from mno.store import audit, lookup, outbox
from mno.store.models.access import Invite, Membership, Team, TeamMember, User
from mno.store.models.tenancy import Tenant
from mno.tenancy import tenants

if TYPE_CHECKING:
    from sqlmodel import Session

DEFAULT_TTL = "3d"
TOKEN_PREFIX = "mnoinv"


def ttl() -> timedelta:
    return settings.parse_duration(settings.profile_value("access.invite_ttl", DEFAULT_TTL))


def state(invite: Invite) -> str:
    """The status, with ``expired`` for a pending invite past its expiry."""
    if invite.status == "pending" and invite.expires_at and invite.expires_at <= clock.now():
        return "expired"
    return invite.status


def as_dict(session: Session, invite: Invite) -> dict[str, Any]:
    tenant = session.get(Tenant, invite.tenant_id)
    team = session.get(Team, invite.team_id) if invite.team_id else None
    return {
        "id": str(invite.id),
        "tenant": tenant.key if tenant else None,
        "email": invite.email,
        "role": invite.role,
        "team": team.name if team else None,
        "status": state(invite),
        "invited_by": invite.invited_by or None,
        "expires_at": audit.jsonable(invite.expires_at),
        "accepted_at": audit.jsonable(invite.accepted_at),
    }


@dataclass
class Issued:
    invite: Invite
    token: str | None
    view: dict[str, Any]


def get(session: Session, invite_id: str) -> Invite:
    return lookup.by_id_or_prefix(session, Invite, invite_id, "invite", "see `mno invite list`")


def create(
    session: Session,
    tenant_key: str,
    email: str,
    role: str = "member",
    *,
    team: str | None = None,
    by: str | None = None,
    stage: bool = False,
) -> Issued:
    """Create an invite; unless ``stage``, send it at once (pending, with a token)."""
    email = validate.email(email).lower()
    tenant = tenants.get(session, tenant_key)
    role = custom_roles.check_role(session, role, tenant)
    actor_role = members._actor_role(session, tenant, by)
    if actor_role is not None and not custom_roles.allows(session, actor_role, tenant, "invite"):
        raise members.Forbidden(f"a {actor_role} cannot invite")
    if actor_role is not None and actor_role not in roles.ROLES:
        # a custom role that may invite still never brings in admins
        why = f"a {actor_role} cannot invite admins" if role in roles.ADMINS else None
    else:
        why = roles.may_grant(actor_role, role, None)
    if why:
        raise members.Forbidden(why)
    team_row = None
    if team:
        team_row = session.exec(
            select(Team).where(Team.tenant_id == tenant.id, Team.name == team)
        ).first()
        if team_row is None:
            raise NotFound(f"team {team} not found in {tenant.key}")
    existing_user = users.find(session, email)
    if existing_user and members.find(session, existing_user, tenant):
        raise Conflict(f"{email} is already a member of {tenant.key}")
    invite = Invite(
        tenant_id=tenant.id,
        email=email,
        role=role,
        team_id=team_row.id if team_row else None,
        status="staged",
        invited_by=by or settings.actor(),
    )
    session.add(invite)
    session.flush()
    audit.record(
        session,
        "invite.create",
        target_type="invite",
        target_id=invite.id,
        target=f"{tenant.key}/{email}",
        after={"role": role, "team": team},
        tenant_id=tenant.id,
    )
    token = None if stage else _send(session, invite, tenant)
    return Issued(invite, token, as_dict(session, invite))


def _send(session: Session, invite: Invite, tenant: Tenant) -> str:
    token = secrets.new_token(TOKEN_PREFIX)
    now = clock.now()
    invite.token_hash = secrets.digest(token)
    invite.status = "pending"
    invite.sent_at = now
    invite.expires_at = now + ttl()
    invite.touch()
    session.add(invite)
    team = session.get(Team, invite.team_id) if invite.team_id else None
    outbox.emit(
        session,
        "invite.created",
        {
            "id": invite.id,
            "tenant": tenant.key,
            "tenant_name": tenant.name,
            "email": invite.email,
            "role": invite.role,
            "team": team.name if team else None,
            "invited_by": invite.invited_by,
            "expires_at": invite.expires_at,
        },
        tenant.id,
    )
    return token


def send(session: Session, invite_id: str, *, by: str | None = None) -> Issued:
    """Move a staged invite to pending, issuing its token (returned once)."""
    invite = get(session, invite_id)
    tenant = session.get(Tenant, invite.tenant_id)
    assert tenant is not None
    if invite.status != "staged":
        raise InvalidTransition(f"invite {invite.id} is {state(invite)}, not staged")
    members._actor_role(session, tenant, by)
    audit.record(
        session,
        "invite.send",
        target_type="invite",
        target_id=invite.id,
        target=f"{tenant.key}/{invite.email}",
        before={"status": "staged"},
        after={"status": "pending"},
        tenant_id=tenant.id,
    )
    token = _send(session, invite, tenant)
    return Issued(invite, token, as_dict(session, invite))


def accept(session: Session, token: str, *, name: str = "") -> dict[str, Any]:
    """Consume an invite token: the user joins the tenant with the invite's role."""
    token = (token or "").strip()
    if not token.startswith(TOKEN_PREFIX + "_"):
        raise BadInput("not an invite token")
    invite = session.exec(select(Invite).where(Invite.token_hash == secrets.digest(token))).first()
    if invite is None:
        raise NotFound("no invite has this token")
    status = state(invite)
    if status != "pending":
        raise InvalidTransition(f"invite {invite.id} is {status}", "ask for a new invite")
    tenant = session.get(Tenant, invite.tenant_id)
    assert tenant is not None
    user, _ = users.create(session, invite.email, name=name, if_not_exists=True)
    if members.find(session, user, tenant) is not None:
        raise Conflict(f"{user.email} is already a member of {tenant.key}")

    session.add(Membership(user_id=user.id, tenant_id=tenant.id, role=invite.role))
    if invite.team_id:
        session.add(TeamMember(team_id=invite.team_id, user_id=user.id))
    invite.status = "accepted"
    invite.accepted_at = clock.now()
    invite.touch()
    session.add(invite)
    audit.record(
        session,
        "invite.accept",
        target_type="invite",
        target_id=invite.id,
        target=f"{tenant.key}/{user.email}",
        before={"status": "pending"},
        after={"status": "accepted"},
        tenant_id=tenant.id,
        actor=user.email,
    )
    outbox.emit(
        session,
        "invite.accepted",
        {"id": invite.id, "tenant": tenant.key, "email": user.email, "role": invite.role},
        tenant.id,
    )
    revocation.bump(session)
    return as_dict(session, invite)


def revoke(session: Session, invite_id: str, *, by: str | None = None) -> Invite:
    invite = get(session, invite_id)
    tenant = session.get(Tenant, invite.tenant_id)
    assert tenant is not None
    members._actor_role(session, tenant, by)
    if invite.status not in ("staged", "pending"):
        raise InvalidTransition(f"invite {invite.id} is {invite.status}")
    before = invite.status
    invite.status = "revoked"
    invite.token_hash = None
    invite.touch()
    session.add(invite)
    audit.record(
        session,
        "invite.revoke",
        target_type="invite",
        target_id=invite.id,
        target=f"{tenant.key}/{invite.email}",
        before={"status": before},
        after={"status": "revoked"},
        tenant_id=tenant.id,
    )
    outbox.emit(
        session,
        "invite.revoked",
        {"id": invite.id, "tenant": tenant.key, "email": invite.email},
        tenant.id,
    )
    return invite


def list_invites(
    session: Session, tenant_key: str | None = None, *, status: str | None = None
) -> list[dict[str, Any]]:
    stmt = select(Invite)
    if tenant_key:
        stmt = stmt.where(Invite.tenant_id == tenants.get(session, tenant_key).id)
    rows = [as_dict(session, i) for i in session.exec(stmt.order_by(col(Invite.created_at)))]
    return [r for r in rows if status is None or r["status"] == status]


def page_url(token: str) -> str:
    """The hub's page of an invitation: absolute when the profile names the hub
    (``hub.url``, else ``sso.issuer``), else the path on the hub."""
    path = f"/invites/{quote(token, safe='')}"
    base = settings.profile_value("hub.url") or settings.profile_value("sso.issuer")
    return f"{str(base).rstrip('/')}{path}" if base else path


def deliver(view: dict[str, Any], token: str | None) -> bool:
    """Mail the token to the invitee when SMTP is configured; False when it is not."""
    cfg = mail.config()
    if cfg is None or not token:
        return False
    body = (
        f"You are invited to join {view['tenant']} as {view['role']}.\n\n"
        f"Open {page_url(token)} to set your password and sign in,\n"
        f"or accept with the command line:  mno invite accept {token}\n\n"
        f"This invitation expires at {view['expires_at']} and works once.\n"
    )
    mail.send(view["email"], f"Invitation to {view['tenant']}", body, cfg=cfg)
    return True


__all__ = ["Issued", "User", "accept", "create", "deliver", "list_invites", "revoke", "send"]
