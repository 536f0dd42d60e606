"""Tokens of the OpenID Connect provider: the code and refresh grants, ID and access
tokens (JWTs signed with joserfc), userinfo, revocation (RFC 7009), introspection
(RFC 7662) and RP-initiated logout.

A refresh token is opaque and single use: each refresh returns a new one of the same
family. Using a rotated refresh token again means it leaked, so the whole family (every
access and refresh token of that sign-in) is revoked. A code used twice revokes the
tokens issued from it. Failures that revoke are *returned* (``OAuthError``) so that the
caller's transaction commits the revocation before the error is answered.
"""

from __future__ import annotations

import base64
import hashlib
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import select as sa_select
from sqlmodel import col, select, update

from mno import clock
from mno.access import revocation, secrets
from mno.sso import keys, oidc, sessions
from mno.store import audit, db, outbox
from mno.store.models.access import User
from mno.store.models.oidc import OidcClient, OidcCode, OidcToken
from mno.store.models.sso import SsoSession
from mno.store.models.tenancy import App, Tenant

if TYPE_CHECKING:
    from sqlmodel import Session

REFRESH_PREFIX = "mnort"


class OAuthError(Exception):
    """An OAuth error answer (``{"error": ..., "error_description": ...}``)."""

    def __init__(self, error: str, description: str, status: int = 400) -> None:
        super().__init__(description)
        self.error = error
        self.description = description
        self.status = status

    def as_dict(self) -> dict[str, str]:
        return {"error": self.error, "error_description": self.description}


def _grant_error(description: str) -> OAuthError:
    return OAuthError("invalid_grant", description)


@dataclass
class Grant:
    """What a set of tokens is issued for."""

    client: OidcClient
    user: User
    tenant: Tenant
    scope: list[str]
    auth_time: datetime
    family_id: uuid.UUID
    code_id: uuid.UUID | None
    session_id: uuid.UUID | None
    nonce: str | None = None
    amr: list[str] | None = None


def _sign(session: Session, claims: dict[str, Any], alg: str = "RS256") -> str:
    from joserfc import jwt

    signer = keys.signer(session, alg)
    return jwt.encode({"alg": alg, "kid": signer.kid, "typ": "JWT"}, claims, signer.key)


