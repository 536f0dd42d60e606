"""People's passwords: argon2id hashes in ``user_credential``, never the password.

The cost is tuned so that one check takes about 50 ms on a 2-core host: time cost 2,
32 MiB of memory, one lane (``sso.argon2_time_cost``, ``sso.argon2_memory_kib`` and
``sso.argon2_parallelism`` in the profile change it). A hash made with other parameters
still verifies; the next successful sign-in stores a new hash with the current ones.

``verify_user`` spends the same work whether the user exists or not: an unknown email, a
user without a password or a disabled user is checked against a dummy hash, so neither
the answer nor its time says which emails have an account.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from sqlmodel import select

from mno import clock, settings
from mno.access import users
from mno.errors import BadInput
from mno.sso import sessions
from mno.store import audit, outbox
from mno.store.models.access import User
from mno.store.models.signin import UserCredential

if TYPE_CHECKING:
    from sqlmodel import Session

TIME_COST = 2
MEMORY_KIB = 32 * 1024
PARALLELISM = 1
MIN_LENGTH = 10
MAX_LENGTH = 1024


@dataclass(frozen=True)
class Params:
    time_cost: int
    memory_kib: int
    parallelism: int


def params() -> Params:
    """The argon2id parameters in force (profile values over the tuned defaults)."""
    return Params(
        int(settings.profile_value("sso.argon2_time_cost", TIME_COST)),
        int(settings.profile_value("sso.argon2_memory_kib", MEMORY_KIB)),
        int(settings.profile_value("sso.argon2_parallelism", PARALLELISM)),
    )


@lru_cache(maxsize=8)
def _hasher(p: Params) -> PasswordHasher:
    return PasswordHasher(
        time_cost=p.time_cost, memory_cost=p.memory_kib, parallelism=p.parallelism
    )


def hasher() -> PasswordHasher:
    return _hasher(params())


@lru_cache(maxsize=8)
def _dummy(p: Params) -> str:
    return _hasher(p).hash("not a password: the hash unknown users are checked against")


def hash_password(password: str) -> str:
    return hasher().hash(check_password(password))


def check_password(password: str) -> str:
    """The password if it is acceptable, else BadInput (nothing is written)."""
    if not isinstance(password, str) or len(password) < MIN_LENGTH:
        raise BadInput(f"a password needs at least {MIN_LENGTH} characters")
    if len(password) > MAX_LENGTH:
        raise BadInput(f"a password has at most {MAX_LENGTH} characters")
    if password.strip() != password or "\x00" in password:
        raise BadInput("a password may not start or end with spaces nor hold NUL characters")
    return password


def verify_hash(stored: str | None, password: str) -> bool:
    """Whether ``password`` matches ``stored``; a missing hash costs a dummy check."""
    ph = hasher()
    try:
        return ph.verify(stored or _dummy(params()), password[:MAX_LENGTH]) and bool(stored)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def credential(session: Session, user: User) -> UserCredential | None:
    return session.exec(select(UserCredential).where(UserCredential.user_id == user.id)).first()


def credential_for_update(session: Session, user: User) -> UserCredential:
    """The user's credential row, created empty when missing."""
    row = credential(session, user)
    if row is None:
        row = UserCredential(user_id=user.id)
        session.add(row)
        session.flush()
    return row


def set_password(session: Session, email: str, password: str, *, actor: str | None = None) -> User:
    """Set (or change) a user's password; every browser session of theirs ends."""
    user = users.get(session, email)
    digest = hash_password(password)
    row = credential_for_update(session, user)
    changed = row.password_hash is not None
    row.password_hash = digest
    row.password_set_at = clock.now()
    row.failures = 0
    row.failures_since = None
    row.locked_until = None
    row.touch()
    session.add(row)
    audit.record(
        session,
        "user.password_change" if changed else "user.password_set",
        target_type="user",
        target_id=user.id,
        target=user.email,
        after={"password": "set"},
        actor=actor,
    )
    outbox.emit(session, "user.password_set", {"id": user.id, "email": user.email})
    sessions.end_all(session, user)
    return user


def has_password(session: Session, user: User) -> bool:
    row = credential(session, user)
    return row is not None and row.password_hash is not None


def factors(session: Session, user: User) -> dict[str, bool]:
    """Whether ``user`` has a password and a second factor (TOTP), and nothing else."""
    row = credential(session, user)
    return {
        "password": row is not None and row.password_hash is not None,
        "mfa": row is not None and row.totp_secret_enc is not None,
    }


@dataclass(frozen=True)
class Checked:
    """What a password check found: ``ok`` only for an active user's right password.

    ``stored`` is the hash the password was checked against and ``rehash`` a new hash
    under the current parameters when ``stored`` was made with others (not yet written)."""

    ok: bool
    user: User | None
    credential: UserCredential | None
    stored: str | None = None
    rehash: str | None = None

    def still_current(self, session: Session) -> bool:
        """Whether the store still holds what this check saw (same user, same hash)."""
        user = users.find(session, self.user.email) if self.user is not None else None
        if (user is None) != (self.user is None):
            return False
        if user is None or self.user is None:
            return True
        row = credential(session, user)
        return user.id == self.user.id and (row.password_hash if row else None) == self.stored


def check(session: Session, email: str, password: str) -> Checked:
    """Check ``password`` for ``email`` with the same work whether the user exists or not,
    writing nothing: the argon2 work can run in a read-only transaction."""
    user = users.find(session, email) if email and len(email) <= 254 else None
    row = credential(session, user) if user is not None else None
    stored = row.password_hash if row is not None else None
    ok = verify_hash(stored, password)
    if not ok or user is None or row is None or stored is None or user.status != "active":
        return Checked(False, user, row, stored)
    rehash = hasher().hash(password) if hasher().check_needs_rehash(stored) else None
    return Checked(True, user, row, stored, rehash)


def store_rehash(session: Session, checked: Checked) -> None:
    """Write the new hash of a right password checked under old parameters."""
    if not checked.ok or checked.rehash is None or checked.user is None:
        return
    user = checked.user
    row = credential(session, user)
    if row is None or row.password_hash != checked.stored:
        return
    row.password_hash = checked.rehash
    row.touch()
    session.add(row)
    audit.record(
        session,
        "user.password_rehash",
        target_type="user",
        target_id=user.id,
        target=user.email,
        after={"argon2": _describe(params())},
        actor=user.email,
    )


def verify_user(session: Session, email: str, password: str) -> Checked:
    """``check`` then ``store_rehash``, in the caller's transaction."""
    checked = check(session, email, password)
    store_rehash(session, checked)
    return checked


def _describe(p: Params) -> str:
    return f"t={p.time_cost},m={p.memory_kib},p={p.parallelism}"
