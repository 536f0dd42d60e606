"""OAuth2 for connectors, through authlib's httpx client (``OAuth2Client``).

Two grants: ``client_credentials`` (the client fetches a token itself whenever it has
none or it expires) and ``authorization_code`` (an operator consents once at the API's
``authorize_url``; ``exchange_code()`` trades the code for tokens, which the client then
refreshes with the refresh token). Tokens are secrets (``mno.secrets``), never store rows
or YAML: ``<prefix>.access_token``, ``<prefix>.refresh_token`` and
``<prefix>.expires_at``, the prefix being the auth's ``token_secret`` or
``oauth.<connection>`` (``oauth.acme.crm`` for the connection ``acme/crm``).

A token is refreshed ``LEEWAY`` seconds before it expires; a request answered 401 is
retried once after a refresh (the API may have revoked the token early). Refreshes are
serialised per client, so parallel requests never spend one refresh token twice.
"""

from __future__ import annotations

import re
import threading
import time
import warnings
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, cast

import authlib.deprecate  # noqa: F401  (it installs its warning filter on import)

with warnings.catch_warnings():
    # authlib 1.9 prefers an ``httpx2`` package and warns when it falls back to httpx,
    # which is what sync's REST client uses
    warnings.simplefilter("ignore")
    from authlib.integrations.base_client import OAuthError
    from authlib.integrations.httpx_client import OAuth2Client

from mno import secrets
from mno.errors import BadInput, MnoError
from mno.store import audit, outbox

if TYPE_CHECKING:
    from sqlmodel import Session

    from mno.sync.spec import Auth

LEEWAY = 60  # seconds before expiry that a token is refreshed


class TokenError(MnoError):
    """The token endpoint refused the grant (bad client, expired code or refresh token)."""

    exit_code = 1


def token_prefix(auth: Auth, owner: str) -> str:
    """The secrets' name prefix of the tokens of ``owner`` (a connection's name)."""
    if auth.token_secret:
        return secrets.check_name(auth.token_secret)
    return secrets.check_name("oauth." + re.sub(r"[^A-Za-z0-9_.-]", ".", owner).strip("."))


def load_token(prefix: str) -> dict[str, Any] | None:
    """The stored token (None when there is no access token yet)."""
    access = secrets.get(f"{prefix}.access_token")
    if not access:
        return None
    token: dict[str, Any] = {"access_token": access, "token_type": "Bearer"}
    refresh = secrets.get(f"{prefix}.refresh_token")
    if refresh:
        token["refresh_token"] = refresh
    expires = secrets.get(f"{prefix}.expires_at")
    if expires:
        token["expires_at"] = int(float(expires))
    return token


def save_token(prefix: str, token: dict[str, Any]) -> None:
    secrets.set(f"{prefix}.access_token", str(token["access_token"]))
    if token.get("refresh_token"):
        secrets.set(f"{prefix}.refresh_token", str(token["refresh_token"]))
    expires_at = token.get("expires_at")
    if expires_at is None and token.get("expires_in") is not None:
        expires_at = int(time.time()) + int(token["expires_in"])
    if expires_at is not None:
        secrets.set(f"{prefix}.expires_at", str(int(expires_at)))


class TokenClient(OAuth2Client):  # type: ignore[misc]  # authlib is untyped
    """authlib's client with refreshes serialised across threads and saved as secrets."""

    def __init__(self, auth: Auth, values: dict[str, Any], prefix: str, **kwargs: Any) -> None:
        self.prefix = prefix
        self.grant = auth.grant
        self.refresh_lock = threading.RLock()
        self.refreshes = 0
        super().__init__(
            client_id=str(secrets.resolve(values["client_id"])),
            client_secret=str(secrets.resolve(values["client_secret"])),
            scope=values.get("scope"),
            redirect_uri=values.get("redirect_uri"),
            token_endpoint=values["token_url"],
            grant_type=auth.grant,
            update_token=self._saved,
            leeway=LEEWAY,
            **kwargs,
        )

    def _saved(self, token: dict[str, Any], **_: Any) -> None:
        self.refreshes += 1
        save_token(self.prefix, dict(token))

    def ensure_active_token(self, token: Any = None) -> bool:
        with self.refresh_lock:
            return bool(super().ensure_active_token(self.token if token is None else token))

    def start(self) -> None:
        """Load the stored token; a client_credentials client without one fetches one."""
        token = load_token(self.prefix)
        if token is not None:
            self.token = token
            return
        if self.grant == "client_credentials":
            self.renew()
            return
        raise TokenError(
            "the connection has no OAuth token yet",
            "consent at the API, then run mno connector auth CONNECTION --code CODE",
        )

    def renew(self, used: str | None = None) -> None:
        """A new access token now (after a 401): by the refresh token when there is one,
        else by the client_credentials grant. ``used`` is the token the refused request
        carried: when another thread renewed it meanwhile, nothing is done."""
        with self.refresh_lock:
            current = self.token.get("access_token") if self.token else None
            if used is not None and current is not None and current != used:
                return
            url = self.metadata["token_endpoint"]
            try:
                if self.token and self.token.get("refresh_token"):
                    self.refresh_token(url, refresh_token=self.token["refresh_token"])
                elif self.grant == "client_credentials":
                    token = self.fetch_token(url, grant_type="client_credentials")
                    self._saved(token)
                else:
                    raise TokenError(
                        "the OAuth token expired and there is no refresh token",
                        "run mno connector auth CONNECTION --code CODE",
                    )
            except OAuthError as exc:
                raise TokenError(
                    f"the token endpoint refused the {self.grant} grant: {exc.error}",
                    "check the client id and secret, or authorise the connection again",
                ) from None

    def access_token(self) -> str | None:
        return cast("str | None", self.token.get("access_token") if self.token else None)


