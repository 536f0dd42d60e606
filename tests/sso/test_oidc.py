"""The OpenID Connect provider against an independent client (authlib's httpx OAuth2
client), on the live hub on loopback: discovery, code + PKCE, nonce, refresh rotation and
reuse detection, revocation, introspection, logout, denied users and bad requests."""

from __future__ import annotations

import html
import re
from collections.abc import Iterator
from datetime import timedelta
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from authlib.common.security import generate_token
from authlib.integrations.httpx_client import OAuth2Client
from joserfc import jws, jwt
from joserfc.jwk import KeySet
from sqlmodel import select

from mno import clock
from mno.store.models.core import AuditEntry, Event

REDIRECT = "http://127.0.0.1:9/callback"
LOGOUT = "http://127.0.0.1:9/bye"
SCOPE = "openid email profile"


@pytest.fixture
def hub(sqlite_url: str) -> Iterator[str]:
    from mno.api import auth, config, idm, server
    from mno.sso import keys

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
def world(sqlite_url: str) -> dict[str, Any]:
    """Tenant acme owns app crm (an OIDC client); bob is a member of acme, eve only of
    globex, which may not use crm."""
    from mno.access import members
    from mno.sso import clients, sessions
    from mno.store.db import session_scope
    from mno.tenancy import apps, tenants

    with session_scope() as s:
        tenants.create(s, "acme", name="Acme", status="active")
        tenants.create(s, "globex", name="Globex", status="active")
        apps.create(s, "CRM", code="crm", owner="acme")
        members.add(s, "acme", "bob@acme.io", "member", name="Bob")
        members.add(s, "globex", "eve@globex.io", "admin")
        issued = clients.enable(s, "crm", [REDIRECT], logout_uris=[LOGOUT])
        client_id, secret = issued.client.client_id, issued.secret
    cookies = {}
    with session_scope() as s:
        from mno.access import users

        for email in ("bob@acme.io", "eve@globex.io"):
            cookies[email] = sessions.start(s, users.get(s, email)).token
    return {"client_id": client_id, "secret": secret, "cookies": cookies}


def _consent(hub: str, page: httpx.Response, cookie: str) -> httpx.Response:
    """Submit the consent form as a browser would (every field, Allow)."""
    assert page.status_code == 200 and "<form" in page.text, page.text
    fields = {
        html.unescape(k): html.unescape(v)
        for k, v in re.findall(r'<input type="hidden" name="([^"]*)" value="([^"]*)">', page.text)
    }
    assert "csrf_token" in fields
    return httpx.post(
        f"{hub}/authorize", data={**fields, "consent": "allow"}, cookies={"mno_sid": cookie}
    )


def _authorize(
    hub: str, client: OAuth2Client, cookie: str | None, **extra: Any
) -> tuple[httpx.Response, str, str]:
    verifier = generate_token(48)
    url, state = client.create_authorization_url(
        f"{hub}/authorize", code_verifier=verifier, **extra
    )
    cookies = {"mno_sid": cookie} if cookie else {}
    r = httpx.get(url, cookies=cookies)
    if r.status_code == 200 and cookie:
        r = _consent(hub, r, cookie)
    return r, verifier, state


def _client(world: dict[str, Any], **kw: Any) -> OAuth2Client:
    return OAuth2Client(
        world["client_id"],
        world["secret"],
        scope=SCOPE,
        redirect_uri=REDIRECT,
        code_challenge_method="S256",
        **kw,
    )


def _login(hub: str, world: dict[str, Any], email: str = "bob@acme.io", **kw: Any) -> Any:
    client = _client(world, **kw)
    nonce = generate_token(20)
    r, verifier, _ = _authorize(hub, client, world["cookies"][email], nonce=nonce)
    assert r.status_code == 302, r.text
    token = client.fetch_token(
        f"{hub}/token", authorization_response=r.headers["location"], code_verifier=verifier
    )
    return client, token, nonce


def _verify_id_token(hub: str, id_token: str) -> dict[str, Any]:
    keyset = KeySet.import_key_set(httpx.get(f"{hub}/jwks").json())
    return dict(jwt.decode(id_token, keyset, algorithms=["RS256", "ES256"]).claims)


