"""Signing people in at the hub: password, optional TOTP step, lockout, invitations.

``sign_in`` checks an email and password and either starts a browser session
(``mno.sso.sessions``), asks for the second factor (a short-lived, single-use challenge
whose digest alone is stored) or refuses. Every refusal gives the same answer whatever
the cause (unknown email, wrong password, disabled user) and costs the same argon2 work.

Lockout: ``sso.lockout_failures`` failures (default 5) within ``sso.lockout_window``
(default 15m) lock the user's sign-in for ``sso.lockout_for`` (default 15m). The counter
moves by one SQL ``UPDATE`` per failure (``failures = failures + 1``), so concurrent
failures on PostgreSQL are all counted, and the lock is taken by a conditional update
that one transaction alone wins (one ``sso.locked_out`` event). A locked user is refused
whatever the password; a successful sign-in clears the counter.

Refusals are written (audit row + ``sso.signin_failed`` event) and returned, not raised,
so that the caller's transaction commits them.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import parse_qsl, urlsplit

from sqlmodel import case, col, or_, select, update

from mno import clock, settings
from mno.access import invites, secrets
from mno.errors import BadInput, Forbidden, NotFound
from mno.sso import mfa, passwords, sessions
from mno.store import audit, outbox
from mno.store.models.access import Invite, User
from mno.store.models.signin import MfaChallenge, UserCredential
from mno.store.models.tenancy import Tenant

if TYPE_CHECKING:
    from sqlmodel import Session

Status = Literal["signed_in", "mfa", "invalid", "locked", "expired"]
DEFAULT_NEXT = "/launcher"
CHALLENGE_PREFIX = "mnomfa"
CHALLENGE_TTL = timedelta(minutes=5)
CHALLENGE_ATTEMPTS = 5
MAX_NEXT = 2048


@dataclass
class Outcome:
    status: Status
    next_url: str = DEFAULT_NEXT
    started: sessions.Started | None = None
    challenge: str | None = None
    email: str = ""
    details: dict[str, Any] = field(default_factory=dict)


def lockout_failures() -> int:
    return int(settings.profile_value("sso.lockout_failures", 5))


def lockout_window() -> timedelta:
    return settings.parse_duration(settings.profile_value("sso.lockout_window", "15m"))


def lockout_for() -> timedelta:
    return settings.parse_duration(settings.profile_value("sso.lockout_for", "15m"))


def safe_next(value: str | None) -> str:
    """``value`` when it is a path on this hub, else the launcher: no scheme, no host,
    no ``//`` or backslash that a browser would read as another host."""
    if not value or len(value) > MAX_NEXT:
        return DEFAULT_NEXT
    if not value.startswith("/") or value.startswith("//") or "\\" in value:
        return DEFAULT_NEXT
    if any(ord(c) < 0x21 or ord(c) == 0x7F for c in value):
        return DEFAULT_NEXT
    parts = urlsplit(value)
    if parts.scheme or parts.netloc:
        return DEFAULT_NEXT
    return value


def locked(row: UserCredential | None) -> bool:
    return row is not None and row.locked_until is not None and row.locked_until > clock.now()


def sign_in(
    session: Session,
    email: str,
    password: str,
    *,
    next_url: str | None = None,
    user_agent: str = "",
    previous: str | None = None,
    checked: passwords.Checked | None = None,
) -> Outcome:
    """Check ``email`` and ``password``; start a session or ask for the second factor.
    A new session ends the browser's ``previous`` one (no session outlives a sign-in).

    ``checked``: the result of ``passwords.check`` run beforehand in a read-only
    transaction, so that the argon2 work does not hold the write lock (SQLite has one
    writer); it is used only while the store still holds what it saw."""
    email = (email or "").strip().lower()[:254]
    target = safe_next(next_url)
    user = _find_user(session, email)
    row = passwords.credential(session, user) if user is not None else None
    if user is not None and locked(row):
        _refused(session, email, user, "locked")
        return Outcome("locked", target, email=email)
    if checked is None or not checked.still_current(session):
        checked = passwords.check(session, email, (password or "")[: passwords.MAX_LENGTH])
    passwords.store_rehash(session, checked)
    if not checked.ok or checked.user is None or checked.credential is None:
        if checked.user is not None and checked.credential is not None:
            if _count_failure(session, checked.user, checked.credential):
                return Outcome("locked", target, email=email)
        _refused(session, email, checked.user, "invalid")
        return Outcome("invalid", target, email=email)
    user = session.get(User, checked.user.id)
    row = passwords.credential(session, user) if user is not None else None
    if user is None or row is None:  # pragma: no cover - still_current saw both
        return Outcome("invalid", target, email=email)
    if mfa.enabled(row):
        token = secrets.new_token(CHALLENGE_PREFIX)
        session.add(
            MfaChallenge(
                user_id=user.id,
                token_hash=secrets.digest(token),
                expires_at=clock.now() + CHALLENGE_TTL,
                next_url=target,
            )
        )
        return Outcome("mfa", target, challenge=token, email=user.email)
    _clear_failures(session, row)
    sessions.end(session, previous)
    started = sessions.start(session, user, mfa=False, user_agent=user_agent)
    return Outcome("signed_in", target, started=started, email=user.email)


