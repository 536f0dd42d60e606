"""Hub API: members and roles, teams, invites, app grants and access checks.

The domain functions decide, with ``by`` the calling user (``None`` for a platform
operator), exactly as ``mno member``, ``mno team``, ``mno invite`` and ``mno app grant``
do with ``--as``; these routes add visibility (404 for a tenant the caller cannot see)
and the credential's scopes (403).
"""

from __future__ import annotations

import hashlib
from datetime import datetime
from typing import Any

from fastapi import APIRouter, Depends, Path, Query, Request, Response
from pydantic import BaseModel, ConfigDict, Field

from mno.access import check, invites, members, roles, scopes, teams, users
from mno.access.scopes import Principal
from mno.api import idempotency, threads
from mno.api.bearer import hub_principal
from mno.api.errors import ERRORS, READ, ApiRoute
from mno.api.hub import (
    KEY,
    MAX_LIMIT,
    IfMatch,
    check_if_match,
    etag_of,
    json_response,
    next_link,
    with_errors,
)
from mno.errors import Forbidden, NotFound
from mno.store import paging
from mno.store.db import session_scope
from mno.store.models.tenancy import Tenant as TenantRow
from mno.tenancy import apps, tenants

router = APIRouter(route_class=ApiRoute, tags=["hub access"])

EMAIL = Path(max_length=254, description="The member's email")


class Member(BaseModel):
    tenant: str
    email: str
    name: str
    role: str
    status: str
    since: datetime


class MemberPage(BaseModel):
    members: list[Member]
    next: str | None


class MemberAdd(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"email": "dana@acme.io", "role": "member"}]},
    )

    email: str = Field(max_length=254)
    role: str = Field("member", max_length=16)
    name: str = Field("", max_length=200)


class RoleChange(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"role": "admin"}]})

    role: str = Field(max_length=16)


class Team(BaseModel):
    tenant: str
    name: str
    members: list[str]
    instances: list[str]


class TeamList(BaseModel):
    teams: list[Team]


class TeamCreate(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"name": "ops"}]})

    name: str = Field(max_length=100)


class TeamMemberAdd(BaseModel):
    model_config = ConfigDict(extra="forbid")

    email: str = Field(max_length=254)


class Invite(BaseModel):
    id: str
    tenant: str | None
    email: str
    role: str
    team: str | None
    status: str
    invited_by: str | None
    expires_at: datetime | None
    accepted_at: datetime | None


class IssuedInvite(Invite):
    token: str | None = Field(
        None, description="Shown once, in the first answer only (null in a replay)"
    )


class InviteList(BaseModel):
    invites: list[Invite]


class InviteCreate(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"email": "dana@acme.io", "role": "member"}]},
    )

    email: str = Field(max_length=254)
    role: str = Field("member", max_length=16)
    team: str | None = Field(None, max_length=100)


class InviteAccept(BaseModel):
    model_config = ConfigDict(extra="forbid")

    token: str = Field(max_length=200)
    name: str = Field("", max_length=200)


class AccessCheck(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"user": "bob@acme.io", "tenant": "acme", "action": "read"}]
        },
    )

    user: str = Field(max_length=254)
    tenant: str = Field(max_length=40)
    action: str = Field(max_length=32)
    instance: str | None = Field(None, max_length=64)


class AccessAnswer(BaseModel):
    allowed: bool
    reason: str


class Grant(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"tenant": "acme"}]})

    tenant: str = Field(max_length=40)
    can_edit: bool = False


class GrantView(BaseModel):
    app: str
    tenant: str
    can_edit: bool
    granted_by: str


class RoleView(BaseModel):
    name: str
    actions: list[str]


class RoleList(BaseModel):
    roles: list[RoleView]


def _visible(s: Any, principal: Principal, key: str, scope: str) -> str:
    scopes.require_scope(principal, scope)
    if principal.app is not None and scope.endswith(":write"):
        raise Forbidden(f"app {principal.app.code} may only read")
    return scopes.find(s, principal, key).key


# -- members ------------------------------------------------------------------------------


