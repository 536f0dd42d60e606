"""Hub API credentials: ``Authorization: Bearer <personal token>`` for users, and the
app keys of the Developer API (HTTP Basic with the key id and secret) for apps.

Each personal token has a rate limit bucket of its own, as each app key does
(``api.rate_limit`` and ``api.rate_burst`` in the profile); an empty bucket is answered
429 with ``Retry-After``.

Either becomes a ``mno.access.scopes.Principal``: who calls, with which scopes. A
missing or bad credential is answered 401 with ``WWW-Authenticate``; what the principal
may then see and do is decided by the domain (``mno.access.scopes``), as for the CLI.
"""

from __future__ import annotations

from fastapi import Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from mno.access import scopes, tokens
from mno.api import auth, threads
from mno.api.errors import ApiError
from mno.store.db import session_scope
from mno.store.models.tenancy import App

bearer = HTTPBearer(
    auto_error=False,
    description="A personal token (`mno user token create`), or an app key over HTTP Basic",
)

CHALLENGE = 'Bearer realm="mno", Basic realm="mno"'


def unauthorized(message: str = "a valid bearer token is required") -> ApiError:
    return ApiError(401, "unauthorized", message, {"WWW-Authenticate": CHALLENGE})


def _user_principal(secret: str) -> scopes.Principal | None:
    with session_scope(write=False) as s:
        found = tokens.resolve_token(s, secret)
        if found is None:
            return None
        token, user = found
        return scopes.for_user(s, user, str(token.id), token.scopes)


def _app_principal(caller: auth.Caller) -> scopes.Principal | None:
    with session_scope(write=False) as s:
        app = s.get(App, caller.app_id)
        if app is None or not app.enabled:
            return None
        return scopes.for_app(app, caller.key_id)


async def principal_of(header: str | None) -> scopes.Principal:
    """The principal behind an ``Authorization`` header, or 401."""
    if not header:
        raise unauthorized()
    kind, _, value = header.strip().partition(" ")
    if kind.lower() == "bearer":
        found = await threads.run(_user_principal, value.strip())
        if found is None:
            raise unauthorized("the bearer token is unknown, expired or revoked")
        # the same store-backed token bucket as app keys (api.rate_limit): 429 + Retry-After
        await auth.rate("ut_" + found.credential.replace("-", "")[:32])
        return found
    if kind.lower() == "basic":
        try:
            caller = await auth.authenticate(header)
        except ApiError as exc:
            if exc.status == 401:
                raise unauthorized("bad app credentials") from None
            raise
        app = await threads.run(_app_principal, caller)
        if app is None:
            raise unauthorized("bad app credentials")
        return app
    raise unauthorized()


async def hub_principal(
    request: Request, _creds: HTTPAuthorizationCredentials | None = Security(bearer)
) -> scopes.Principal:
    """The dependency of every Hub API route."""
    return await principal_of(request.headers.get("authorization"))
