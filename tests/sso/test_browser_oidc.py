"""End to end in a real browser (Debian's Chromium driven by Playwright): a person signs
in at the hub with a password and a TOTP code, opens an app from the launcher and lands
in that app signed in. The app is a small real OpenID Connect relying party on loopback
built on authlib's Starlette client: discovery, a redirect to /authorize with PKCE, state
and nonce, the code exchanged at the token endpoint and the ID token verified against the
hub's JWKS. A person whose tenants may not use the app is refused: the relying party gets
``access_denied``, never a code."""

from __future__ import annotations

import os
import secrets
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pyotp
import pytest

from mno.sso import mfa
from tests.sso.signin_support import PASSWORD, light_argon2, person

CHROMIUM = "/usr/bin/chromium"

needs_chromium = pytest.mark.skipif(
    not os.access(CHROMIUM, os.X_OK),
    reason=f"no Chromium at {CHROMIUM} (scripts/test installs it: apt-get install chromium)",
)


class RelyingParty:
    """A tiny OIDC client app. Its OAuth registration is made once the hub has issued the
    client id and secret (the redirect URI needs the app's port first)."""

    def __init__(self) -> None:
        self.callbacks: list[dict[str, str]] = []  # every query the callback received
        self.claims: list[dict[str, Any]] = []  # every verified ID token's claims
        self.oauth: Any = None
        self.url = ""
        self._server: Any = None

    def register(self, hub: str, client_id: str, client_secret: str) -> None:
        from authlib.integrations.starlette_client import OAuth

        self.oauth = OAuth()
        self.oauth.register(
            "hub",
            client_id=client_id,
            client_secret=client_secret,
            server_metadata_url=f"{hub}/.well-known/openid-configuration",
            client_kwargs={"scope": "openid email profile", "code_challenge_method": "S256"},
        )

    def app(self) -> Any:
        from authlib.integrations.starlette_client import OAuthError
        from starlette.applications import Starlette
        from starlette.middleware import Middleware
        from starlette.middleware.sessions import SessionMiddleware
        from starlette.requests import Request
        from starlette.responses import HTMLResponse, RedirectResponse, Response
        from starlette.routing import Route

        def page(text: str, status: int = 200) -> HTMLResponse:
            return HTMLResponse(
                f"<!doctype html><html lang='en'><title>Notes</title><main><p>{text}</p>"
                "</main></html>",
                status,
            )

        async def home(request: Request) -> Response:
            who = request.session.get("who")
            if who is None:
                return RedirectResponse("/login", 302)
            return page(f"signed in as {who['email']} in tenant {who['tenant']}")

        async def login(request: Request) -> Response:
            # authlib makes the state, the nonce and the PKCE verifier and keeps them in
            # the app's own session
            return await self.oauth.hub.authorize_redirect(request, f"{self.url}/callback")  # type: ignore[no-any-return]

        async def callback(request: Request) -> Response:
            self.callbacks.append(dict(request.query_params))
            try:
                token = await self.oauth.hub.authorize_access_token(request)
            except OAuthError as exc:
                return page(f"refused: {exc.error}", 403)
            claims = dict(token["userinfo"])  # the ID token, verified against the JWKS
            self.claims.append(claims)
            request.session["who"] = {"email": claims["email"], "tenant": claims["tenant"]}
            return RedirectResponse("/", 302)

        return Starlette(
            routes=[
                Route("/", home),
                Route("/login", login),
                Route("/callback", callback),
            ],
            middleware=[
                Middleware(
                    SessionMiddleware,
                    secret_key=secrets.token_urlsafe(32),
                    session_cookie="notes_session",  # the hub's cookies share the host
                )
            ],
        )

    def start(self) -> None:
        import uvicorn

        config = uvicorn.Config(
            self.app(), host="127.0.0.1", port=0, log_level="warning", lifespan="off"
        )
        self._server = uvicorn.Server(config)
        threading.Thread(target=self._server.run, daemon=True, name="rp").start()
        for _ in range(500):
            if self._server.started:
                break
            time.sleep(0.01)
        assert self._server.started, "the relying party did not start"
        port = self._server.servers[0].sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True