def test_discovery_and_jwks(hub):
    conf = httpx.get(f"{hub}/.well-known/openid-configuration").json()
    assert conf["issuer"] == hub
    assert conf["token_endpoint"] == f"{hub}/token"
    assert conf["code_challenge_methods_supported"] == ["S256"]
    assert {"client_secret_basic", "client_secret_post"} <= set(
        conf["token_endpoint_auth_methods_supported"]
    )
    jwks = httpx.get(conf["jwks_uri"]).json()
    assert {k["kty"] for k in jwks["keys"]} == {"RSA", "EC"}
    assert all("d" not in k and "p" not in k for k in jwks["keys"])


def test_code_pkce_nonce_userinfo_and_consent_remembered(hub, world):
    client, token, nonce = _login(hub, world)
    claims = _verify_id_token(hub, token["id_token"])
    assert claims["nonce"] == nonce
    assert claims["iss"] == hub and claims["aud"] == world["client_id"]
    assert claims["email"] == "bob@acme.io" and claims["name"] == "Bob"
    assert claims["tenant"] == "acme" and claims["tenants"] == ["acme"]
    assert claims["roles"] == ["member"]
    assert claims["exp"] > claims["iat"] and "auth_time" in claims
    info = client.get(f"{hub}/userinfo").json()
    assert info["sub"] == claims["sub"] and info["tenant"] == "acme"
    # the consent is remembered: the second sign-in redirects at once
    r, _, state = _authorize(hub, _client(world), None)
    second = httpx.get(
        _client(world).create_authorization_url(
            f"{hub}/authorize", code_verifier=generate_token(48)
        )[0],
        cookies={"mno_sid": world["cookies"]["bob@acme.io"]},
    )
    assert second.status_code == 302 and "code=" in second.headers["location"]
    # unsigned browser: sent to the sign-in page with the authorize URL as next
    assert r.status_code == 302 and r.headers["location"].startswith("/signin?next=%2Fauthorize")
    from mno.store.db import session_scope

    with session_scope(write=False) as s:
        types = [e.type for e in s.exec(select(Event))]
        actions = [a.action for a in s.exec(select(AuditEntry))]
    assert types.count("sso.consent_granted") == 1 and "sso.token_issued" in types
    assert "sso.consent_granted" in actions and "sso.token_issued" in actions


def test_client_secret_post_and_wrong_secret(hub, world):
    client, token, _ = _login(hub, world, token_endpoint_auth_method="client_secret_post")
    assert token["token_type"].lower() == "bearer"
    r = httpx.post(
        f"{hub}/token",
        data={"grant_type": "refresh_token", "refresh_token": token["refresh_token"]},
        auth=(world["client_id"], world["secret"] + "x"),
    )
    assert r.status_code == 401 and r.json()["error"] == "invalid_client"


def test_refresh_rotation_and_reuse_revokes_the_family(hub, world):
    client, token, _ = _login(hub, world)
    first_refresh = token["refresh_token"]
    new = client.refresh_token(f"{hub}/token", refresh_token=first_refresh)
    assert new["refresh_token"] != first_refresh
    assert client.get(f"{hub}/userinfo").status_code == 200
    # the rotated refresh token used again: refused, and every token of the family dies
    again = httpx.post(
        f"{hub}/token",
        data={"grant_type": "refresh_token", "refresh_token": first_refresh},
        auth=(world["client_id"], world["secret"]),
    )
    assert again.status_code == 400 and again.json()["error"] == "invalid_grant"
    assert client.get(f"{hub}/userinfo").status_code == 401
    latest = httpx.post(
        f"{hub}/token",
        data={"grant_type": "refresh_token", "refresh_token": new["refresh_token"]},
        auth=(world["client_id"], world["secret"]),
    )
    assert latest.status_code == 400
    from mno.store.db import session_scope

    with session_scope(write=False) as s:
        assert "sso.refresh_reuse_detected" in [e.type for e in s.exec(select(Event))]


