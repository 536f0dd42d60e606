"""The tenant picker on the consent page, over HTTP on the live hub (SQLite and
PostgreSQL): a user in several tenants picks the one an app signs them in for, among
those whose access rules let them use the app; the pick sets the ``tenant`` claim and is
remembered with the consent; the form needs its CSRF token."""

from __future__ import annotations

import html
import re
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from authlib.common.security import generate_token
from authlib.integrations.httpx_client import OAuth2Client
from sqlmodel import select

from mno.store.models.core import AuditEntry
from mno.store.models.oidc import OidcCode, OidcConsent
from tests.sso.test_oidc import REDIRECT, SCOPE, _verify_id_token


@pytest.fixture
def live(store_url: str) -> Iterator[str]:
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


@pytest.fixture
def world(store_url: str) -> dict[str, Any]:
    """crm belongs to acme and is granted to globex; carol is a member of acme, globex
    and initech (which may not use crm); dave only of acme."""
    from mno.access import members, users
    from mno.sso import clients, sessions
    from mno.store.db import session_scope
    from mno.tenancy import apps, tenants

    with session_scope() as s:
        for key, name in (("acme", "Acme"), ("globex", "Globex"), ("initech", "Initech")):
            tenants.create(s, key, name=name, status="active")
        apps.create(s, "CRM", code="crm", owner="acme")
        apps.grant(s, "crm", "globex")
        members.add(s, "acme", "carol@example.com", "member")
        members.add(s, "globex", "carol@example.com", "admin")
        members.add(s, "initech", "carol@example.com", "admin")
        members.add(s, "acme", "dave@example.com", "member")
        issued = clients.enable(s, "crm", [REDIRECT])
    cookies = {}
    with session_scope() as s:
        for email in ("carol@example.com", "dave@example.com"):
            cookies[email] = sessions.start(s, users.get(s, email)).token
    return {"client_id": issued.client.client_id, "secret": issued.secret, "cookies": cookies}


def _client(world: dict[str, Any]) -> OAuth2Client:
    return OAuth2Client(
        world["client_id"], world["secret"], scope=SCOPE, redirect_uri=REDIRECT,
        code_challenge_method="S256",
    )  # fmt: skip


def _start(live: str, world: dict[str, Any], email: str, **extra: Any) -> tuple[Any, str, Any]:
    client = _client(world)
    verifier = generate_token(48)
    url, _ = client.create_authorization_url(f"{live}/authorize", code_verifier=verifier, **extra)
    r = httpx.get(url, cookies={"mno_sid": world["cookies"][email]})
    return client, verifier, r


def _fields(page: httpx.Response) -> dict[str, str]:
    return {
        html.unescape(k): html.unescape(v)
        for k, v in re.findall(r'<input type="hidden" name="([^"]*)" value="([^"]*)">', page.text)
    }


def _choices(page: httpx.Response) -> list[str]:
    return re.findall(r'name="tenant_choice" value="([^"]*)"', page.text)


def _tenant_of(live: str, client: OAuth2Client, verifier: str, r: httpx.Response) -> str:
    assert r.status_code == 302, r.text
    token = client.fetch_token(
        f"{live}/token", authorization_response=r.headers["location"], code_verifier=verifier
    )
    claims = _verify_id_token(live, token["id_token"])
    assert client.get(f"{live}/userinfo").json()["tenant"] == claims["tenant"]
    return str(claims["tenant"])


