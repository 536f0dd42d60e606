"""OpenID Connect clients: an app of the catalogue that signs its users in through the hub.

``enable`` registers the app's redirect URIs and returns a client id and (for a
confidential client) a secret, shown once; the store keeps the secret's SHA-256 digest
only and compares digests in constant time. A public client (a single-page or native
app) has no secret and must use PKCE with S256.
"""

from __future__ import annotations

import re
import secrets as _secrets
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from sqlmodel import select

from mno import secrets as stored_secrets
from mno import settings
from mno.access import secrets
from mno.errors import BadInput, Conflict, NotFound
from mno.store import audit, db, outbox
from mno.store.models.oidc import OidcClient
from mno.store.models.tenancy import App
from mno.tenancy import apps

if TYPE_CHECKING:
    from sqlmodel import Session

SECRET_PREFIX = "mnocs"
LOOPBACK = ("127.0.0.1", "localhost", "::1")
NEX_ENV = ("OIDC_ISSUER", "OIDC_CLIENT_ID", "OIDC_CLIENT_SECRET")


def secret_name(app: App) -> str:
    """The secret that holds a Nex app's client secret for its instances."""
    return f"oidc-client-{app.code}"


def _nex_env(session: Session, app: App, client: OidcClient, secret: str | None) -> None:
    """A Nex app's instances get the issuer, client id and client secret (a ``secret:``
    reference, resolved when the container is made) in their environment."""
    if app.stack != "nex":
        return
    env = {k: v for k, v in (app.env or {}).items() if k not in NEX_ENV}
    if client.enabled:
        issuer = settings.profile_value("sso.issuer")
        if issuer:
            env["OIDC_ISSUER"] = str(issuer).rstrip("/")
        env["OIDC_CLIENT_ID"] = client.client_id
        if secret:
            stored_secrets.set(secret_name(app), secret)
            env["OIDC_CLIENT_SECRET"] = f"secret:{secret_name(app)}"
    app.env = env
    app.touch()
    session.add(app)


@dataclass(frozen=True)
class Issued:
    """A client and, when it has one, its new secret (never stored)."""

    client: OidcClient
    app: App
    secret: str | None


def check_uri(uri: str, what: str = "redirect URI") -> str:
    """An absolute https URI (http on loopback only), without a fragment."""
    uri = uri.strip()
    parts = urlsplit(uri)
    if len(uri) > 2000 or not parts.scheme or not parts.hostname:
        raise BadInput(f"{what} {uri!r} is not an absolute URI")
    if parts.fragment or "#" in uri:
        raise BadInput(f"{what} {uri!r} has a fragment")
    if parts.scheme != "https" and not (parts.scheme == "http" and parts.hostname in LOOPBACK):
        raise BadInput(f"{what} {uri!r} must use https", "http is allowed on loopback only")
    return uri


_ORIGIN = re.compile(
    r"https?://[A-Za-z0-9.\-]+(:[0-9]{1,5})?|https?://\[[0-9A-Fa-f:.]+\](:[0-9]{1,5})?"
)


def redirect_origin(uri: str) -> str:
    """The origin of a redirect URI as a Content-Security-Policy source, or "" when it is
    not a plain ``http(s)://host[:port]`` one. A hub form answered with a redirect that
    ends at the client must allow it in ``form-action``: browsers check every redirect."""
    parts = urlsplit(uri)
    origin = f"{parts.scheme}://{parts.netloc}"
    return origin if _ORIGIN.fullmatch(origin) else ""


def as_dict(client: OidcClient, app: App) -> dict[str, Any]:
    return {
        "app": app.code,
        "client_id": client.client_id,
        "type": "public" if client.public else "confidential",
        "redirect_uris": list(client.redirect_uris),
        "post_logout_redirect_uris": list(client.logout_uris),
        "id_token_alg": client.id_token_alg,
        "auth_method": auth_method(client),
        "jwks_uri": client.jwks_uri,
        "enabled": client.enabled,
        "created_at": client.created_at,
    }


def auth_method(client: OidcClient) -> str:
    """How the client authenticates at the token endpoint."""
    if client.public:
        return "none"
    if client.jwks or client.jwks_uri:
        return "private_key_jwt"
    return "client_secret_basic"


def find(session: Session, client_id: str) -> OidcClient | None:
    """An enabled client by its client id, or None."""
    if not client_id or len(client_id) > 80:
        return None
    row = session.exec(select(OidcClient).where(OidcClient.client_id == client_id)).first()
    return row if row is not None and row.enabled else None


def find_with_app(session: Session, client_id: str) -> tuple[OidcClient, App] | None:
    """An enabled client and its app in one query, or None."""
    if not client_id or len(client_id) > 80:
        return None
    row = session.exec(
        select(OidcClient, App).where(
            OidcClient.client_id == client_id, App.id == OidcClient.app_id
        )
    ).first()
    if row is None or not row[0].enabled:
        return None
    db.pin(session, row[1])  # the grant reads the app next
    return row[0], row[1]


