"""Browser sessions of the hub: who is signed in, behind the ``mno_sid`` cookie.

The sign-in page starts a session once the password (and, when enabled, the second
factor) is right; the OpenID Connect provider asks ``user_for`` who a browser belongs to.
The cookie holds 32 random bytes; the store keeps only their SHA-256 digest, so reading
the store does not let anyone take over a session. Ending a session (sign-out, an
administrator, a disabled user) takes effect at once.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING

from sqlmodel import col, select, update

from mno import clock, settings
from mno.access import secrets
from mno.errors import BadInput
from mno.store import audit, db, outbox
from mno.store.models.access import User
from mno.store.models.sso import SsoSession

if TYPE_CHECKING:
    from sqlmodel import Session

COOKIE = "mno_sid"
PREFIX = "mnosid"
DEFAULT_TTL = "12h"


@dataclass(frozen=True)
class Started:
    """A new session: ``token`` goes into the cookie and is never stored."""

    token: str
    row: SsoSession


def ttl() -> timedelta:
    period = settings.parse_duration(settings.profile_value("sso.session_ttl", DEFAULT_TTL))
    if period.total_seconds() <= 0:
        raise BadInput("sso.session_ttl must be positive")
    return period


def start(session: Session, user: User, *, mfa: bool = False, user_agent: str = "") -> Started:
    """Start a session for ``user``, whose credentials the caller has checked."""
    if user.status != "active":
        raise BadInput(f"{user.email} is {user.status}")
    now = clock.now()
    token = secrets.new_token(PREFIX)
    row = SsoSession(
        user_id=user.id,
        token_hash=secrets.digest(token),
        expires_at=now + ttl(),
        mfa_at=now if mfa else None,
        user_agent=user_agent[:200],
    )
    session.add(row)
    audit.record(
        session,
        "sso.session_started",
        target_type="user",
        target_id=user.id,
        target=user.email,
        after={"session": str(row.id), "mfa": mfa},
        actor=user.email,
    )
    outbox.emit(session, "sso.signed_in", {"user": user.email, "session": str(row.id), "mfa": mfa})
    return Started(token, row)


def find(session: Session, token: str | None) -> SsoSession | None:
    """The live session behind a cookie value, or None (unknown, expired, ended, or its
    user disabled)."""
    if not token or not token.startswith(PREFIX + "_") or len(token) > 100:
        return None
    # one query: the session and its user (then in the identity map for session.get)
    found = session.exec(
        select(SsoSession, User).where(
            SsoSession.token_hash == secrets.digest(token), User.id == SsoSession.user_id
        )
    ).first()
    if found is None:
        return None
    row, user = found
    db.pin(session, user)  # callers read the user next
    if row.ended_at is not None or row.expires_at <= clock.now() or user.status != "active":
        return None
    return row


def user_for(session: Session, token: str | None) -> uuid.UUID | None:
    """The id of the user signed in with this cookie value, or None."""
    row = find(session, token)
    return row.user_id if row is not None else None


def end(session: Session, token: str | None) -> bool:
    """Sign out the session behind a cookie value; False when there was none."""
    row = find(session, token)
    if row is None:
        return False
    row.ended_at = clock.now()
    session.add(row)
    user = session.get(User, row.user_id)
    email = user.email if user is not None else str(row.user_id)
    audit.record(
        session,
        "sso.session_ended",
        target_type="user",
        target_id=row.user_id,
        target=email,
        after={"session": str(row.id)},
        actor=email,
    )
    outbox.emit(session, "sso.signed_out", {"user": email, "session": str(row.id)})
    return True


def end_all(session: Session, user: User) -> int:
    """End every live session of ``user`` (a password change, a disabled account)."""
    now = clock.now()
    result = session.exec(
        update(SsoSession)
        .where(col(SsoSession.user_id) == user.id, col(SsoSession.ended_at).is_(None))
        .values(ended_at=now)
    )
    count = int(result.rowcount or 0)
    if count:
        audit.record(
            session,
            "sso.sessions_ended",
            target_type="user",
            target_id=user.id,
            target=user.email,
            after={"sessions": count},
        )
        outbox.emit(session, "sso.signed_out", {"user": user.email, "sessions": count})
    return count