@pytest.fixture
def hub(sqlite_url: str, mno_env: Path) -> Iterator[str]:
    from mno.api import auth, config, idm, server
    from mno.sso import keys

    light_argon2(mno_env)
    config.reset()
    auth.clear()
    idm.clear()
    keys.clear_cache()
    srv, port = server.serve_in_thread("127.0.0.1", 0)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        srv.should_exit = True
        keys.clear_cache()
        idm.clear()


@pytest.fixture
def rp() -> Iterator[RelyingParty]:
    party = RelyingParty()
    party.start()
    try:
        yield party
    finally:
        party.stop()


@needs_chromium
def test_sign_in_at_the_hub_and_open_an_oidc_app_from_the_launcher(
    hub: str, rp: RelyingParty, cli: Any
) -> None:
    from playwright.sync_api import sync_playwright
    from sqlmodel import select

    from mno.access import members
    from mno.store.db import session_scope
    from mno.store.models.oidc import OidcCode
    from mno.tenancy import apps, tenants

    with session_scope() as s:
        person(s)  # ada: password, and a second factor below
        person(s, "eve@example.com")
        tenants.create(s, "acme", name="Acme Corp")
        tenants.create(s, "globex", name="Globex")
        members.add(s, "acme", "ada@example.com", "member")
        members.add(s, "globex", "ada@example.com", "admin")
        members.add(s, "globex", "eve@example.com", "admin")
        # acme's own app: ada may use it through acme only, eve not at all
        apps.create(s, "Notes", code="notes", owner="acme", access="own", metadata={"url": rp.url})
        secret = mfa.enable(s, "ada@example.com").secret
    issued = cli.json("app", "sso", "enable", "notes", "--redirect-uri", f"{rp.url}/callback")
    rp.register(hub, issued["client_id"], issued["client_secret"])

    console: list[str] = []  # a blocked form redirect shows up here (and hangs the flow)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            page = browser.new_page()
            page.set_default_timeout(10_000)
            page.on("console", lambda m: console.append(m.text))
            page.goto(f"{hub}/signin")
            page.get_by_label("Email address").fill("ada@example.com")
            page.get_by_label("Password").fill(PASSWORD)
            page.get_by_role("button", name="Sign in").click()
            page.wait_for_url(f"{hub}/signin/mfa")
            page.get_by_label("Code from your authenticator app").fill(mfa.code_now(secret))
            page.get_by_role("button", name="Verify").click()
            page.wait_for_url(f"{hub}/launcher")
            # the launcher opens acme's apps first (by key); ada may open Notes there
            page.get_by_role("link", name="Notes").click()
            # the app sent the browser to the hub, which asks once before signing ada in
            page.wait_for_url(f"{hub}/authorize?*")
            asked = dict(parse_qsl(urlsplit(page.url).query))
            assert asked["code_challenge_method"] == "S256" and len(asked["code_challenge"]) == 43
            assert asked["state"] and asked["nonce"] and asked["client_id"] == issued["client_id"]
            assert page.get_by_role("heading", name="Sign in to Notes?").is_visible()
            assert "ada@example.com" in page.inner_text("main")
            assert "Acme Corp" in page.inner_text("main")
            page.get_by_role("button", name="Allow").click()
            page.wait_for_url(f"{rp.url}/")
            assert page.inner_text("main") == "signed in as ada@example.com in tenant acme"

            # the authorization request was a real one: PKCE S256, state and nonce
            assert len(rp.callbacks) == 1 and set(rp.callbacks[0]) == {"code", "state"}
            claims = rp.claims[0]
            assert claims["iss"] == hub and claims["aud"] == issued["client_id"]
            assert claims["nonce"] and claims["tenants"] == ["acme"]

            # consent is remembered: signing in to the app again is silent
            page.context.clear_cookies(name="notes_session")
            page.goto(f"{rp.url}/login")
            page.wait_for_url(f"{rp.url}/")
            assert page.inner_text("main") == "signed in as ada@example.com in tenant acme"
            assert len(rp.claims) == 2 and rp.claims[1]["nonce"] != claims["nonce"]

            # eve's tenant may not use Notes: she opens the app, signs in at the hub, and
            # the app is told access_denied and never sees a code
            eve = browser.new_page()  # a new context: no cookies shared with ada's
            eve.set_default_timeout(10_000)
            eve.on("console", lambda m: console.append(m.text))
            eve.goto(f"{rp.url}/login")
            eve.wait_for_url(f"{hub}/signin?next=%2Fauthorize%3F*")
            eve.get_by_label("Email address").fill("eve@example.com")
            eve.get_by_label("Password").fill(PASSWORD)
            eve.get_by_role("button", name="Sign in").click()
            eve.wait_for_url(f"{rp.url}/callback?*")
            assert eve.inner_text("main") == "refused: access_denied"
            refused = rp.callbacks[-1]
            assert refused["error"] == "access_denied" and "code" not in refused
            assert all("code" not in q for q in rp.callbacks[2:])
            assert len(rp.claims) == 2
            eve.goto(f"{hub}/launcher")  # and the launcher does not offer it to her
            assert eve.get_by_role("heading", name="Your apps").is_visible()
            assert eve.get_by_role("link", name="Notes").count() == 0

            # ada again, in a fresh browser: she opens the app first, signs in at the hub
            # with both factors, and is sent on to the app (consent is remembered)
            fresh = browser.new_page()
            fresh.set_default_timeout(10_000)
            fresh.on("console", lambda m: console.append(m.text))
            fresh.goto(rp.url)
            fresh.wait_for_url(f"{hub}/signin?next=%2Fauthorize%3F*")
            fresh.get_by_label("Email address").fill("ada@example.com")
            fresh.get_by_label("Password").fill(PASSWORD)
            fresh.get_by_role("button", name="Sign in").click()
            fresh.wait_for_url(f"{hub}/signin/mfa")
            # the next time step's code: the current one was used above
            code = pyotp.TOTP(secret).at(time.time() + mfa.STEP)
            fresh.get_by_label("Code from your authenticator app").fill(code)
            fresh.get_by_role("button", name="Verify").click()
            fresh.wait_for_url(f"{rp.url}/")
            assert fresh.inner_text("main") == "signed in as ada@example.com in tenant acme"
            assert len(rp.claims) == 3
            with session_scope() as s:
                codes = s.exec(select(OidcCode)).all()
                assert len(codes) == 3 and all(c.code_challenge for c in codes)
        finally:
            browser.close()
    assert not [m for m in console if "Content Security Policy" in m], console


