"""TOTP second factor (RFC 6238, pyotp): 6 digits, 30-second steps.

The secret is sealed under the master key (``mno.crypto``) in ``user_credential``; it
is shown once, as an ``otpauth://`` URI, when the factor is enabled. A code is accepted
for the current step and one step either side, and at most once: the step it matched is
stored, and a code from that step or an earlier one is refused (no replay), by a single
conditional update so that two concurrent uses of one code cannot both succeed.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import pyotp
from sqlmodel import col, or_, update

from mno import clock, crypto
from mno.access import users
from mno.errors import Conflict
from mno.sso import passwords
from mno.store import audit, outbox
from mno.store.models.access import User
from mno.store.models.signin import UserCredential

if TYPE_CHECKING:
    from sqlmodel import Session

ISSUER = "mno"
STEP = 30
WINDOW = 1


@dataclass(frozen=True)
class Enabled:
    """A new factor: ``uri`` (and ``secret``) are shown once and never stored in clear."""

    user: User
    secret: str
    uri: str


def enable(session: Session, email: str, *, issuer: str = ISSUER) -> Enabled:
    """Give ``email`` a TOTP secret; one that has a factor already must disable it first."""
    user = users.get(session, email)
    row = passwords.credential_for_update(session, user)
    if row.totp_secret_enc is not None:
        raise Conflict(
            f"{user.email} already has a second factor",
            f"`mno user mfa disable {user.email}` first to replace it",
        )
    secret = pyotp.random_base32()
    row.totp_secret_enc = crypto.encrypt(secret)
    row.totp_enabled_at = clock.now()
    row.totp_last_step = None
    row.touch()
    session.add(row)
    audit.record(
        session,
        "user.mfa_enable",
        target_type="user",
        target_id=user.id,
        target=user.email,
        after={"mfa": "totp"},
    )
    outbox.emit(session, "user.mfa_enabled", {"id": user.id, "email": user.email})
    uri = pyotp.TOTP(secret).provisioning_uri(name=user.email, issuer_name=issuer)
    return Enabled(user, secret, uri)


def disable(session: Session, email: str) -> User:
    user = users.get(session, email)
    row = passwords.credential(session, user)
    if row is None or row.totp_secret_enc is None:
        return user
    row.totp_secret_enc = None
    row.totp_enabled_at = None
    row.totp_last_step = None
    row.touch()
    session.add(row)
    audit.record(
        session,
        "user.mfa_disable",
        target_type="user",
        target_id=user.id,
        target=user.email,
        before={"mfa": "totp"},
        after={"mfa": None},
    )
    outbox.emit(session, "user.mfa_disabled", {"id": user.id, "email": user.email})
    return user


def enabled(row: UserCredential | None) -> bool:
    return row is not None and row.totp_secret_enc is not None


def matching_step(secret: str, code: str, at: float | None = None) -> int | None:
    """The time step ``code`` belongs to (within the window), or None."""
    code = (code or "").strip().replace(" ", "")
    if len(code) != 6 or not code.isdigit():
        return None
    totp = pyotp.TOTP(secret)
    now = time.time() if at is None else at
    step = int(now // STEP)
    found = None
    for offset in range(-WINDOW, WINDOW + 1):
        candidate = step + offset
        if pyotp.utils.strings_equal(totp.at(candidate * STEP), code):
            found = candidate
    return found


def use_code(session: Session, row: UserCredential, code: str) -> bool:
    """Whether ``code`` is a fresh code of ``row``'s secret; a success consumes its step."""
    if row.totp_secret_enc is None:
        return False
    step = matching_step(crypto.decrypt(row.totp_secret_enc), code, clock.now().timestamp())
    if step is None:
        return False
    result = session.exec(
        update(UserCredential)
        .where(
            col(UserCredential.id) == row.id,
            or_(
                col(UserCredential.totp_last_step).is_(None),
                col(UserCredential.totp_last_step) < step,
            ),
        )
        .values(totp_last_step=step)
    )
    return int(result.rowcount or 0) == 1


def code_now(secret: str) -> str:
    """The current code of ``secret`` (for tests and the first check after enabling)."""
    return pyotp.TOTP(secret).at(clock.now())