def second_factor(
    session: Session,
    challenge: str | None,
    code: str,
    *,
    user_agent: str = "",
    previous: str | None = None,
) -> Outcome:
    """Finish a sign-in with a TOTP code for the challenge ``sign_in`` returned."""
    found = _challenge(session, challenge)
    if found is None:
        return Outcome("expired")
    user = session.get(User, found.user_id)
    row = passwords.credential(session, user) if user is not None else None
    if user is None or row is None or user.status != "active" or not mfa.enabled(row):
        return Outcome("expired")
    if locked(row):
        found.used_at = clock.now()
        session.add(found)
        _refused(session, user.email, user, "locked")
        return Outcome("locked", found.next_url, email=user.email)
    if mfa.use_code(session, row, code):
        found.used_at = clock.now()
        found.touch()
        session.add(found)
        _clear_failures(session, row)
        sessions.end(session, previous)
        started = sessions.start(session, user, mfa=True, user_agent=user_agent)
        return Outcome("signed_in", found.next_url, started=started, email=user.email)
    found.attempts += 1
    if found.attempts >= CHALLENGE_ATTEMPTS:
        found.used_at = clock.now()
    found.touch()
    session.add(found)
    if _count_failure(session, user, row):
        return Outcome("locked", found.next_url, email=user.email)
    _refused(session, user.email, user, "invalid_code")
    status: Status = "expired" if found.used_at is not None else "invalid"
    return Outcome(status, found.next_url, challenge=challenge, email=user.email)


def challenge_live(session: Session, challenge: str | None) -> bool:
    return _challenge(session, challenge) is not None


def challenge_next(session: Session, challenge: str | None) -> str | None:
    """Where a live second-factor challenge continues after the code (None if not live)."""
    row = _challenge(session, challenge)
    return safe_next(row.next_url) if row is not None else None


def next_origin(session: Session, next_url: str | None) -> str:
    """The origin at which signing in may end besides the hub, as a CSP source ("" for
    none): when ``next`` is the authorization endpoint of an enabled client with one of
    its registered redirect URIs, the browser is redirected on to that client, and
    browsers check ``form-action`` on every redirect that follows a form."""
    from mno.sso import clients

    parts = urlsplit(safe_next(next_url))
    if parts.path != "/authorize":
        return ""
    query = dict(parse_qsl(parts.query, max_num_fields=20))
    client = clients.find(session, query.get("client_id", ""))
    uri = query.get("redirect_uri", "")
    if client is None or uri not in client.redirect_uris:
        return ""
    return clients.redirect_origin(uri)


def sign_out(session: Session, token: str | None) -> bool:
    return sessions.end(session, token)


def _find_user(session: Session, email: str) -> User | None:
    if not email:
        return None
    return session.exec(select(User).where(User.email == email)).first()


def _challenge(session: Session, token: str | None) -> MfaChallenge | None:
    if not token or not token.startswith(CHALLENGE_PREFIX + "_") or len(token) > 100:
        return None
    row = session.exec(
        select(MfaChallenge).where(MfaChallenge.token_hash == secrets.digest(token))
    ).first()
    if row is None or row.used_at is not None or row.expires_at <= clock.now():
        return None
    return row


UNKNOWN = "(unknown user)"


def _refused(session: Session, email: str, user: User | None, reason: str) -> None:
    """Record a refusal. What was typed is kept only when it is a user's email: people
    sometimes type their password into the email field, and it must not land in the
    audit log or in events fanned out to webhooks."""
    who = user.email if user is not None else UNKNOWN
    audit.record(
        session,
        "sso.signin_failed",
        target_type="user",
        target_id=user.id if user is not None else "",
        target=who,
        after={"reason": reason},
        actor=who,
    )
    outbox.emit(
        session,
        "sso.signin_failed",
        {"email": user.email if user is not None else None, "reason": reason},
    )