def test_revocation_and_introspection(hub, world):
    client, token, _ = _login(hub, world)
    auth = (world["client_id"], world["secret"])
    seen = httpx.post(f"{hub}/introspect", data={"token": token["access_token"]}, auth=auth)
    assert seen.json()["active"] is True and seen.json()["username"] == "bob@acme.io"
    assert seen.json()["tenant"] == "acme"
    r = httpx.post(f"{hub}/introspect", data={"token": "nonsense"}, auth=auth)
    assert r.json() == {"active": False}
    assert httpx.post(f"{hub}/introspect", data={"token": "x"}).status_code == 401
    # RFC 7009: revoking the refresh token revokes the access token issued with it
    r = client.revoke_token(f"{hub}/revoke", token=token["refresh_token"])
    assert r.status_code == 200
    seen = httpx.post(f"{hub}/introspect", data={"token": token["access_token"]}, auth=auth)
    assert seen.json() == {"active": False}
    assert client.get(f"{hub}/userinfo").status_code == 401
    # unknown tokens are answered 200 too
    assert client.revoke_token(f"{hub}/revoke", token="unknown").status_code == 200
    from mno.store.db import session_scope

    with session_scope(write=False) as s:
        assert [e.type for e in s.exec(select(Event))].count("sso.token_revoked") == 1
        assert "sso.token_revoked" in [a.action for a in s.exec(select(AuditEntry))]


def test_denied_user_gets_access_denied(hub, world):
    client = _client(world)
    r, _, state = _authorize(hub, client, world["cookies"]["eve@globex.io"])
    assert r.status_code == 302
    query = parse_qs(urlsplit(r.headers["location"]).query)
    assert r.headers["location"].startswith(REDIRECT)
    assert query["error"] == ["access_denied"] and query["state"] == [state]


def test_wrong_redirect_uri_shows_an_error_page_never_redirects(hub, world):
    client = OAuth2Client(
        world["client_id"], world["secret"], scope=SCOPE, redirect_uri="https://evil.example/cb"
    )
    url, _ = client.create_authorization_url(f"{hub}/authorize")
    r = httpx.get(url, cookies={"mno_sid": world["cookies"]["bob@acme.io"]})
    assert r.status_code == 400 and "location" not in r.headers
    assert "redirect_uri" in r.text


def test_public_client_needs_pkce(hub, world):
    from mno.sso import clients
    from mno.store.db import session_scope
    from mno.tenancy import apps

    with session_scope() as s:
        apps.create(s, "Spa", code="spa", owner="acme")
        public_id = clients.enable(s, "spa", [REDIRECT], public=True).client.client_id
    cookie = world["cookies"]["bob@acme.io"]
    plain = OAuth2Client(public_id, None, scope=SCOPE, redirect_uri=REDIRECT)
    url, _ = plain.create_authorization_url(f"{hub}/authorize")
    r = httpx.get(url, cookies={"mno_sid": cookie})
    assert r.status_code == 302 and "error=invalid_request" in r.headers["location"]
    pkce = OAuth2Client(
        public_id,
        None,
        scope=SCOPE,
        redirect_uri=REDIRECT,
        code_challenge_method="S256",
        token_endpoint_auth_method="none",
    )
    r, verifier, _ = _authorize(hub, pkce, cookie)
    token = pkce.fetch_token(
        f"{hub}/token", authorization_response=r.headers["location"], code_verifier=verifier
    )
    assert "id_token" in token


def _code(hub: str, world: dict[str, Any]) -> tuple[str, str]:
    client = _client(world)
    r, verifier, _ = _authorize(hub, client, world["cookies"]["bob@acme.io"])
    assert r.status_code == 302
    return parse_qs(urlsplit(r.headers["location"]).query)["code"][0], verifier


def _exchange(hub: str, world: dict[str, Any], code: str, verifier: str) -> httpx.Response:
    return httpx.post(
        f"{hub}/token",
        data={
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": REDIRECT,
            "code_verifier": verifier,
        },
        auth=(world["client_id"], world["secret"]),
    )


def test_expired_code_and_wrong_verifier(hub, world):
    code, verifier = _code(hub, world)
    clock.set_now(clock.now() + timedelta(minutes=2))
    r = _exchange(hub, world, code, verifier)
    assert r.status_code == 400 and r.json()["error"] == "invalid_grant"
    assert "expired" in r.json()["error_description"]
    clock.set_now(None)
    code, verifier = _code(hub, world)
    r = _exchange(hub, world, code, generate_token(48))
    assert r.status_code == 400 and r.json()["error"] == "invalid_grant"


