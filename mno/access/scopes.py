"""API scopes and the principal behind a Hub API credential.

A personal token carries scopes (``tenants:read``, ``billing:write``, ...) that bound what
it may do over the API; the user's role in each tenant still decides, through the same
``mno.access.check`` as the CLI. A token created without ``--scope`` gets every scope the
user's roles allow; a token stored without scopes (issued before scopes existed) is
treated the same way.

Members of the ``system`` tenant (the root of the hierarchy) are platform operators:
their role there holds in every tenant. An app key acts for its app, reads only, and
sees the tenant that owns the app and the app's customers (``mno.access.customers``).

Visibility comes before rights: a tenant the caller may not see is answered exactly as
a tenant that does not exist, so its existence is not revealed.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sqlmodel import col, select

from mno.access import check, custom_roles, customers, roles
from mno.errors import BadInput, Forbidden, NotFound
from mno.store.models.access import Membership, User
from mno.store.models.tenancy import App, Tenant
from mno.tenancy import tenants

if TYPE_CHECKING:
    from sqlmodel import Session

SCOPES = (
    "tenants:read",
    "tenants:write",
    "access:read",
    "access:write",
    "billing:read",
    "billing:write",
    "instances:read",
    "instances:write",
    "events:read",
    "webhooks:read",
    "webhooks:write",
)
READ_SCOPES = tuple(s for s in SCOPES if s.endswith(":read"))
APP_KEY_SCOPES = ("tenants:read", "instances:read", "billing:read", "events:read")

ACTION_SCOPES: dict[str, str] = {
    "invite": "access:write",
    "manage_members": "access:write",
    "manage_teams": "access:write",
    "purchase": "billing:write",
    "manage_billing": "billing:write",
    "manage_instances": "instances:write",
    "update_tenant": "tenants:write",
    "delete_tenant": "tenants:write",
}
"""The write scope each action needs besides the role (reads need the ``:read`` one)."""


def check_scope(name: str) -> str:
    if name not in SCOPES:
        raise BadInput(f"unknown scope {name!r}", f"one of: {', '.join(SCOPES)}")
    return name


def role_scopes(session: Session, role: str, tenant: Tenant | None) -> set[str]:
    """The scopes a role's permissions reach: every read, and the writes of its actions."""
    allowed = set(READ_SCOPES)
    if role in roles.ROLES:
        actions = {a for a in roles.ACTIONS if roles.allows(role, a)}
    elif tenant is not None:
        actions = set(custom_roles.permissions(session, role, tenant))
    else:
        actions = set()
    allowed |= {ACTION_SCOPES[a] for a in actions if a in ACTION_SCOPES}
    if "webhooks:read" in allowed and role in roles.ADMINS:
        allowed.add("webhooks:write")
    return allowed


def user_scopes(session: Session, user: User) -> set[str]:
    """Every scope the user's memberships reach (the union over their tenants)."""
    rows = session.exec(
        select(Membership.role, Tenant)
        .where(Membership.user_id == user.id, Membership.tenant_id == Tenant.id)
        .order_by(col(Tenant.key))
    ).all()
    allowed: set[str] = set(READ_SCOPES)
    for role, tenant in rows:
        allowed |= role_scopes(session, role, tenant)
    return allowed


def for_new_token(session: Session, user: User, wanted: Sequence[str] | None) -> list[str]:
    """The scopes to store on a new token: ``wanted`` (checked against what the user's
    roles reach), or all of those."""
    reach = user_scopes(session, user)
    if not wanted:
        return [s for s in SCOPES if s in reach]
    names = [check_scope(s.strip()) for s in wanted]
    beyond = [s for s in names if s not in reach]
    if beyond:
        raise BadInput(
            f"scope {beyond[0]} is beyond the roles of {user.email}",
            f"they reach: {', '.join(s for s in SCOPES if s in reach)}",
        )
    return [s for s in SCOPES if s in names]


