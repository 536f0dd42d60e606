"""Sign-in tables: how a person proves who they are at the hub.

``user_credential`` keeps one row per user who may sign in with a password: the argon2id
hash (never the password), the TOTP secret sealed under the master key, the last TOTP
time step used (a code works once) and the failure counter behind the lockout. It is a
table of its own so that the ``access_user`` rows other modules read stay unchanged.

``sso_mfa_challenge`` is the half-finished sign-in between the password and the second
factor: a random value in the browser, only its SHA-256 digest here, short-lived and
single use.
"""

from __future__ import annotations

import uuid
from datetime import datetime

import sqlalchemy as sa
from sqlmodel import Field

import mno.store.models.access  # noqa: F401  (tables its foreign keys point at)
from mno.store.models.base import Base
from mno.store.types import UTCDateTime


class UserCredential(Base, table=True):
    __tablename__ = "user_credential"

    user_id: uuid.UUID = Field(foreign_key="access_user.id", unique=True, index=True)
    password_hash: str | None = Field(default=None, max_length=300)
    password_set_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    totp_secret_enc: str | None = Field(default=None)
    totp_enabled_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    totp_last_step: int | None = Field(default=None, sa_type=sa.BigInteger)
    failures: int = Field(default=0)
    failures_since: datetime | None = Field(default=None, sa_type=UTCDateTime)
    locked_until: datetime | None = Field(default=None, sa_type=UTCDateTime)


class MfaChallenge(Base, table=True):
    __tablename__ = "sso_mfa_challenge"

    user_id: uuid.UUID = Field(foreign_key="access_user.id", index=True)
    token_hash: str = Field(max_length=64, unique=True, index=True)
    expires_at: datetime = Field(sa_type=UTCDateTime)
    used_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    attempts: int = Field(default=0)
    next_url: str = Field(default="/launcher", max_length=2048)