def of_app(session: Session, code: str) -> tuple[OidcClient, App]:
    app = apps.get(session, code)
    row = session.exec(select(OidcClient).where(OidcClient.app_id == app.id)).first()
    if row is None:
        raise NotFound(f"app {app.code} is not an OIDC client", "mno app sso enable")
    return row, app


def enable(
    session: Session,
    code: str,
    redirect_uris: list[str],
    *,
    public: bool = False,
    logout_uris: list[str] | None = None,
    id_token_alg: str = "RS256",
    jwks: dict[str, Any] | None = None,
    jwks_uri: str | None = None,
) -> Issued:
    """Make ``code`` an OIDC client; a confidential client gets a secret (shown once),
    unless it registers its public keys (``jwks`` or ``jwks_uri``) to authenticate with
    ``private_key_jwt``."""
    from mno.sso import client_auth

    app = apps.get(session, code)
    if jwks is not None and jwks_uri is not None:
        raise BadInput("give --jwks or --jwks-uri, not both")
    if public and (jwks is not None or jwks_uri is not None):
        raise BadInput("a public client has no keys", "drop --public for private_key_jwt")
    keys = client_auth.check_jwks(jwks) if jwks is not None else None
    if jwks_uri is not None:
        jwks_uri = check_uri(jwks_uri, "jwks_uri")
        client_auth.fetch_jwks(jwks_uri)  # reachable, allowed and readable now
    if id_token_alg not in ("RS256", "ES256"):
        raise BadInput(f"unsupported ID token algorithm {id_token_alg!r}", "RS256 or ES256")
    if not redirect_uris:
        raise BadInput("at least one --redirect-uri is needed")
    uris = list(dict.fromkeys(check_uri(u) for u in redirect_uris))
    logouts = list(
        dict.fromkeys(check_uri(u, "post-logout redirect URI") for u in logout_uris or [])
    )
    existing = session.exec(select(OidcClient).where(OidcClient.app_id == app.id)).first()
    if existing is not None and existing.enabled:
        raise Conflict(f"app {app.code} is already an OIDC client", "mno app sso show")
    by_key = keys is not None or jwks_uri is not None
    secret = None if public or by_key else secrets.new_token(SECRET_PREFIX)
    row = existing or OidcClient(app_id=app.id, client_id=f"{app.code}-{_secrets.token_hex(6)}")
    row.public = public
    row.secret_hash = secrets.digest(secret) if secret else None
    row.redirect_uris = uris
    row.logout_uris = logouts
    row.id_token_alg = id_token_alg
    row.jwks = keys
    row.jwks_uri = jwks_uri
    row.enabled = True
    row.touch()
    session.add(row)
    session.flush()
    _nex_env(session, app, row, secret)
    audit.record(
        session,
        "sso.client_enabled",
        target_type="app",
        target_id=app.id,
        target=app.code,
        after={k: v for k, v in as_dict(row, app).items() if k != "created_at"},
        tenant_id=app.owner_id,
    )
    outbox.emit(
        session,
        "sso.client_enabled",
        {"app": app.code, "client_id": row.client_id, "public": public},
        tenant_id=app.owner_id,
    )
    return Issued(row, app, secret)


def disable(session: Session, code: str) -> OidcClient:
    row, app = of_app(session, code)
    if not row.enabled:
        return row
    row.enabled = False
    row.secret_hash = None
    row.touch()
    session.add(row)
    _nex_env(session, app, row, None)
    audit.record(
        session,
        "sso.client_disabled",
        target_type="app",
        target_id=app.id,
        target=app.code,
        before={"client_id": row.client_id},
        tenant_id=app.owner_id,
    )
    outbox.emit(
        session, "sso.client_disabled", {"app": app.code, "client_id": row.client_id}, app.owner_id
    )
    return row


def rotate_secret(session: Session, code: str) -> Issued:
    row, app = of_app(session, code)
    if not row.enabled:
        raise Conflict(f"app {app.code} has SSO disabled", "mno app sso enable")
    if row.public:
        raise Conflict(f"app {app.code} is a public client and has no secret")
    if auth_method(row) == "private_key_jwt":
        raise Conflict(f"app {app.code} authenticates with private_key_jwt and has no secret")
    secret = secrets.new_token(SECRET_PREFIX)
    row.secret_hash = secrets.digest(secret)
    row.touch()
    session.add(row)
    _nex_env(session, app, row, secret)
    audit.record(
        session,
        "sso.client_secret_rotated",
        target_type="app",
        target_id=app.id,
        target=app.code,
        after={"client_id": row.client_id},
        tenant_id=app.owner_id,
    )
    return Issued(row, app, secret)


def authenticate(session: Session, client_id: str, secret: str | None) -> OidcClient | None:
    """The client whose id and secret these are (a public client: no secret), or None.
    The digests are compared in constant time."""
    found = find_with_app(session, client_id)  # the app too: the grant needs it next
    row = found[0] if found is not None else None
    if row is None:
        if secret:  # spend the same work as a real comparison
            secrets.same(secrets.digest(secret), "0" * 64)
        return None
    if row.public:
        return row if not secret else None
    if not secret or row.secret_hash is None:
        return None
    return row if secrets.same(row.secret_hash, secrets.digest(secret)) else None