def _count_failure(session: Session, user: User, row: UserCredential) -> bool:
    """Count one failure atomically; True when this failure locked the user."""
    now = clock.now()
    stale = or_(
        col(UserCredential.failures_since).is_(None),
        col(UserCredential.failures_since) < now - lockout_window(),
    )
    session.exec(
        update(UserCredential)
        .where(col(UserCredential.id) == row.id)
        .values(
            failures=case((stale, 1), else_=col(UserCredential.failures) + 1),
            failures_since=case((stale, now), else_=col(UserCredential.failures_since)),
        )
    )
    failures = session.exec(
        select(UserCredential.failures).where(UserCredential.id == row.id)
    ).one()
    if failures < lockout_failures():
        return False
    until = now + lockout_for()
    result = session.exec(
        update(UserCredential)
        .where(
            col(UserCredential.id) == row.id,
            or_(
                col(UserCredential.locked_until).is_(None),
                col(UserCredential.locked_until) <= now,
            ),
        )
        .values(locked_until=until)
    )
    if int(result.rowcount or 0) != 1:
        return False
    audit.record(
        session,
        "sso.locked_out",
        target_type="user",
        target_id=user.id,
        target=user.email,
        after={"failures": failures, "until": until.isoformat()},
        actor=user.email,
    )
    outbox.emit(session, "sso.locked_out", {"user": user.email, "until": until})
    return True


def _clear_failures(session: Session, row: UserCredential) -> None:
    if row.failures or row.locked_until is not None or row.failures_since is not None:
        session.exec(
            update(UserCredential)
            .where(col(UserCredential.id) == row.id)
            .values(failures=0, failures_since=None, locked_until=None)
        )


# -- invitations -------------------------------------------------------------------------


class WrongPassword(Forbidden):
    """The invitee's existing password was wrong; the caller records the failure with
    ``record_failure`` in a transaction of its own (the acceptance rolls back)."""


def record_failure(session: Session, email: str) -> Status:
    """Count a refused password of ``email`` outside a sign-in (the invitation page)."""
    user = _find_user(session, (email or "").strip().lower())
    row = passwords.credential(session, user) if user is not None else None
    if user is None or row is None:
        return "invalid"
    if _count_failure(session, user, row):
        return "locked"
    _refused(session, user.email, user, "invalid")
    return "invalid"


@dataclass(frozen=True)
class InviteView:
    email: str
    tenant: str
    tenant_name: str
    role: str
    status: str
    has_password: bool


def _invite(session: Session, token: str | None) -> Invite:
    token = (token or "").strip()
    if not token.startswith(invites.TOKEN_PREFIX + "_") or len(token) > 100:
        raise NotFound("no invite has this token")
    row = session.exec(select(Invite).where(Invite.token_hash == secrets.digest(token))).first()
    if row is None:
        raise NotFound("no invite has this token")
    return row


def invite_view(session: Session, token: str | None) -> InviteView:
    """What the invite page shows: who is invited where, and whether they have a password."""
    row = _invite(session, token)
    tenant = session.get(Tenant, row.tenant_id)
    user = _find_user(session, row.email)
    return InviteView(
        email=row.email,
        tenant=tenant.key if tenant else "?",
        tenant_name=(tenant.name if tenant else "") or "",
        role=row.role,
        status=invites.state(row),
        has_password=user is not None and passwords.has_password(session, user),
    )


def accept_invite(
    session: Session,
    token: str,
    password: str,
    *,
    confirm: str | None = None,
    name: str = "",
    user_agent: str = "",
) -> sessions.Started:
    """Accept an invite from the browser and start a session, in one transaction.

    A new user sets ``password`` (``confirm`` must match); a user who has a password
    already proves it. A user with a second factor signs in first and accepts with
    ``mno invite accept`` (the page says so)."""
    view = invite_view(session, token)
    user = _find_user(session, view.email)
    if view.has_password and user is not None:
        if locked(passwords.credential(session, user)):
            raise Forbidden("too many failed sign-ins: this account is locked for a while")
        checked = passwords.verify_user(session, view.email, password or "")
        if not checked.ok or checked.credential is None:
            raise WrongPassword("the password is not right for this account")
        _clear_failures(session, checked.credential)
        if mfa.enabled(checked.credential):
            raise Forbidden(
                "this account has a second factor",
                f"sign in first, then run `mno invite accept` for {view.tenant}",
            )
    else:
        if confirm is not None and confirm != password:
            raise BadInput("the two passwords differ")
        passwords.check_password(password)
    invites.accept(session, token, name=name)
    user = _find_user(session, view.email)
    assert user is not None
    if not view.has_password:
        passwords.set_password(session, user.email, password, actor=user.email)
    return sessions.start(session, user, mfa=False, user_agent=user_agent)


def user_of(session: Session, cookie: str | None) -> User | None:
    user_id: uuid.UUID | None = sessions.user_for(session, cookie)
    return session.get(User, user_id) if user_id is not None else None
