"""Users: an email, a name and a status (active or disabled)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from sqlmodel import col, select

from mno import validate
from mno.access import revocation
from mno.errors import Conflict, NotFound
from mno.store import audit, lookup, outbox, paging
from mno.store.models.access import Membership, User
from mno.store.models.tenancy import Tenant

if TYPE_CHECKING:
    from sqlmodel import Session

STATUSES = ("active", "disabled")


def as_dict(user: User) -> dict[str, Any]:
    return {
        "id": str(user.id),
        "email": user.email,
        "name": user.name,
        "status": user.status,
        "created_at": audit.jsonable(user.created_at),
    }


def get(session: Session, email_or_id: str | uuid.UUID) -> User:
    if isinstance(email_or_id, uuid.UUID):
        user = session.get(User, email_or_id)
    else:
        user = session.exec(select(User).where(User.email == email_or_id.strip().lower())).first()
        if user is None:
            user = lookup.find(session, User, email_or_id, "user")
    if user is None:
        raise NotFound(f"user {email_or_id} not found", "see `mno user list`")
    return user


def find(session: Session, email: str) -> User | None:
    return session.exec(select(User).where(User.email == email.strip().lower())).first()


def create(
    session: Session, email: str, *, name: str = "", if_not_exists: bool = False
) -> tuple[User, bool]:
    email = validate.email(email).lower()
    existing = find(session, email)
    if existing is not None:
        if if_not_exists:
            return existing, False
        raise Conflict(f"user {email} already exists", "use --if-not-exists to accept that")
    user = User(email=email, name=(name or "").strip()[:200])
    session.add(user)
    session.flush()
    audit.record(
        session,
        "user.create",
        target_type="user",
        target_id=user.id,
        target=email,
        after=audit.snapshot(user),
    )
    outbox.emit(session, "user.created", {"id": user.id, "email": email, "name": user.name})
    return user, True


def set_status(session: Session, email: str, status: str) -> User:
    user = get(session, email)
    status = validate.one_of(status, STATUSES, "status")
    if user.status == status:
        return user
    before = audit.snapshot(user)
    user.status = status
    user.touch()
    session.add(user)
    audit.record(
        session,
        f"user.{'disable' if status == 'disabled' else 'enable'}",
        target_type="user",
        target_id=user.id,
        target=user.email,
        before=before,
        after=audit.snapshot(user),
    )
    outbox.emit(session, f"user.{status}", {"id": user.id, "email": user.email})
    revocation.bump(session)
    return user


def list_users(
    session: Session, *, tenant: str | None = None, status: str | None = None
) -> list[User]:
    return list(session.exec(_users(tenant, status).order_by(User.email)))


def page_users(
    session: Session,
    *,
    tenant: str | None = None,
    status: str | None = None,
    after: str | None = None,
    limit: int = paging.DEFAULT_LIMIT,
) -> paging.Page[User]:
    """One page of users by email, after the cursor ``after`` (an email)."""
    return paging.page_of(session, _users(tenant, status), [col(User.email)], after, limit)


def stream_users(
    session: Session,
    *,
    tenant: str | None = None,
    status: str | None = None,
    after: str | None = None,
) -> Iterator[User]:
    """Every user by email, read a chunk at a time."""
    return paging.each(session, _users(tenant, status), [col(User.email)], after)


def _users(tenant: str | None, status: str | None) -> Any:
    stmt = select(User)
    if tenant:
        stmt = (
            stmt.join(Membership, col(Membership.user_id) == User.id)
            .join(Tenant, col(Tenant.id) == Membership.tenant_id)
            .where(Tenant.key == tenant)
        )
    if status:
        stmt = stmt.where(User.status == validate.one_of(status, STATUSES, "status"))
    return stmt


def memberships(session: Session, user: User) -> list[dict[str, Any]]:
    rows = session.exec(
        select(Membership, Tenant)
        .where(Membership.user_id == user.id, Membership.tenant_id == Tenant.id)
        .order_by(Tenant.key)
    ).all()
    return [{"tenant": t.key, "role": m.role} for m, t in rows]