def make_client(auth: Auth, values: dict[str, Any], owner: str, **httpx_kwargs: Any) -> TokenClient:
    return TokenClient(auth, values, token_prefix(auth, owner), **httpx_kwargs)


def _connection_auth(session: Session, connection: str) -> tuple[Any, Auth, dict[str, Any], Any]:
    """(connection row, its connector's auth, the auth's values, the connector)."""
    from mno.store.models.sync import SyncConnector
    from mno.sync import connections
    from mno.sync import spec as specmod

    conn = connections.get(session, connection)
    row = session.get(SyncConnector, conn.connector_id)
    assert row is not None  # a connector with connections cannot be removed
    doc = specmod.of(row)
    if doc.auth.type != "oauth2" or doc.auth.grant != "authorization_code":
        raise BadInput(
            f"connector {doc.name} does not use the oauth2 authorization_code grant",
            "only that grant is authorised by an operator",
        )
    return conn, doc.auth, doc.auth.values(conn.credentials), doc


def consent_url(session: Session, connection: str) -> str:
    """Where an operator consents for ``connection`` (the first step of the
    authorization_code grant); the API then redirects with the code to exchange."""
    conn, auth, values, _ = _connection_auth(session, connection)
    if not auth.authorize_url:
        raise BadInput(f"connection {conn.name}: the connector's auth has no authorize_url")
    with make_client(auth, values, conn.name) as client:
        url, _state = client.create_authorization_url(auth.authorize_url)
    return str(url)


def exchange_code(
    session: Session,
    connection: str,
    code: str,
    *,
    redirect_uri: str | None = None,
) -> dict[str, Any]:
    """Trade an authorization code for the connection's tokens, stored as secrets;
    returns what was stored (secret names and expiry, never the tokens)."""
    if not code.strip():
        raise BadInput("the authorization code is empty")
    conn, auth, values, doc = _connection_auth(session, connection)
    if redirect_uri:
        values["redirect_uri"] = redirect_uri
    with make_client(auth, values, conn.name, timeout=doc.timeout_seconds) as client:
        try:
            token = client.fetch_token(
                values["token_url"],
                grant_type="authorization_code",
                code=code.strip(),
                redirect_uri=values.get("redirect_uri"),
            )
        except OAuthError as exc:
            raise TokenError(
                f"the token endpoint refused the authorization code: {exc.error}",
                "codes are single-use and short-lived: consent again for a new one",
            ) from None
        save_token(client.prefix, dict(token))
        prefix = client.prefix
    stored = [f"{prefix}.access_token", f"{prefix}.expires_at"]
    if token.get("refresh_token"):
        stored.insert(1, f"{prefix}.refresh_token")
    audit.record(
        session,
        "connection.authorize",
        target_type="connection",
        target_id=conn.id,
        target=conn.name,
        after={"secrets": stored},
        tenant_id=conn.tenant_id,
    )
    outbox.emit(
        session, "connection.authorized", {"name": conn.name, "secrets": stored}, conn.tenant_id
    )
    expires = (load_token(prefix) or {}).get("expires_at")
    at = datetime.fromtimestamp(expires, UTC) if expires else None
    return {
        "connection": conn.name,
        "secrets": stored,
        "expires_at": at.isoformat().replace("+00:00", "Z") if at else None,
    }
