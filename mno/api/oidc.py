"""The OpenID Connect provider's endpoints: discovery, JWKS, authorize (with the consent
page), token, userinfo, revocation, introspection and RP-initiated logout.

They follow OAuth's wire formats (form bodies, ``{"error": ...}`` answers, redirects)
rather than the API's problem+json, and are described by the discovery document, not by
the OpenAPI document. An unsigned browser is sent to ``/signin?next=<authorize URL>``.
"""

from __future__ import annotations

import base64
import html
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, quote, unquote

from fastapi import APIRouter, Request, Response
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse

from mno.api import threads
from mno.errors import BadInput
from mno.sso import client_auth, clients, keys, oidc, oidc_tokens, sessions
from mno.store.db import session_scope
from mno.store.models.oidc import OidcClient

router = APIRouter(tags=["oidc"], include_in_schema=False)
MAX_FORM = 64 * 1024
NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}


def _issuer(request: Request) -> str:
    return oidc.issuer(str(request.base_url))


async def _form(request: Request) -> dict[str, str]:
    body = await request.body()
    if len(body) > MAX_FORM:
        raise BadInput("the form is too large")
    try:
        pairs = parse_qsl(body.decode(), keep_blank_values=True, max_num_fields=100)
    except (UnicodeDecodeError, ValueError) as exc:
        raise BadInput("the body is not a form") from exc
    if any("\x00" in k or "\x00" in v for k, v in pairs):
        raise BadInput("the form holds a NUL character")
    return dict(pairs)


def _oauth_error(error: str, description: str, status: int = 400) -> JSONResponse:
    headers = dict(NO_STORE)
    if error == "invalid_client":
        headers["WWW-Authenticate"] = 'Basic realm="mno"'
    return JSONResponse(
        {"error": error, "error_description": description}, status_code=status, headers=headers
    )


def _page(title: str, body: str, status: int = 200, form_action: str = "") -> HTMLResponse:
    text = (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{html.escape(title)}</title></head><body><main>{body}</main></body></html>"
    )
    headers = {
        **NO_STORE,
        "X-Frame-Options": "DENY",
        "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; "
        f"form-action 'self'{' ' + form_action if form_action else ''}; frame-ancestors 'none'",
        "Referrer-Policy": "no-referrer",
    }
    return HTMLResponse(text, status_code=status, headers=headers)


def _error_page(message: str) -> HTMLResponse:
    return _page(
        "Sign-in error",
        f"<h1>Sign-in error</h1><p>{html.escape(message)}</p>"
        "<p>The app that sent you here is not set up to sign in this way.</p>",
        400,
    )


def _consent_page(outcome: oidc.Outcome, csrf: str) -> HTMLResponse:
    req = outcome.request
    assert req is not None and outcome.user is not None and outcome.tenant is not None
    fields = "".join(
        f'<input type="hidden" name="{html.escape(k)}" value="{html.escape(v)}">'
        for k, v in req.params.items()
    )
    scopes = "".join(f"<li>{html.escape(s)}</li>" for s in req.scope)
    if len(outcome.choices) > 1:
        radios = "".join(
            f'<div><input type="radio" id="tenant-{html.escape(t.key)}" name="tenant_choice" '
            f'value="{html.escape(t.key)}"{" checked" if t.id == outcome.tenant.id else ""}>'
            f' <label for="tenant-{html.escape(t.key)}">{html.escape(t.name or t.key)}'
            f" ({html.escape(t.key)})</label></div>"
            for t in outcome.choices
        )
        who = "for the organisation you choose"
        picker = f"<fieldset><legend>Sign in for</legend>{radios}</fieldset>"
    else:
        who = f"for <strong>{html.escape(outcome.tenant.name or outcome.tenant.key)}</strong>"
        picker = ""
    body = (
        f"<h1>Sign in to {html.escape(req.app.name)}?</h1>"
        f"<p>{html.escape(req.app.name)} asks to sign you in as "
        f"<strong>{html.escape(outcome.user.email)}</strong> {who}, "
        f"and to read:</p><ul>{scopes}</ul>"
        '<form method="post" action="/authorize">'
        f'{fields}<input type="hidden" name="csrf_token" value="{html.escape(csrf)}">{picker}'
        '<button type="submit" name="consent" value="allow">Allow</button> '
        '<button type="submit" name="consent" value="deny">Deny</button>'
        "</form>"
    )
    return _page("Allow sign-in", body, form_action=clients.redirect_origin(req.redirect_uri))