@router.get("/v1/hub/tenants/{key}/members", response_model=MemberPage, responses=READ)
async def list_members(
    request: Request,
    key: str = KEY,
    principal: Principal = Depends(hub_principal),
    limit: int = Query(100, ge=1, le=MAX_LIMIT),
    cursor: str | None = Query(None, max_length=500),
) -> Response:
    """Members of a tenant by email."""

    def work() -> MemberPage:
        with session_scope(write=False) as s:
            scopes.authorize(s, principal, key, "read", "access:read")
            rows = members.list_members(s, key)
        page = paging.page_list(rows, lambda m: m["email"], cursor, limit)
        return MemberPage(members=[Member(**m) for m in page.rows], next=page.next)

    page = await threads.run(work)
    return json_response(page, headers=next_link(request, "cursor", page.next))


@router.post(
    "/v1/hub/tenants/{key}/members", status_code=201, response_model=Member, responses=ERRORS
)
async def add_member(
    body: MemberAdd,
    request: Request,
    key: str = KEY,
    principal: Principal = Depends(hub_principal),
    idempotency_key: str | None = idempotency.IdempotencyHeader,
) -> Response:
    """Add a user (created when unknown) to a tenant with a role."""

    def work(s: Any) -> tuple[BaseModel, str | None]:
        tenant_key = _visible(s, principal, key, "access:write")
        m, _ = members.add(s, tenant_key, body.email, body.role, by=principal.by, name=body.name)
        user = users.get(s, m.user_id)
        view = members.as_dict(m, user, tenants.get(s, tenant_key))
        return Member(**view), f"/v1/hub/tenants/{tenant_key}/members/{user.email}"

    return await idempotency.run(request, principal, idempotency_key, 201, work)


@router.get(
    "/v1/hub/tenants/{key}/members/{email}",
    response_model=Member,
    responses=READ,
    summary="One member of a tenant, with its ETag",
)
async def get_member(
    key: str = KEY, email: str = EMAIL, principal: Principal = Depends(hub_principal)
) -> Response:
    def work() -> dict[str, Any]:
        with session_scope(write=False) as s:
            tenant_key = _visible(s, principal, key, "access:read")
            return members.as_dict(*members.get(s, tenant_key, email))

    data = await threads.run(work)
    return json_response(Member(**data), headers={"ETag": etag_of(data)})


@router.patch(
    "/v1/hub/tenants/{key}/members/{email}",
    response_model=Member,
    responses=with_errors(ERRORS, {412: "If-Match names another version of the member"}),
    summary="Change a member's role; `If-Match` refuses a lost update (412)",
)
async def set_member_role(
    body: RoleChange,
    key: str = KEY,
    email: str = EMAIL,
    principal: Principal = Depends(hub_principal),
    if_match: str | None = IfMatch,
) -> Response:
    """Change a member's role (the last super_admin stays)."""

    def work() -> dict[str, Any]:
        with session_scope() as s:
            tenant_key = _visible(s, principal, key, "access:write")
            m, user, tenant = members.get(s, tenant_key, email)
            s.refresh(m, with_for_update=True)  # a concurrent PATCH waits here
            before = members.as_dict(m, user, tenant)
            m = members.set_role(s, tenant_key, email, body.role, by=principal.by)
            # checked after the input (a bad one is refused 4xx first); a 412 rolls back
            check_if_match(if_match, before, f"member {user.email}")
            return members.as_dict(m, user, tenant)

    data = await threads.run(work)
    return json_response(Member(**data), headers={"ETag": etag_of(data)})


@router.delete("/v1/hub/tenants/{key}/members/{email}", status_code=204, responses=READ)
async def remove_member(
    key: str = KEY, email: str = EMAIL, principal: Principal = Depends(hub_principal)
) -> Response:
    """Remove a member (and from the tenant's teams)."""

    def work() -> None:
        with session_scope() as s:
            tenant_key = _visible(s, principal, key, "access:write")
            members.remove(s, tenant_key, email, by=principal.by)

    await threads.run(work)
    return Response(status_code=204)


@router.get("/v1/hub/roles", response_model=RoleList, responses=READ)
async def list_roles(principal: Principal = Depends(hub_principal)) -> Response:
    """The built-in roles and the actions each allows."""
    scopes.require_scope(principal, "access:read")
    return json_response(
        RoleList(
            roles=[
                RoleView(name=r, actions=[a for a in roles.ACTIONS if roles.allows(r, a)])
                for r in roles.ROLES
            ]
        )
    )


# -- teams --------------------------------------------------------------------------------