def _form_action(response: Any) -> str:
    csp = response.headers["content-security-policy"]
    return next(d.strip() for d in csp.split(";") if d.strip().startswith("form-action"))


def test_forms_may_redirect_to_a_registered_client_only(hub: str) -> None:
    """The sign-in and consent pages let their form's redirects end at the origin of a
    registered redirect URI of an enabled client, and nowhere else."""
    import httpx

    from mno.access import members
    from mno.sso import clients, sessions
    from mno.store.db import session_scope
    from mno.tenancy import apps, tenants

    callback = "https://notes.example.com:8443/callback"
    with session_scope() as s:
        ada = person(s, password=None)
        tenants.create(s, "acme")
        members.add(s, "acme", "ada@example.com", "member")
        apps.create(s, "Notes", code="notes", owner="acme", access="own")
        client_id = clients.enable(s, "notes", [callback]).client.client_id
        cookie = sessions.start(s, ada).token

    def signin_page(next_url: str) -> Any:
        return httpx.get(f"{hub}/signin", params={"next": next_url})

    query = httpx.QueryParams(
        client_id=client_id, redirect_uri=callback, response_type="code", scope="openid"
    )
    allowed = signin_page(f"/authorize?{query}")
    assert allowed.status_code == 200
    assert _form_action(allowed) == "form-action 'self' https://notes.example.com:8443"
    for other in (
        f"/authorize?{query.set('redirect_uri', 'https://evil.example.com/callback')}",
        f"/authorize?{query.set('client_id', 'nobody')}",
        f"/launcher?{query}",
        f"https://evil.example.com/authorize?{query}",
    ):
        assert _form_action(signin_page(other)) == "form-action 'self'", other

    consent = httpx.get(f"{hub}/authorize?{query}", cookies={"mno_sid": cookie})
    assert consent.status_code == 200 and "Allow" in consent.text
    assert _form_action(consent) == "form-action 'self' https://notes.example.com:8443"
    assert _form_action(httpx.get(f"{hub}/signin")) == "form-action 'self'"