def _authorize_answer(
    request: Request,
    params: dict[str, str],
    consent: str | None,
    csrf: str | None,
    tenant_choice: str | None = None,
) -> Response:
    cookie = request.cookies.get(sessions.COOKIE)
    try:
        with session_scope() as s:
            outcome = oidc.authorize(
                s, params, cookie, consent=consent, csrf=csrf, tenant_choice=tenant_choice
            )
    except BadInput as exc:
        return _error_page(exc.message if hasattr(exc, "message") else str(exc))
    except oidc.Redirect as exc:
        return RedirectResponse(exc.location, status_code=302, headers=NO_STORE)
    if outcome.kind == "signin":
        query = "&".join(f"{quote(k)}={quote(v)}" for k, v in params.items())
        target = f"/authorize?{query}"
        return RedirectResponse(f"/signin?next={quote(target, safe='')}", 302, NO_STORE)
    if outcome.kind == "consent":
        return _consent_page(outcome, oidc.csrf_token(cookie or ""))
    assert outcome.location is not None
    return RedirectResponse(outcome.location, status_code=302, headers=NO_STORE)


@router.get("/.well-known/openid-configuration")
async def discovery(request: Request) -> Any:
    iss = _issuer(request)
    return JSONResponse(
        {
            "issuer": iss,
            "authorization_endpoint": f"{iss}/authorize",
            "token_endpoint": f"{iss}/token",
            "userinfo_endpoint": f"{iss}/userinfo",
            "jwks_uri": f"{iss}/jwks",
            "revocation_endpoint": f"{iss}/revoke",
            "introspection_endpoint": f"{iss}/introspect",
            "end_session_endpoint": f"{iss}/logout",
            "response_types_supported": ["code"],
            "response_modes_supported": ["query"],
            "grant_types_supported": ["authorization_code", "refresh_token"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": list(keys.ALGS),
            "token_endpoint_auth_methods_supported": [
                "client_secret_basic",
                "client_secret_post",
                "private_key_jwt",
                "none",
            ],
            "token_endpoint_auth_signing_alg_values_supported": list(client_auth.ALGS),
            "revocation_endpoint_auth_methods_supported": [
                "client_secret_basic",
                "client_secret_post",
                "private_key_jwt",
            ],
            "revocation_endpoint_auth_signing_alg_values_supported": list(client_auth.ALGS),
            "introspection_endpoint_auth_methods_supported": [
                "client_secret_basic",
                "client_secret_post",
                "private_key_jwt",
            ],
            "introspection_endpoint_auth_signing_alg_values_supported": list(client_auth.ALGS),
            "code_challenge_methods_supported": ["S256"],
            "scopes_supported": list(oidc.SCOPES),
            "claims_supported": [
                "sub",
                "iss",
                "aud",
                "exp",
                "iat",
                "auth_time",
                "nonce",
                "sid",
                "amr",
                "at_hash",
                "email",
                "email_verified",
                "name",
                "tenant",
                "tenants",
                "roles",
            ],  # fmt: skip
            "prompt_values_supported": ["none", "consent"],
        },
        headers={"Cache-Control": "public, max-age=300"},
    )


@router.get("/jwks")
async def jwks() -> Any:
    def load() -> dict[str, Any]:
        with session_scope() as s:
            keys.signer(s)  # the first keys are made on first use
            return keys.published(s)[1]

    return JSONResponse(await threads.run(load), headers={"Cache-Control": "public, max-age=60"})


@router.get("/authorize")
async def authorize(request: Request) -> Any:
    params = dict(request.query_params)
    return await threads.run(_authorize_answer, request, params, None, None)


@router.post("/authorize")
async def authorize_post(request: Request) -> Any:
    try:
        form = await _form(request)
    except BadInput as exc:
        return _error_page(str(exc))
    consent = form.pop("consent", None)
    csrf = form.pop("csrf_token", None)
    choice = form.pop("tenant_choice", None) or None
    return await threads.run(_authorize_answer, request, form, consent or "deny", csrf, choice)


@dataclass(frozen=True)
class Credentials:
    """What a client presented: a secret (basic or post) or a signed assertion."""

    client_id: str | None
    secret: str | None = None
    assertion: str | None = None


def _client_credentials(request: Request, form: dict[str, str]) -> Credentials | None:
    header = request.headers.get("authorization") or ""
    assertion_type = form.get("client_assertion_type")
    if assertion_type is not None:
        assertion = form.get("client_assertion")
        if assertion_type != client_auth.ASSERTION_TYPE or not assertion:
            return None
        if header[:6].lower() == "basic " or "client_secret" in form:
            return None  # one method per request (RFC 6749 2.3)
        return Credentials(form.get("client_id") or None, assertion=assertion)
    if header[:6].lower() == "basic ":
        try:
            raw = base64.b64decode(header[6:].strip(), validate=True).decode()
        except (ValueError, UnicodeDecodeError):
            return None
        client_id, sep, secret = raw.partition(":")
        if not sep or "\x00" in raw:
            return None
        return Credentials(unquote(client_id.replace("+", " ")), unquote(secret.replace("+", " ")))
    if "client_id" in form:
        return Credentials(form["client_id"], form.get("client_secret") or None)
    return None


def _client(
    s: Any, creds: Credentials, request: Request, iss: str
) -> OidcClient | oidc_tokens.OAuthError:
    """The authenticated client, or the ``invalid_client`` answer."""
    if creds.assertion is not None:
        audiences = (f"{iss}/token", iss, f"{iss}{request.url.path}")
        client, why = client_auth.authenticate(s, creds.assertion, creds.client_id, audiences)
    else:
        client = clients.authenticate(s, creds.client_id or "", creds.secret)
        why = "bad client credentials"
    if client is None:
        return oidc_tokens.OAuthError("invalid_client", why, 401)
    return client


async def _authenticated(request: Request) -> tuple[dict[str, str], Credentials] | JSONResponse:
    try:
        form = await _form(request)
    except BadInput as exc:
        return _oauth_error("invalid_request", str(exc))
    creds = _client_credentials(request, form)
    if creds is None:
        return _oauth_error("invalid_client", "client authentication is required", 401)
    return form, creds


@router.post("/token")
async def token(request: Request) -> Any:
    got = await _authenticated(request)
    if isinstance(got, JSONResponse):
        return got
    form, creds = got
    iss = _issuer(request)

    def run() -> dict[str, Any] | oidc_tokens.OAuthError:
        with session_scope() as s:
            client = _client(s, creds, request, iss)
            if isinstance(client, oidc_tokens.OAuthError):
                return client
            grant = form.get("grant_type")
            if grant == "authorization_code":
                return oidc_tokens.exchange_code(
                    s, client, form.get("code", ""), form.get("redirect_uri"),
                    form.get("code_verifier"), iss,
                )  # fmt: skip
            if grant == "refresh_token":
                return oidc_tokens.refresh(s, client, form.get("refresh_token", ""), iss)
            return oidc_tokens.OAuthError("unsupported_grant_type", f"grant_type {grant!r}")

    answer = await threads.run(run)
    if isinstance(answer, oidc_tokens.OAuthError):
        return _oauth_error(answer.error, answer.description, answer.status)
    return JSONResponse(answer, headers=NO_STORE)


def _bearer(request: Request, form: dict[str, str] | None = None) -> str | None:
    header = request.headers.get("authorization") or ""
    if header[:7].lower() == "bearer ":
        return header[7:].strip() or None
    return (form or {}).get("access_token") or None


async def _userinfo(request: Request, form: dict[str, str] | None) -> Any:
    access_token = _bearer(request, form)
    iss = _issuer(request)
    challenge = {"WWW-Authenticate": 'Bearer error="invalid_token"'}
    if not access_token:
        return JSONResponse(
            {"error": "invalid_token"}, 401, {"WWW-Authenticate": 'Bearer realm="mno"'}
        )

    def run() -> dict[str, Any] | None:
        with session_scope(write=False) as s:
            return oidc_tokens.userinfo(s, access_token, iss)

    claims = await threads.run(run)
    if claims is None:
        return JSONResponse({"error": "invalid_token"}, 401, challenge)
    return JSONResponse(claims, headers=NO_STORE)


@router.get("/userinfo")
async def userinfo(request: Request) -> Any:
    return await _userinfo(request, None)


@router.post("/userinfo")
async def userinfo_post(request: Request) -> Any:
    try:
        form = await _form(request)
    except BadInput:
        form = {}
    return await _userinfo(request, form)


@router.post("/revoke")
async def revoke(request: Request) -> Any:
    got = await _authenticated(request)
    if isinstance(got, JSONResponse):
        return got
    form, creds = got
    iss = _issuer(request)

    def run() -> bool | oidc_tokens.OAuthError:
        with session_scope() as s:
            client = _client(s, creds, request, iss)
            if isinstance(client, oidc_tokens.OAuthError):
                return client
            return oidc_tokens.revoke(s, client, form.get("token", ""), iss)

    answer = await threads.run(run)
    if isinstance(answer, oidc_tokens.OAuthError):
        return _oauth_error(answer.error, answer.description, answer.status)
    return Response(status_code=200, headers=NO_STORE)


@router.post("/introspect")
async def introspect(request: Request) -> Any:
    got = await _authenticated(request)
    if isinstance(got, JSONResponse):
        return got
    form, creds = got
    iss = _issuer(request)

    def run() -> dict[str, Any] | oidc_tokens.OAuthError:
        # an assertion's jti is recorded: a writing transaction
        with session_scope(write=creds.assertion is not None) as s:
            client = _client(s, creds, request, iss)
            if isinstance(client, oidc_tokens.OAuthError):
                return client
            return oidc_tokens.introspect(s, client, form.get("token", ""), iss)

    answer = await threads.run(run)
    if isinstance(answer, oidc_tokens.OAuthError):
        return _oauth_error(answer.error, answer.description, answer.status)
    return JSONResponse(answer, headers=NO_STORE)


async def _logout(request: Request, params: dict[str, str]) -> Any:
    cookie = request.cookies.get(sessions.COOKIE)
    iss = _issuer(request)

    def run() -> oidc_tokens.Logout:
        with session_scope() as s:
            return oidc_tokens.end_session(
                s,
                cookie=cookie,
                id_token_hint=params.get("id_token_hint"),
                post_logout_redirect_uri=params.get("post_logout_redirect_uri"),
                state=params.get("state"),
                iss=iss,
            )

    try:
        done = await threads.run(run)
    except BadInput as exc:
        return _error_page(str(exc))
    response: Response
    if done.location:
        response = RedirectResponse(done.location, status_code=302, headers=NO_STORE)
    else:
        response = _page("Signed out", "<h1>Signed out</h1><p>You are signed out of the hub.</p>")
    response.delete_cookie(sessions.COOKIE, path="/")
    return response


@router.get("/logout")
async def logout(request: Request) -> Any:
    return await _logout(request, dict(request.query_params))


@router.post("/logout")
async def logout_post(request: Request) -> Any:
    try:
        form = await _form(request)
    except BadInput as exc:
        return _error_page(str(exc))
    return await _logout(request, form)