def at_hash(access_token: str) -> str:
    """OpenID Connect Core 3.1.3.6: the left half of the access token's SHA-256 digest
    (the hash of RS256 and ES256, the ID token algorithms), base64url without padding."""
    digest = hashlib.sha256(access_token.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest[: len(digest) // 2]).rstrip(b"=").decode()


def _profile_claims(session: Session, g: Grant, access: oidc.Access | None) -> dict[str, Any]:
    claims: dict[str, Any] = {}
    if "email" in g.scope:
        claims["email"] = g.user.email
        claims["email_verified"] = True
    if "profile" in g.scope:
        claims["name"] = g.user.name or g.user.email
    if access is None:
        app = session.get(App, g.client.app_id)
        access = oidc.access(session, g.user, app) if app is not None else oidc.Access([])
    role = next((r for t, r in access.tenants if t.id == g.tenant.id), None)
    claims["tenant"] = g.tenant.key
    claims["tenants"] = access.keys
    claims["roles"] = [role] if role else []
    return claims


def issue(
    session: Session, g: Grant, iss: str, *, access: oidc.Access | None = None
) -> dict[str, Any]:
    """Sign an access token and an ID token, make a refresh token, record them; the
    token endpoint's answer."""
    now = clock.now()
    access_ttl = keys.lifetime("access_token_ttl")
    jti = uuid.uuid4().hex
    common = {"iss": iss, "sub": str(g.user.id), "iat": oidc.epoch(now)}
    profile = _profile_claims(session, g, access)
    access_claims = {
        **common,
        "aud": g.client.client_id,
        "client_id": g.client.client_id,
        "exp": oidc.epoch(now + access_ttl),
        "jti": jti,
        "scope": " ".join(g.scope),
        "tenant": g.tenant.key,
    }
    id_claims = {
        **common,
        "aud": g.client.client_id,
        "azp": g.client.client_id,
        "exp": oidc.epoch(now + keys.lifetime("id_token_ttl")),
        "auth_time": oidc.epoch(g.auth_time),
        **profile,
    }
    if g.nonce is not None:
        id_claims["nonce"] = g.nonce
    if g.session_id is not None:
        id_claims["sid"] = str(g.session_id)
    if g.amr:
        id_claims["amr"] = g.amr
    refresh = secrets.new_token(REFRESH_PREFIX)
    base: Any = {
        "family_id": g.family_id,
        "code_id": g.code_id,
        "client_id": g.client.id,
        "user_id": g.user.id,
        "tenant_id": g.tenant.id,
        "session_id": g.session_id,
        "scope": " ".join(g.scope),
        "auth_time": g.auth_time,
    }
    session.add(OidcToken(kind="access", lookup=jti, expires_at=now + access_ttl, **base))
    session.add(
        OidcToken(
            kind="refresh",
            lookup=secrets.digest(refresh),
            expires_at=now + keys.lifetime("refresh_token_ttl"),
            **base,
        )
    )
    access_token = _sign(session, access_claims)
    id_claims["at_hash"] = at_hash(access_token)
    return {
        "access_token": access_token,
        "token_type": "Bearer",
        "expires_in": int(access_ttl.total_seconds()),
        "refresh_token": refresh,
        "id_token": _sign(session, id_claims, g.client.id_token_alg),
        "scope": " ".join(g.scope),
    }


def _record_issued(session: Session, g: Grant, grant_type: str) -> None:
    payload = {
        "user": g.user.email,
        "client_id": g.client.client_id,
        "tenant": g.tenant.key,
        "grant_type": grant_type,
        "family": str(g.family_id),
    }
    audit.record(
        session,
        "sso.token_issued",
        target_type="user",
        target_id=g.user.id,
        target=g.user.email,
        after=payload,
        tenant_id=g.tenant.id,
        actor=g.client.client_id,
    )
    outbox.emit(session, "sso.token_issued", payload, tenant_id=g.tenant.id)


def _revoke_where(session: Session, *conditions: Any) -> int:
    result = session.exec(
        update(OidcToken)
        .where(col(OidcToken.revoked_at).is_(None), *conditions)
        .values(revoked_at=clock.now(), updated_at=clock.now())
    )
    count = int(result.rowcount or 0)
    if count:
        revocation.bump(session)  # the IDM's answer cache drops what it knew
    return count


def _still_allowed(session: Session, client: OidcClient, user: User | None, tenant_id: Any) -> Any:
    """(user, tenant, access) when the user may still use the app through the tenant."""
    app = session.get(App, client.app_id)
    if user is None or user.status != "active" or app is None:
        return None
    granted = oidc.access(session, user, app)
    tenant = next((t for t, _ in granted.tenants if t.id == tenant_id), None)
    return (user, tenant, granted) if tenant is not None else None


def exchange_code(
    session: Session,
    client: OidcClient,
    code: str,
    redirect_uri: str | None,
    verifier: str | None,
    iss: str,
) -> dict[str, Any] | OAuthError:
    """The authorization_code grant."""
    # one query: the code, its user and the hub session it was issued in
    found = session.exec(
        select(OidcCode, User, SsoSession)
        .join(User, col(User.id) == OidcCode.user_id)
        .outerjoin(SsoSession, col(SsoSession.id) == OidcCode.session_id)
        .where(OidcCode.code_hash == secrets.digest(code or ""))
    ).first()
    if found is None or found[0].client_id != client.id:
        return _grant_error("unknown authorization code")
    row, code_user, hub = found
    now = clock.now()
    if row.used_at is not None:
        count = _revoke_where(session, col(OidcToken.code_id) == row.id)
        payload = {"client_id": client.client_id, "code": str(row.id), "revoked": count}
        audit.record(
            session,
            "sso.code_reuse_detected",
            target_type="oidc_code",
            target_id=row.id,
            target=client.client_id,
            after=payload,
            tenant_id=row.tenant_id,
        )
        outbox.emit(session, "sso.code_reuse_detected", payload, tenant_id=row.tenant_id)
        return _grant_error("the authorization code was already used")
    row.used_at = now
    session.add(row)
    if row.expires_at <= now:
        return _grant_error("the authorization code has expired")
    if redirect_uri != row.redirect_uri:
        return _grant_error("redirect_uri does not match the authorization request")
    if not oidc.pkce_ok(row.code_challenge, verifier):
        return _grant_error("code_verifier does not match the code_challenge")
    if client.public and row.code_challenge is None:
        return _grant_error("a public client must use PKCE")
    allowed = _still_allowed(session, client, code_user, row.tenant_id)
    if allowed is None:
        return _grant_error("the user may no longer use this app")
    user, tenant, granted = allowed
    g = Grant(
        client, user, tenant, row.scope.split(), row.auth_time, uuid.uuid4(), row.id,
        row.session_id, row.nonce, ["pwd", "otp"] if hub and hub.mfa_at else ["pwd"],
    )  # fmt: skip
    answer = issue(session, g, iss, access=granted)
    _record_issued(session, g, "authorization_code")
    return answer


def refresh(
    session: Session, client: OidcClient, token: str, iss: str
) -> dict[str, Any] | OAuthError:
    """The refresh_token grant, with rotation and reuse detection."""
    row = session.exec(
        select(OidcToken).where(
            OidcToken.lookup == secrets.digest(token or ""), OidcToken.kind == "refresh"
        )
    ).first()
    if row is None or row.client_id != client.id:
        return _grant_error("unknown refresh token")
    now = clock.now()
    if row.revoked_at is not None:
        return _grant_error("the refresh token was revoked")
    user = session.get(User, row.user_id)
    if row.used_at is not None:
        count = _revoke_where(session, col(OidcToken.family_id) == row.family_id)
        payload = {
            "user": user.email if user else str(row.user_id),
            "client_id": client.client_id,
            "family": str(row.family_id),
            "revoked": count,
        }
        audit.record(
            session,
            "sso.refresh_reuse_detected",
            target_type="user",
            target_id=row.user_id,
            target=str(payload["user"]),
            after=payload,
            tenant_id=row.tenant_id,
        )
        outbox.emit(session, "sso.refresh_reuse_detected", payload, tenant_id=row.tenant_id)
        return _grant_error("the refresh token was already used; the grant is revoked")
    if row.expires_at <= now:
        return _grant_error("the refresh token has expired")
    allowed = _still_allowed(session, client, user, row.tenant_id)
    if allowed is None:
        _revoke_where(session, col(OidcToken.family_id) == row.family_id)
        return _grant_error("the user may no longer use this app")
    row.used_at = now
    session.add(row)
    user, tenant, granted = allowed
    g = Grant(
        client, user, tenant, row.scope.split(), row.auth_time, row.family_id, row.code_id,
        row.session_id,
    )  # fmt: skip
    answer = issue(session, g, iss, access=granted)
    _record_issued(session, g, "refresh_token")
    return answer


# -- reading tokens ---------------------------------------------------------------------


def decode(session: Session, token: str, iss: str | None, *, check_exp: bool = True) -> Any:
    """The claims of a JWT this hub signed (verified with the published keys), or None."""
    from joserfc import jwt
    from joserfc.errors import JoseError

    if not token or len(token) > 8192 or token.count(".") != 2:
        return None
    keyset, _ = keys.published(session)
    try:
        decoded = jwt.decode(token, keyset, algorithms=list(keys.ALGS))
        claims = decoded.claims
        options: dict[str, Any] = {}
        if iss is not None:
            options["iss"] = {"essential": True, "value": iss}
        if check_exp:
            options["exp"] = {"essential": True}
        registry = jwt.JWTClaimsRegistry(now=oidc.epoch(clock.now()), leeway=0, **options)
        registry.validate(claims)
    except (JoseError, ValueError):
        return None
    return claims


@dataclass(frozen=True)
class Bearer:
    """A live access token: who it speaks for, to which client, for which tenant."""

    row: OidcToken
    user: User
    tenant: Tenant
    client: OidcClient
    claims: dict[str, Any]


def bearer(session: Session, token: str, iss: str | None) -> Bearer | None:
    """The live access token behind ``token`` (signed, unexpired, not revoked, its user
    active), or None."""
    claims = decode(session, token, iss)
    if claims is None or not isinstance(claims.get("jti"), str):
        return None
    # one query: the token row, its user, tenant, client and the client's app (which
    # userinfo's claims need next, then found in the identity map)
    found = session.execute(
        sa_select(OidcToken, User, Tenant, OidcClient, App).where(
            col(OidcToken.lookup) == claims["jti"],
            col(OidcToken.kind) == "access",
            col(User.id) == OidcToken.user_id,
            col(Tenant.id) == OidcToken.tenant_id,
            col(OidcClient.id) == OidcToken.client_id,
            col(App.id) == OidcClient.app_id,
        )
    ).first()
    if found is None:
        return None
    row, user, tenant, client, app = found
    db.pin(session, app)
    if row.revoked_at is not None or row.expires_at <= clock.now() or user.status != "active":
        return None
    return Bearer(row, user, tenant, client, dict(claims))


def userinfo(session: Session, token: str, iss: str) -> dict[str, Any] | None:
    found = bearer(session, token, iss)
    if found is None:
        return None
    g = Grant(
        found.client, found.user, found.tenant, found.row.scope.split(), found.row.auth_time,
        found.row.family_id, None, None,
    )  # fmt: skip
    return {"sub": str(found.user.id), **_profile_claims(session, g, None)}


def _find_token(session: Session, token: str, iss: str) -> OidcToken | None:
    if token.startswith(REFRESH_PREFIX + "_"):
        return session.exec(
            select(OidcToken).where(
                OidcToken.lookup == secrets.digest(token), OidcToken.kind == "refresh"
            )
        ).first()
    claims = decode(session, token, iss, check_exp=False)
    if claims is None or not isinstance(claims.get("jti"), str):
        return None
    return session.exec(
        select(OidcToken).where(OidcToken.lookup == claims["jti"], OidcToken.kind == "access")
    ).first()


def revoke(session: Session, client: OidcClient, token: str, iss: str) -> bool:
    """RFC 7009: revoke a token of this client (a refresh token takes its whole family
    with it). Unknown tokens and other clients' tokens are ignored; True when revoked."""
    row = _find_token(session, token or "", iss)
    if row is None or row.client_id != client.id or row.revoked_at is not None:
        return False
    if row.kind == "refresh":
        count = _revoke_where(session, col(OidcToken.family_id) == row.family_id)
    else:
        count = _revoke_where(session, col(OidcToken.id) == row.id)
    user = session.get(User, row.user_id)
    payload: dict[str, Any] = {
        "user": user.email if user else str(row.user_id),
        "client_id": client.client_id,
        "kind": row.kind,
        "family": str(row.family_id),
        "revoked": count,
    }
    audit.record(
        session,
        "sso.token_revoked",
        target_type="user",
        target_id=row.user_id,
        target=str(payload["user"]),
        after=payload,
        tenant_id=row.tenant_id,
        actor=client.client_id,
    )
    outbox.emit(session, "sso.token_revoked", payload, tenant_id=row.tenant_id)
    return True


def introspect(session: Session, client: OidcClient, token: str, iss: str) -> dict[str, Any]:
    """RFC 7662: whether a token of this client is active, and what it is for."""
    row = _find_token(session, token or "", iss)
    now = clock.now()
    if (
        row is None
        or row.client_id != client.id
        or row.revoked_at is not None
        or row.expires_at <= now
        or (row.kind == "refresh" and row.used_at is not None)
    ):
        return {"active": False}
    user = session.get(User, row.user_id)
    tenant = session.get(Tenant, row.tenant_id)
    if user is None or user.status != "active" or tenant is None:
        return {"active": False}
    return {
        "active": True,
        "scope": row.scope,
        "client_id": client.client_id,
        "username": user.email,
        "token_type": "Bearer" if row.kind == "access" else "refresh_token",
        "exp": oidc.epoch(row.expires_at),
        "iat": oidc.epoch(row.created_at),
        "sub": str(user.id),
        "aud": client.client_id,
        "iss": iss,
        "tenant": tenant.key,
    }


@dataclass(frozen=True)
class Logout:
    ended: bool
    location: str | None


def end_session(
    session: Session,
    *,
    cookie: str | None,
    id_token_hint: str | None,
    post_logout_redirect_uri: str | None,
    state: str | None,
    iss: str,
) -> Logout:
    """RP-initiated logout: end the hub session (the browser's, or the one the ID token
    names) and say where to send the browser (a registered post-logout URI, or None)."""
    from mno.errors import BadInput

    claims = decode(session, id_token_hint, iss, check_exp=False) if id_token_hint else None
    if id_token_hint and claims is None:
        raise BadInput("id_token_hint is not an ID token of this hub")
    client = None
    if claims is not None:
        from mno.sso import clients

        aud = claims.get("aud")
        client = clients.find(session, aud[0] if isinstance(aud, list) and aud else str(aud))
    location = None
    if post_logout_redirect_uri:
        if client is None:
            raise BadInput("post_logout_redirect_uri needs a valid id_token_hint")
        if post_logout_redirect_uri not in client.logout_uris:
            raise BadInput("post_logout_redirect_uri is not registered for this client")
        location = post_logout_redirect_uri
        if state:
            location = oidc.add_query(location, {"state": state})
    hub = sessions.find(session, cookie)
    if hub is not None and claims is not None and str(hub.user_id) != claims.get("sub"):
        hub = None  # the browser belongs to someone else: do not sign them out
    ended = False
    if hub is not None:
        ended = sessions.end(session, cookie)
    elif claims is not None and claims.get("sid"):
        try:
            row = session.get(SsoSession, uuid.UUID(str(claims["sid"])))
        except ValueError:
            row = None
        if row is not None and row.ended_at is None and str(row.user_id) == claims.get("sub"):
            row.ended_at = clock.now()
            session.add(row)
            audit.record(
                session,
                "sso.session_ended",
                target_type="user",
                target_id=row.user_id,
                target=str(row.user_id),
                after={"session": str(row.id), "by": "end_session"},
            )
            outbox.emit(
                session, "sso.signed_out", {"user": str(row.user_id), "session": str(row.id)}
            )
            ended = True
    return Logout(ended, location)


def bearer_user(session: Session, token: str) -> User | None:
    """The user an OIDC access token of this hub speaks for (the IDM's second kind of
    user token), or None. The issuer is not checked here: the signature is the hub's."""
    found = bearer(session, token, None)
    return found.user if found is not None else None


def prune_expired(session: Session, limit: int = 1000) -> int:
    """Delete up to ``limit`` expired token rows, codes past the refresh lifetime (a
    code is kept that long so a late reuse still revokes what it issued) and expired
    client assertions' ``jti``."""
    from sqlmodel import delete

    now = clock.now()
    tokens = list(
        session.exec(select(OidcToken.id).where(col(OidcToken.expires_at) <= now).limit(limit))
    )
    if tokens:
        session.exec(delete(OidcToken).where(col(OidcToken.id).in_(tokens)))
    horizon = now - keys.lifetime("refresh_token_ttl")
    codes = list(
        session.exec(select(OidcCode.id).where(col(OidcCode.expires_at) <= horizon).limit(limit))
    )
    if codes:
        session.exec(delete(OidcCode).where(col(OidcCode.id).in_(codes)))
    from mno.sso import client_auth

    return len(tokens) + len(codes) + client_auth.prune(session, limit)