def test_code_reused_revokes_its_tokens(hub, world):
    code, verifier = _code(hub, world)
    first = _exchange(hub, world, code, verifier)
    assert first.status_code == 200
    access = first.json()["access_token"]
    ok = httpx.get(f"{hub}/userinfo", headers={"Authorization": f"Bearer {access}"})
    assert ok.status_code == 200
    second = _exchange(hub, world, code, verifier)
    assert second.status_code == 400 and second.json()["error"] == "invalid_grant"
    gone = httpx.get(f"{hub}/userinfo", headers={"Authorization": f"Bearer {access}"})
    assert gone.status_code == 401


def test_rp_initiated_logout_ends_the_hub_session(hub, world):
    from mno.sso import sessions
    from mno.store.db import session_scope

    _, token, _ = _login(hub, world)
    cookie = world["cookies"]["bob@acme.io"]
    r = httpx.get(
        f"{hub}/logout",
        params={
            "id_token_hint": token["id_token"],
            "post_logout_redirect_uri": "https://evil.example/",
        },
        cookies={"mno_sid": cookie},
    )
    assert r.status_code == 400 and "location" not in r.headers
    r = httpx.get(
        f"{hub}/logout",
        params={
            "id_token_hint": token["id_token"],
            "post_logout_redirect_uri": LOGOUT,
            "state": "s1",
        },
        cookies={"mno_sid": cookie},
    )
    assert r.status_code == 302 and r.headers["location"] == f"{LOGOUT}?state=s1"
    with session_scope(write=False) as s:
        assert sessions.user_for(s, cookie) is None


def test_key_rotation_keeps_old_tokens_verifiable(hub, world, cli):
    client, token, _ = _login(hub, world)
    old_kid = jws.extract_compact(token["id_token"].encode()).headers()["kid"]
    rotated = cli.json("sso", "keys", "rotate")
    assert {r["alg"] for r in rotated} == {"RS256", "ES256"}
    assert old_kid not in {r["kid"] for r in rotated}
    # the old token still verifies against the published keys and still works
    assert _verify_id_token(hub, token["id_token"])["sub"]
    assert client.get(f"{hub}/userinfo").status_code == 200
    _, fresh, _ = _login(hub, world)
    new_kid = jws.extract_compact(fresh["id_token"].encode()).headers()["kid"]
    assert new_kid != old_kid and new_kid in {r["kid"] for r in rotated}
    listed = {r["kid"]: r["status"] for r in cli.json("sso", "keys", "list")}
    assert listed[old_kid] == "retired"


def test_idm_accepts_oidc_access_tokens(hub, world):
    from mno.access import keys as app_keys
    from mno.store.db import session_scope

    with session_scope() as s:
        issued = app_keys.rotate(s, "crm")
    app_auth = (issued.key.key_id, issued.secret)
    client, token, _ = _login(hub, world)
    body = {"token": token["access_token"], "tenant": "acme", "action": "read"}
    r = httpx.post(f"{hub}/v1/idm/authorize", json=body, auth=app_auth)
    assert r.status_code == 200, r.text
    assert r.json()["allowed"] is True and r.json()["user"] == "bob@acme.io"
    r = httpx.post(
        f"{hub}/v1/idm/authorize", json={**body, "action": "manage_members"}, auth=app_auth
    )
    assert r.json()["allowed"] is False
    client.revoke_token(f"{hub}/revoke", token=token["access_token"])
    r = httpx.post(f"{hub}/v1/idm/authorize", json=body, auth=app_auth)
    assert r.json()["allowed"] is False and r.json()["user"] is None


def test_consent_form_needs_its_csrf_token(hub, world):
    from mno.store.db import session_scope
    from mno.store.models.oidc import OidcConsent

    client = _client(world)
    cookie = world["cookies"]["bob@acme.io"]
    url, _ = client.create_authorization_url(f"{hub}/authorize", code_verifier=generate_token(48))
    page = httpx.get(url, cookies={"mno_sid": cookie})
    assert page.status_code == 200 and "csrf_token" in page.text
    assert page.headers["x-frame-options"] == "DENY"
    fields = dict(re.findall(r'<input type="hidden" name="([^"]*)" value="([^"]*)">', page.text))
    fields = {k: html.unescape(v) for k, v in fields.items()}
    forged = {**fields, "csrf_token": "0" * 64, "consent": "allow"}
    r = httpx.post(f"{hub}/authorize", data=forged, cookies={"mno_sid": cookie})
    assert r.status_code == 400 and "CSRF" in r.text
    denied = httpx.post(
        f"{hub}/authorize", data={**fields, "consent": "deny"}, cookies={"mno_sid": cookie}
    )
    assert denied.status_code == 302 and "error=access_denied" in denied.headers["location"]
    with session_scope(write=False) as s:
        assert list(s.exec(select(OidcConsent))) == []