@dataclass
class Principal:
    """Who calls the API: a user through a personal token, or an app through its key."""

    kind: str  # "user" or "app"
    credential: str  # the token id or the key id: idempotency keys are scoped to it
    scopes: frozenset[str]
    user: User | None = None
    app: App | None = None
    operator_role: str | None = None  # the user's role in the system tenant
    _roles: dict[uuid.UUID, str | None] = field(default_factory=dict)

    @property
    def label(self) -> str:
        if self.user is not None:
            return self.user.email
        assert self.app is not None
        return f"app {self.app.code}"

    @property
    def by(self) -> str | None:
        """The acting user for domain functions (``by=None`` is the operator)."""
        if self.operator_role in roles.ADMINS or self.user is None:
            return None
        return self.user.email


def operator_role(session: Session, user: User) -> str | None:
    if user.status != "active":
        return None
    system = session.exec(select(Tenant).where(Tenant.key == tenants.SYSTEM_KEY)).first()
    if system is None:
        return None
    return session.exec(
        select(Membership.role).where(
            Membership.user_id == user.id, Membership.tenant_id == system.id
        )
    ).first()


def for_user(
    session: Session, user: User, credential: str, stored: Iterable[str] | None
) -> Principal:
    scopes = frozenset(stored) if stored is not None else frozenset(user_scopes(session, user))
    return Principal(
        "user", credential, scopes, user=user, operator_role=operator_role(session, user)
    )


def for_app(app: App, key_id: str) -> Principal:
    return Principal("app", key_id, frozenset(APP_KEY_SCOPES), app=app)


def require_scope(principal: Principal, scope: str) -> None:
    if scope not in principal.scopes:
        raise Forbidden(f"this credential lacks the scope {scope}")


def _hidden(key: str) -> NotFound:
    return NotFound(f"tenant {key} not found", "see `mno tenant list`")


def visible(session: Session, principal: Principal, tenant: Tenant) -> bool:
    """Whether the caller may know that ``tenant`` exists."""
    if tenant.key == tenants.SYSTEM_KEY:
        return principal.operator_role is not None
    if principal.operator_role is not None:
        return True
    if principal.app is not None:
        return customers.may_ask(session, principal.app, tenant)[0]
    assert principal.user is not None
    return (
        session.exec(
            select(Membership.id).where(
                Membership.user_id == principal.user.id, Membership.tenant_id == tenant.id
            )
        ).first()
        is not None
    )


def find(session: Session, principal: Principal, key: str) -> Tenant:
    """The tenant ``key`` when the caller may see it; NotFound as for a missing one."""
    try:
        tenant = tenants.get(session, key)
    except NotFound:
        raise _hidden(key) from None
    if not visible(session, principal, tenant):
        raise _hidden(key)
    return tenant


def authorize(session: Session, principal: Principal, key: str, action: str, scope: str) -> Tenant:
    """The tenant ``key`` when the caller may do ``action`` in it with ``scope``.

    Not visible: NotFound (as for a missing tenant); visible but the scope or the role
    falls short: Forbidden with the reason ``mno access check`` gives."""
    require_scope(principal, scope)
    tenant = find(session, principal, key)
    allowed, reason = decide(session, principal, tenant, action)
    if not allowed:
        raise Forbidden(reason)
    return tenant


def decide(session: Session, principal: Principal, tenant: Tenant, action: str) -> tuple[bool, str]:
    if principal.app is not None:
        if action != "read":
            return False, f"app {principal.app.code} may only read"
        return True, customers.may_ask(session, principal.app, tenant)[1]
    assert principal.user is not None
    op_role = principal.operator_role
    if op_role is not None and principal.user.status == "active":
        if op_role in roles.ROLES and roles.allows(op_role, action):
            return True, f"{principal.user.email} is {op_role} of the platform"
        member_allowed, member_reason = check.check(session, principal.user, tenant, action)
        if member_allowed:
            return True, member_reason
        need = " or ".join(roles.ACTIONS.get(action, ()))
        return False, f"{action} needs {need}; {principal.user.email} is {op_role} of the platform"
    return check.check(session, principal.user, tenant, action)


def require_operator(principal: Principal, action: str) -> None:
    """Platform-wide changes (status transitions, top-level tenants) need an operator
    whose role in the system tenant allows ``action``."""
    role = principal.operator_role
    if role is None or role not in roles.ROLES or not roles.allows(role, action):
        raise Forbidden(f"{action} on the platform needs an operator ({principal.label})")