@router.get("/v1/hub/tenants/{key}/teams", response_model=TeamList, responses=READ)
async def list_teams(key: str = KEY, principal: Principal = Depends(hub_principal)) -> Response:
    """A tenant's teams with their members and instances."""

    def work() -> TeamList:
        with session_scope(write=False) as s:
            scopes.authorize(s, principal, key, "read", "access:read")
            return TeamList(teams=[Team(**t) for t in teams.list_teams(s, key)])

    return json_response(await threads.run(work))


@router.post("/v1/hub/tenants/{key}/teams", status_code=201, response_model=Team, responses=ERRORS)
async def create_team(
    body: TeamCreate,
    request: Request,
    key: str = KEY,
    principal: Principal = Depends(hub_principal),
    idempotency_key: str | None = idempotency.IdempotencyHeader,
) -> Response:
    """Create a team in a tenant."""

    def work(s: Any) -> tuple[BaseModel, str | None]:
        tenant_key = _visible(s, principal, key, "access:write")
        team, _ = teams.create(s, tenant_key, body.name, by=principal.by)
        return Team(**teams.as_dict(s, team, tenants.get(s, tenant_key))), None

    return await idempotency.run(request, principal, idempotency_key, 201, work)


@router.post("/v1/hub/tenants/{key}/teams/{team}/members", response_model=Team, responses=ERRORS)
async def add_team_member(
    body: TeamMemberAdd,
    request: Request,
    key: str = KEY,
    team: str = Path(max_length=100),
    principal: Principal = Depends(hub_principal),
    idempotency_key: str | None = idempotency.IdempotencyHeader,
) -> Response:
    """Put a member of the tenant in a team."""

    def work(s: Any) -> tuple[BaseModel, str | None]:
        tenant_key = _visible(s, principal, key, "access:write")
        row = teams.add_member(s, tenant_key, team, body.email, by=principal.by)
        return Team(**teams.as_dict(s, row, tenants.get(s, tenant_key))), None

    return await idempotency.run(request, principal, idempotency_key, 200, work)


# -- invites ------------------------------------------------------------------------------


@router.get("/v1/hub/tenants/{key}/invites", response_model=InviteList, responses=READ)
async def list_invites(
    key: str = KEY,
    principal: Principal = Depends(hub_principal),
    status: str | None = Query(None, max_length=16),
) -> Response:
    """A tenant's invites, oldest first."""

    def work() -> InviteList:
        with session_scope(write=False) as s:
            scopes.authorize(s, principal, key, "read", "access:read")
            return InviteList(
                invites=[Invite(**i) for i in invites.list_invites(s, key, status=status)]
            )

    return json_response(await threads.run(work))


@router.post(
    "/v1/hub/tenants/{key}/invites", status_code=201, response_model=IssuedInvite, responses=ERRORS
)
async def create_invite(
    body: InviteCreate,
    request: Request,
    key: str = KEY,
    principal: Principal = Depends(hub_principal),
    idempotency_key: str | None = idempotency.IdempotencyHeader,
) -> Response:
    """Invite someone: the token is in this answer once (and mailed when SMTP is set)."""

    def work(s: Any) -> tuple[BaseModel, str | None]:
        tenant_key = _visible(s, principal, key, "access:write")
        by = principal.by or (principal.user.email if principal.user else None)
        issued = invites.create(
            s, tenant_key, body.email, body.role, team=body.team, by=principal.by
        )
        if by and not principal.by:
            issued.invite.invited_by = by
            issued.view["invited_by"] = by
        return IssuedInvite(
            **issued.view, token=issued.token
        ), f"/v1/hub/invites/{issued.view['id']}"

    response = await idempotency.run(
        request, principal, idempotency_key, 201, work, secret_fields=("token",)
    )
    return response


def _invite_tenant(s: Any, principal: Principal, invite_id: str) -> str:
    """The key of the invite's tenant when the caller sees it (else as not found)."""
    try:
        invite = invites.get(s, invite_id)
    except NotFound:
        raise NotFound(f"invite {invite_id} not found", "see `mno invite list`") from None
    tenant = s.get(TenantRow, invite.tenant_id)
    try:
        scopes.find(s, principal, tenant.key if tenant else "")
    except NotFound:
        raise NotFound(f"invite {invite_id} not found", "see `mno invite list`") from None
    return str(invite.id)