def test_expired_tokens_are_pruned_and_tenant_can_be_chosen(hub, world):
    from mno.access import members
    from mno.sso import keys, oidc_tokens
    from mno.store.db import session_scope
    from mno.store.models.oidc import OidcToken
    from mno.tenancy import apps

    with session_scope() as s:
        apps.grant(s, "crm", "globex")
        members.add(s, "globex", "bob@acme.io", "admin")
    client = _client(world)
    r, verifier, _ = _authorize(hub, client, world["cookies"]["bob@acme.io"], tenant="globex")
    token = client.fetch_token(
        f"{hub}/token", authorization_response=r.headers["location"], code_verifier=verifier
    )
    claims = _verify_id_token(hub, token["id_token"])
    assert claims["tenant"] == "globex" and claims["tenants"] == ["acme", "globex"]
    assert claims["roles"] == ["admin"]
    r, _, _ = _authorize(hub, _client(world), world["cookies"]["bob@acme.io"], tenant="initech")
    assert "error=access_denied" in r.headers["location"]
    with session_scope() as s:
        assert oidc_tokens.prune_expired(s) == 0
    clock.set_now(clock.now() + keys.lifetime("refresh_token_ttl") + timedelta(days=1))
    with session_scope() as s:
        assert oidc_tokens.prune_expired(s) == 3  # access + refresh token, and the code
        assert list(s.exec(select(OidcToken))) == []


def test_prompt_none_and_logout_without_hint(hub, world):
    from mno.sso import sessions
    from mno.store.db import session_scope

    client = _client(world)
    url, _ = client.create_authorization_url(
        f"{hub}/authorize", code_verifier=generate_token(48), prompt="none"
    )
    r = httpx.get(url)
    assert r.status_code == 302 and "error=login_required" in r.headers["location"]
    cookie = world["cookies"]["bob@acme.io"]
    r = httpx.get(url, cookies={"mno_sid": cookie})  # no consent yet
    assert r.status_code == 302 and "error=consent_required" in r.headers["location"]
    r = httpx.get(f"{hub}/logout", cookies={"mno_sid": cookie})
    assert r.status_code == 200 and "Signed out" in r.text
    assert "mno_sid" in r.headers["set-cookie"]
    with session_scope(write=False) as s:
        assert sessions.user_for(s, cookie) is None


def test_hostile_input_is_refused_not_a_500(hub, world):
    cookie = {"mno_sid": world["cookies"]["bob@acme.io"]}
    auth = (world["client_id"], world["secret"])
    base = {"client_id": world["client_id"], "redirect_uri": REDIRECT, "response_type": "code"}
    for extra in ({"client_id": "a\x00"}, {"redirect_uri": "é"}, {"scope": "openid\x00"}):
        r = httpx.get(f"{hub}/authorize", params={**base, **extra}, cookies=cookie)
        assert r.status_code == 400 and "location" not in r.headers
    r = httpx.get(
        f"{hub}/authorize",
        params={**base, "scope": "openid", "code_challenge": "é" * 43,
                "code_challenge_method": "S256"},
        cookies=cookie,
    )  # fmt: skip
    assert r.status_code in (200, 302)
    page = httpx.post(
        f"{hub}/authorize", data={**base, "scope": "openid", "csrf_token": "é", "consent": "allow"},
        cookies=cookie,
    )  # fmt: skip
    assert page.status_code == 400
    for data in (
        {"grant_type": "authorization_code", "code": "x\x00", "redirect_uri": REDIRECT},
        {"grant_type": "refresh_token", "refresh_token": "é"},
        {"grant_type": "password"},
    ):
        r = httpx.post(f"{hub}/token", data=data, auth=auth)
        assert r.status_code == 400 and r.json()["error"], r.text
    for token in ("a.b.c", "é", "x" * 9000):
        header = f"Bearer {token}".encode()
        r = httpx.get(f"{hub}/userinfo", headers={"Authorization": header})
        assert r.status_code == 401
        r = httpx.post(f"{hub}/introspect", data={"token": token}, auth=auth)
        assert r.json() == {"active": False}
