"""OpenID Connect provider tables: signing keys, clients (apps), consents, codes, tokens.

Signing keys keep their private part sealed with the master key (``mno.crypto``); the
public JWK is kept in clear for ``/jwks``. A client's secret, an authorization code and
a refresh token are stored as SHA-256 digests only. Access tokens are signed JWTs; their
``jti`` has a row so that revocation and introspection can tell a live token.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlmodel import Field

import mno.store.models.access  # noqa: F401  (tables its foreign keys point at)
import mno.store.models.tenancy  # noqa: F401
from mno.store.models.base import Base
from mno.store.types import UTCDateTime


class OidcKey(Base, table=True):
    __tablename__ = "oidc_key"

    kid: str = Field(max_length=64, unique=True, index=True)
    alg: str = Field(max_length=8)  # RS256 | ES256
    status: str = Field(default="active", max_length=10)  # active | retired
    private_sealed: str = Field(sa_type=sa.Text)
    public_jwk: dict[str, Any] = Field(default_factory=dict, sa_type=sa.JSON)
    retired_at: datetime | None = Field(default=None, sa_type=UTCDateTime)
    # a retired key stays in /jwks until then (its last tokens have expired)
    publish_until: datetime | None = Field(default=None, sa_type=UTCDateTime)


class OidcClient(Base, table=True):
    __tablename__ = "oidc_client"

    app_id: uuid.UUID = Field(foreign_key="app.id", unique=True, index=True)
    client_id: str = Field(max_length=80, unique=True, index=True)
    secret_hash: str | None = Field(default=None, max_length=64)
    public: bool = Field(default=False)
    redirect_uris: list[str] = Field(default_factory=list, sa_type=sa.JSON)
    logout_uris: list[str] = Field(default_factory=list, sa_type=sa.JSON)
    id_token_alg: str = Field(default="RS256", max_length=8)
    enabled: bool = Field(default=True)
    # private_key_jwt (RFC 7523): the client's public keys, registered or fetched
    jwks: dict[str, Any] | None = Field(default=None, sa_type=sa.JSON)
    jwks_uri: str | None = Field(default=None, max_length=2000)


class OidcConsent(Base, table=True):
    __tablename__ = "oidc_consent"
    __table_args__ = (sa.UniqueConstraint("user_id", "client_id", name="uq_oidc_consent"),)

    user_id: uuid.UUID = Field(foreign_key="access_user.id", index=True)
    client_id: uuid.UUID = Field(foreign_key="oidc_client.id", index=True)
    scope: str = Field(default="", max_length=500)
    # the tenant the user picked for this app (None: not chosen yet). No foreign key: a
    # remembered preference must not keep a tenant from being deleted; a pick whose
    # tenant is gone (or no longer allowed) is simply asked again.
    tenant_id: uuid.UUID | None = Field(default=None)


class OidcCode(Base, table=True):
    __tablename__ = "oidc_code"

    code_hash: str = Field(max_length=64, unique=True, index=True)
    client_id: uuid.UUID = Field(foreign_key="oidc_client.id", index=True)
    user_id: uuid.UUID = Field(foreign_key="access_user.id", index=True)
    tenant_id: uuid.UUID = Field(foreign_key="tenant.id")
    session_id: uuid.UUID | None = Field(default=None)
    redirect_uri: str = Field(max_length=2000)
    scope: str = Field(default="", max_length=500)
    nonce: str | None = Field(default=None, max_length=500)
    code_challenge: str | None = Field(default=None, max_length=128)
    auth_time: datetime = Field(sa_type=UTCDateTime)
    expires_at: datetime = Field(sa_type=UTCDateTime)
    used_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


class OidcToken(Base, table=True):
    """An issued access token (``jti``) or refresh token (digest) of one grant family."""

    __tablename__ = "oidc_token"

    kind: str = Field(max_length=8)  # access | refresh
    lookup: str = Field(max_length=64, unique=True, index=True)
    family_id: uuid.UUID = Field(index=True)
    code_id: uuid.UUID | None = Field(default=None, index=True)
    client_id: uuid.UUID = Field(foreign_key="oidc_client.id", index=True)
    user_id: uuid.UUID = Field(foreign_key="access_user.id", index=True)
    tenant_id: uuid.UUID = Field(foreign_key="tenant.id")
    session_id: uuid.UUID | None = Field(default=None)
    scope: str = Field(default="", max_length=500)
    auth_time: datetime = Field(sa_type=UTCDateTime)
    expires_at: datetime = Field(sa_type=UTCDateTime, index=True)
    used_at: datetime | None = Field(default=None, sa_type=UTCDateTime)  # a rotated refresh
    revoked_at: datetime | None = Field(default=None, sa_type=UTCDateTime)


class OidcAssertion(Base, table=True):
    """A client assertion (private_key_jwt) already used: its ``jti`` is refused again
    until the assertion has expired."""

    __tablename__ = "oidc_assertion"
    __table_args__ = (sa.UniqueConstraint("client_id", "jti", name="uq_oidc_assertion"),)

    client_id: uuid.UUID = Field(foreign_key="oidc_client.id", index=True)
    jti: str = Field(max_length=200)
    expires_at: datetime = Field(sa_type=UTCDateTime, index=True)