@router.post("/v1/hub/invites/{invite_id}/revoke", response_model=Invite, responses=ERRORS)
async def revoke_invite(
    request: Request,
    invite_id: str = Path(max_length=64),
    principal: Principal = Depends(hub_principal),
    idempotency_key: str | None = idempotency.IdempotencyHeader,
) -> Response:
    """Revoke a staged or pending invite."""

    def work(s: Any) -> tuple[BaseModel, str | None]:
        scopes.require_scope(principal, "access:write")
        found = _invite_tenant(s, principal, invite_id)
        invite = invites.revoke(s, found, by=principal.by)
        return Invite(**invites.as_dict(s, invite)), None

    return await idempotency.run(request, principal, idempotency_key, 200, work)


@router.post("/v1/hub/invites/accept", response_model=Invite, responses=ERRORS)
async def accept_invite(
    body: InviteAccept,
    request: Request,
    idempotency_key: str | None = idempotency.IdempotencyHeader,
) -> Response:
    """Accept an invite with its token (the token is the credential: no bearer needed)."""

    def work(s: Any) -> tuple[BaseModel, str | None]:
        return Invite(**invites.accept(s, body.token, name=body.name)), None

    credential = "invite:" + hashlib.sha256(body.token.encode()).hexdigest()[:50]
    return await idempotency.run(request, credential, idempotency_key, 200, work)


# -- apps and access ----------------------------------------------------------------------


@router.post("/v1/hub/access/check", response_model=AccessAnswer, responses=ERRORS)
async def access_check(
    body: AccessCheck,
    request: Request,
    principal: Principal = Depends(hub_principal),
    idempotency_key: str | None = idempotency.IdempotencyHeader,
) -> Response:
    """Whether a user may do an action in a tenant, and why (as `mno access check`)."""

    def work(s: Any) -> tuple[BaseModel, str | None]:
        scopes.authorize(s, principal, body.tenant, "read", "access:read")
        allowed, reason = check.check(s, body.user, body.tenant, body.action, body.instance)
        return AccessAnswer(allowed=allowed, reason=reason), None

    return await idempotency.run(request, principal, idempotency_key, 200, work)


def _grant_by(s: Any, principal: Principal, code: str, tenant_key: str) -> str | None:
    """Who grants: the platform (operator) or the app's owner tenant, whose super_admin
    the caller must be; the tenant granted must be visible to the caller."""
    scopes.require_scope(principal, "access:write")
    if principal.app is not None:
        raise Forbidden(f"app {principal.app.code} may only read")
    scopes.find(s, principal, tenant_key)
    if principal.operator_role in roles.ADMINS:
        return None
    app = apps.get(s, code)
    owner = s.get(TenantRow, app.owner_id)
    owner_key = owner.key if owner else ""
    try:
        scopes.authorize(s, principal, owner_key, "update_tenant", "access:write")
    except NotFound:
        raise Forbidden(f"only the owner of app {app.code} or the platform may grant it") from None
    return owner_key


@router.post(
    "/v1/hub/apps/{code}/grants", status_code=201, response_model=GrantView, responses=ERRORS
)
async def grant_app(
    body: Grant,
    request: Request,
    code: str = Path(max_length=64),
    principal: Principal = Depends(hub_principal),
    idempotency_key: str | None = idempotency.IdempotencyHeader,
) -> Response:
    """Give a tenant access to an app (read, or edit with `can_edit`)."""

    def work(s: Any) -> tuple[BaseModel, str | None]:
        by = _grant_by(s, principal, code, body.tenant)
        row = apps.grant(s, code, body.tenant, can_edit=body.can_edit, by=by)
        view = GrantView(
            app=apps.get(s, code).code,
            tenant=tenants.get(s, body.tenant).key,
            can_edit=row.can_edit,
            granted_by=row.granted_by,
        )
        return view, None

    return await idempotency.run(request, principal, idempotency_key, 201, work)


@router.delete("/v1/hub/apps/{code}/grants/{tenant}", status_code=204, responses=READ)
async def revoke_app(
    code: str = Path(max_length=64),
    tenant: str = Path(max_length=40),
    principal: Principal = Depends(hub_principal),
) -> Response:
    """Take a tenant's access to an app away."""

    def work() -> None:
        with session_scope() as s:
            by = _grant_by(s, principal, code, tenant)
            apps.revoke(s, code, tenant, by=by)

    await threads.run(work)
    return Response(status_code=204)
