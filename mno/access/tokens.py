"""User tokens: personal bearer tokens for services, kept only as SHA-256 hashes.

A token expires after its TTL (``access.token_ttl`` in the profile, default 30d) and can
be revoked at once; the IDM answers ``allowed: false`` for it from then on.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlmodel import col, select

from mno import clock, settings
from mno.access import revocation, secrets, users
from mno.errors import BadInput, InvalidTransition
from mno.store import audit, lookup, outbox
from mno.store.models.access import User, UserToken

if TYPE_CHECKING:
    from sqlmodel import Session

DEFAULT_TTL = "30d"
PREFIX = "mnout"


def as_dict(token: UserToken, user: User) -> dict[str, Any]:
    now = clock.now()
    status = "revoked" if token.revoked_at else ("expired" if token.expires_at <= now else "active")
    return {
        "id": str(token.id),
        "user": user.email,
        "name": token.name,
        "status": status,
        "expires_at": audit.jsonable(token.expires_at),
        "revoked_at": audit.jsonable(token.revoked_at),
        "scopes": list(token.scopes) if token.scopes is not None else None,
    }


@dataclass
class Issued:
    token: UserToken
    secret: str
    view: dict[str, Any]


def create(
    session: Session,
    email: str,
    *,
    ttl: str | None = None,
    name: str = "",
    scopes: Sequence[str] | None = None,
) -> Issued:
    """Issue a token; ``scopes`` limit what it may do over the API (default: every
    scope the user's roles allow, see ``mno.access.scopes``)."""
    from mno.access import scopes as scope_rules

    user = users.get(session, email)
    if user.status != "active":
        raise InvalidTransition(f"{user.email} is {user.status}")
    granted = scope_rules.for_new_token(session, user, scopes)
    period = settings.parse_duration(
        ttl if ttl is not None else settings.profile_value("access.token_ttl", DEFAULT_TTL)
    )
    if period.total_seconds() <= 0:
        raise BadInput("the token TTL must be positive")
    secret = secrets.new_token(PREFIX)
    token = UserToken(
        user_id=user.id,
        name=(name or "")[:100],
        token_hash=secrets.digest(secret),
        expires_at=clock.now() + period,
        scopes=granted,
    )
    session.add(token)
    session.flush()
    audit.record(
        session,
        "user.token.create",
        target_type="user_token",
        target_id=token.id,
        target=user.email,
        after={
            "name": token.name,
            "expires_at": audit.jsonable(token.expires_at),
            "scopes": granted,
        },
    )
    outbox.emit(
        session,
        "user.token_created",
        {"id": token.id, "email": user.email, "expires_at": token.expires_at},
    )
    return Issued(token, secret, as_dict(token, user))


def revoke(session: Session, token_id: str) -> dict[str, Any]:
    token = lookup.by_id_or_prefix(session, UserToken, token_id, "token", "see `mno user show`")
    user = session.get(User, token.user_id)
    assert user is not None
    if token.revoked_at is None:
        token.revoked_at = clock.now()
        token.touch()
        session.add(token)
        audit.record(
            session,
            "user.token.revoke",
            target_type="user_token",
            target_id=token.id,
            target=user.email,
            after={"revoked_at": audit.jsonable(token.revoked_at)},
        )
        outbox.emit(session, "user.token_revoked", {"id": token.id, "email": user.email})
        revocation.bump(session)
    return as_dict(token, user)


def list_tokens(session: Session, email: str) -> list[dict[str, Any]]:
    user = users.get(session, email)
    rows = session.exec(
        select(UserToken).where(UserToken.user_id == user.id).order_by(col(UserToken.created_at))
    )
    return [as_dict(t, user) for t in rows]


def resolve(session: Session, secret: str) -> User | None:
    """The user behind a live token; None for unknown, expired or revoked tokens."""
    found = resolve_token(session, secret)
    return found[1] if found else None


def resolve_token(session: Session, secret: str) -> tuple[UserToken, User] | None:
    """The live token and its user; None for unknown, expired or revoked tokens."""
    if not secret or not secret.startswith(PREFIX + "_"):
        return None
    row = session.exec(
        select(UserToken, User).where(
            UserToken.token_hash == secrets.digest(secret), UserToken.user_id == User.id
        )
    ).first()
    if row is None:
        return None
    token, user = row
    if token.revoked_at is not None or token.expires_at <= clock.now():
        return None
    return token, user