def visible_tenant_ids(session: Session, principal: Principal) -> Any:
    """A SELECT of the ids of the tenants the caller sees; None: every tenant."""
    import sqlalchemy as sa

    if principal.operator_role is not None:
        return None
    if principal.app is not None:
        ids = customers.customer_ids(session, principal.app) | {principal.app.owner_id}
        return sa.select(col(Tenant.id)).where(col(Tenant.id).in_(ids))
    assert principal.user is not None
    return sa.select(col(Membership.tenant_id)).where(col(Membership.user_id) == principal.user.id)


SORTS = ("key", "-key", "created_at", "-created_at", "name", "-name")


def page_tenants(
    session: Session,
    principal: Principal,
    *,
    status: str | None = None,
    name_prefix: str | None = None,
    parent: str | None = None,
    sort: str = "key",
    after: str | None = None,
    limit: int = 100,
) -> Any:
    """One page of the tenants the caller sees (keyset paging: stable under inserts).

    ``sort`` is a column with ``-`` for descending; ties are broken by the unique key, so
    the cursor names one row. Returns a ``paging.Page`` of ``tenants.TenantView``."""
    from mno import validate
    from mno.store import paging
    from mno.store.models.tenancy import TenantDomain

    if sort not in SORTS:
        raise BadInput(f"unknown sort {sort!r}", f"one of: {', '.join(SORTS)}")
    require_scope(principal, "tenants:read")
    stmt = select(Tenant).where(col(Tenant.key) != tenants.SYSTEM_KEY)
    ids = visible_tenant_ids(session, principal)
    if ids is not None:
        stmt = stmt.where(col(Tenant.id).in_(ids))
    if status:
        stmt = stmt.where(Tenant.status == validate.one_of(status, tenants.STATUSES, "status"))
    if name_prefix:
        escaped = name_prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        stmt = stmt.where(col(Tenant.name).like(escaped + "%", escape="\\"))
    if parent:
        stmt = stmt.where(Tenant.parent_id == find(session, principal, parent).id)
    column = sort.lstrip("-")
    order = (
        [col(Tenant.key)] if column == "key" else [col(getattr(Tenant, column)), col(Tenant.key)]
    )
    rows, nxt = paging.page(session, stmt, order, after, limit, descending=sort.startswith("-"))
    domains: dict[uuid.UUID, list[str]] = {}
    parents: dict[uuid.UUID, str] = {}
    if rows:
        for tid, domain in session.exec(
            select(TenantDomain.tenant_id, TenantDomain.domain)
            .where(col(TenantDomain.tenant_id).in_([t.id for t in rows]))
            .order_by(col(TenantDomain.domain))
        ):
            domains.setdefault(tid, []).append(domain)
        parent_ids = {t.parent_id for t in rows if t.parent_id}
        for pid, pkey in session.exec(
            select(Tenant.id, Tenant.key).where(col(Tenant.id).in_(parent_ids))
        ):
            parents[pid] = pkey
    views = [
        tenants.TenantView(
            t, parents.get(t.parent_id) if t.parent_id else None, domains.get(t.id, [])
        )
        for t in rows
    ]
    return paging.Page(views, nxt)


def page_events(
    session: Session,
    principal: Principal,
    *,
    after: str | None,
    limit: int,
    event_type: str | None = None,
) -> list[Any]:
    """Outbox events after the follow cursor ``after`` (``outbox.follow``), oldest first,
    of the tenants the caller sees (an operator sees every event, platform events
    included)."""
    from mno.store import outbox
    from mno.store.models.core import Event

    require_scope(principal, "events:read")
    stmt = select(Event)
    ids = visible_tenant_ids(session, principal)
    if ids is not None:
        stmt = stmt.where(col(Event.tenant_id).in_(ids))
    if event_type:
        if "*" in event_type:
            escaped = event_type.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
            stmt = stmt.where(col(Event.type).like(escaped.replace("*", "%"), escape="\\"))
        else:
            stmt = stmt.where(Event.type == event_type)
    return outbox.follow(session, stmt, after, limit)
