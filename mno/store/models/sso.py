"""Single sign-on tables: the hub's browser sessions.

A session is what the sign-in page sets as a cookie; the store keeps only the SHA-256
digest of its random value. The OpenID Connect provider reads it to know who is signed
in when an app sends the browser to ``/authorize``.
"""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlmodel import Field

import mno.store.models.access  # noqa: F401  (tables its foreign keys point at)
from mno.store.models.base import Base
from mno.store.types import UTCDateTime


class SsoSession(Base, table=True):
    __tablename__ = "sso_session"

    user_id: uuid.UUID = Field(foreign_key="access_user.id", index=True)
    token_hash: str = Field(max_length=64, unique=True, index=True)
    expires_at: datetime = Field(sa_type=UTCDateTime)
    mfa_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    ended_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    user_agent: str = Field(default="", max_length=200)