def test_the_picked_tenant_is_the_claim_and_is_remembered(live, world):
    cookie = world["cookies"]["carol@example.com"]
    client, verifier, page = _start(live, world, "carol@example.com")
    assert page.status_code == 200
    # only tenants whose access rules let carol use crm
    assert _choices(page) == ["acme", "globex"]
    fields = _fields(page)
    post = {**fields, "consent": "allow", "tenant_choice": "globex"}
    # no CSRF token, or a wrong one: refused, nothing remembered
    for bad in ({k: v for k, v in post.items() if k != "csrf_token"}, {**post, "csrf_token": "x"}):
        r = httpx.post(f"{live}/authorize", data=bad, cookies={"mno_sid": cookie})
        assert r.status_code == 400 and "CSRF" in r.text
    from mno.store.db import session_scope

    with session_scope(write=False) as s:
        assert s.exec(select(OidcConsent)).first() is None
    # a tenant carol may not use crm through is refused (back to the app, no code)
    r = httpx.post(
        f"{live}/authorize", data={**post, "tenant_choice": "initech"}, cookies={"mno_sid": cookie}
    )
    assert r.status_code == 302
    assert parse_qs(urlsplit(r.headers["location"]).query)["error"] == ["access_denied"]
    with session_scope(write=False) as s:
        assert s.exec(select(OidcCode)).first() is None
    r = httpx.post(f"{live}/authorize", data=post, cookies={"mno_sid": cookie})
    assert _tenant_of(live, client, verifier, r) == "globex"
    # remembered: the next sign-in goes straight back to the app, for globex
    client, verifier, r = _start(live, world, "carol@example.com")
    assert _tenant_of(live, client, verifier, r) == "globex"
    # prompt=consent shows the page again, with the remembered pick checked
    client, verifier, page = _start(live, world, "carol@example.com", prompt="consent")
    assert page.status_code == 200
    assert re.search(r'value="globex" checked', page.text)
    post = {**_fields(page), "consent": "allow", "tenant_choice": "acme"}
    r = httpx.post(f"{live}/authorize", data=post, cookies={"mno_sid": cookie})
    assert _tenant_of(live, client, verifier, r) == "acme"
    client, verifier, r = _start(live, world, "carol@example.com")
    assert _tenant_of(live, client, verifier, r) == "acme"
    # an explicit tenant parameter wins over the remembered pick
    client, verifier, r = _start(live, world, "carol@example.com", tenant="globex")
    assert _tenant_of(live, client, verifier, r) == "globex"
    with session_scope(write=False) as s:
        diffs = [a.diff for a in s.exec(select(AuditEntry)) if a.action == "sso.consent_granted"]
    assert len(diffs) == 2


def test_a_pick_that_no_longer_applies_asks_again(live, world):
    from mno.store.db import session_scope
    from mno.tenancy import apps

    cookie = world["cookies"]["carol@example.com"]
    client, verifier, page = _start(live, world, "carol@example.com")
    post = {**_fields(page), "consent": "allow", "tenant_choice": "globex"}
    r = httpx.post(f"{live}/authorize", data=post, cookies={"mno_sid": cookie})
    assert _tenant_of(live, client, verifier, r) == "globex"
    # globex loses crm, initech gains it: the pick no longer applies, two choices remain
    with session_scope() as s:
        apps.revoke(s, "crm", "globex")
        apps.grant(s, "crm", "initech")
    # a silent sign-in cannot ask
    _, _, r = _start(live, world, "carol@example.com", prompt="none")
    assert r.status_code == 302
    assert parse_qs(urlsplit(r.headers["location"]).query)["error"] == ["interaction_required"]
    client, verifier, page = _start(live, world, "carol@example.com")
    assert page.status_code == 200 and _choices(page) == ["acme", "initech"]
    post = {**_fields(page), "consent": "allow", "tenant_choice": "initech"}
    r = httpx.post(f"{live}/authorize", data=post, cookies={"mno_sid": cookie})
    assert _tenant_of(live, client, verifier, r) == "initech"
    # a consent from before the picker (no tenant kept): the first by key, as then
    with session_scope() as s:
        row = s.exec(select(OidcConsent)).one()
        row.tenant_id = None
        s.add(row)
    client, verifier, r = _start(live, world, "carol@example.com", prompt="none")
    assert _tenant_of(live, client, verifier, r) == "acme"


def test_a_single_tenant_user_sees_no_picker(live, world):
    client, verifier, page = _start(live, world, "dave@example.com")
    assert page.status_code == 200 and _choices(page) == []
    assert "for <strong>Acme</strong>" in page.text
    post = {**_fields(page), "consent": "allow"}
    r = httpx.post(
        f"{live}/authorize", data=post, cookies={"mno_sid": world["cookies"]["dave@example.com"]}
    )
    assert _tenant_of(live, client, verifier, r) == "acme"
