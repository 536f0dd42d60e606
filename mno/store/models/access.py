"""Access tables: users, memberships, teams, invites, app API keys and user tokens.

Secrets (invite tokens, app key secrets, user tokens) are stored only as SHA-256 hashes
of high-entropy random values. Instances are referenced by id without a foreign key, so
this branch does not depend on the Nex tables.
"""

from __future__ import annotations

import uuid
from datetime import datetime

import sqlalchemy as sa
from sqlmodel import Field

import mno.store.models.tenancy  # noqa: F401  (tables its foreign keys point at)
from mno.store.models.base import Base
from mno.store.types import UTCDateTime


class User(Base, table=True):
    __tablename__ = "access_user"

    email: str = Field(max_length=254, unique=True, index=True)
    name: str = Field(default="", max_length=200)
    status: str = Field(default="active", max_length=16, index=True)


class Membership(Base, table=True):
    __tablename__ = "access_membership"
    __table_args__ = (sa.UniqueConstraint("user_id", "tenant_id", name="uq_access_membership"),)

    user_id: uuid.UUID = Field(foreign_key="access_user.id", index=True)
    tenant_id: uuid.UUID = Field(foreign_key="tenant.id", index=True)
    role: str = Field(default="member", max_length=16)


class Role(Base, table=True):
    """A custom role: a name and the actions it allows, for every tenant or for one."""

    __tablename__ = "access_role"
    __table_args__ = (sa.UniqueConstraint("tenant_id", "name", name="uq_access_role"),)

    name: str = Field(max_length=16, index=True)
    tenant_id: uuid.UUID | None = Field(default=None, foreign_key="tenant.id", index=True)
    permissions: list[str] = Field(default_factory=list, sa_type=sa.JSON)


class Team(Base, table=True):
    __tablename__ = "access_team"
    __table_args__ = (sa.UniqueConstraint("tenant_id", "name", name="uq_access_team"),)

    tenant_id: uuid.UUID = Field(foreign_key="tenant.id", index=True)
    name: str = Field(max_length=100)


class TeamMember(Base, table=True):
    __tablename__ = "access_team_member"
    __table_args__ = (sa.UniqueConstraint("team_id", "user_id", name="uq_access_team_member"),)

    team_id: uuid.UUID = Field(foreign_key="access_team.id", index=True)
    user_id: uuid.UUID = Field(foreign_key="access_user.id", index=True)


class TeamInstance(Base, table=True):
    __tablename__ = "access_team_instance"
    __table_args__ = (
        sa.UniqueConstraint("team_id", "instance_id", name="uq_access_team_instance"),
    )

    team_id: uuid.UUID = Field(foreign_key="access_team.id", index=True)
    instance_id: uuid.UUID = Field(index=True)


class Invite(Base, table=True):
    __tablename__ = "access_invite"

    tenant_id: uuid.UUID = Field(foreign_key="tenant.id", index=True)
    email: str = Field(max_length=254, index=True)
    role: str = Field(default="member", max_length=16)
    team_id: uuid.UUID | None = Field(default=None, foreign_key="access_team.id")
    status: str = Field(default="staged", max_length=16, index=True)
    token_hash: str | None = Field(default=None, max_length=64, unique=True, index=True)
    expires_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    sent_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    accepted_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    invited_by: str = Field(default="", max_length=254)


class AppKey(Base, table=True):
    __tablename__ = "access_app_key"

    app_id: uuid.UUID = Field(foreign_key="app.id", index=True)
    key_id: str = Field(max_length=40, unique=True, index=True)
    secret_hash: str = Field(max_length=64)
    expires_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


class UserToken(Base, table=True):
    __tablename__ = "access_user_token"

    user_id: uuid.UUID = Field(foreign_key="access_user.id", index=True)
    name: str = Field(default="", max_length=100)
    token_hash: str = Field(max_length=64, unique=True, index=True)
    expires_at: datetime = Field(sa_type=UTCDateTime)
    revoked_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    # the API scopes the token carries (``mno.access.scopes``); None: every scope
    scopes: list[str] | None = Field(default=None, sa_type=sa.JSON)


class RateBucket(Base, table=True):
    """A token bucket per app key, shared by every API process that uses this store.

    Processes take tokens in small chunks (see ``mno.access.ratelimit``), so the row is
    touched once per chunk, not once per request."""

    __tablename__ = "access_rate_bucket"

    key_id: str = Field(max_length=40, unique=True)
    tokens: float = Field(default=0.0)
    refilled_at: datetime = Field(sa_type=UTCDateTime)
