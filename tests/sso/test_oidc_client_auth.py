"""private_key_jwt client authentication (RFC 7523) and ``at_hash``, against authlib's
client on the live hub (SQLite and PostgreSQL), plus the assertion rules in the store."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from authlib.common.security import generate_token
from authlib.integrations.httpx_client import OAuth2Client
from authlib.oauth2.rfc7523 import PrivateKeyJWT
from joserfc import jwt
from joserfc.jwk import ECKey, RSAKey
from sqlmodel import select

from mno import clock
from mno.store.models.oidc import OidcAssertion, OidcClient
from tests.sso.test_oidc import REDIRECT, SCOPE, _authorize, _verify_id_token

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"


def _key() -> RSAKey:
    return RSAKey.generate_key(2048, parameters={"kid": f"k-{uuid.uuid4().hex[:6]}"}, private=True)


def _jwks(*keys: RSAKey | ECKey) -> dict[str, Any]:
    return {"keys": [k.as_dict(private=False) for k in keys]}


def _assertion(key: RSAKey, client_id: str, aud: str, **over: Any) -> str:
    now = int(clock.now().timestamp())
    claims = {"iss": client_id, "sub": client_id, "aud": aud, "exp": now + 60, "iat": now}
    claims["jti"] = generate_token(16)
    claims.update(over)
    claims = {k: v for k, v in claims.items() if v is not None}
    return jwt.encode({"alg": "RS256", "kid": key.kid}, claims, key)


@pytest.fixture
def live(store_url: str) -> Iterator[str]:
    from mno.api import auth, config, idm, server
    from mno.sso import client_auth, keys

    config.reset()
    auth.clear()
    idm.clear()
    keys.clear_cache()
    client_auth.clear_cache()
    srv, port = server.serve_in_thread("127.0.0.1", 0)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        srv.should_exit = True
        keys.clear_cache()
        client_auth.clear_cache()


@pytest.fixture
def erp(store_url: str) -> dict[str, Any]:
    """App erp of acme is an OIDC client with a registered RSA key; bob of acme has a
    hub session."""
    from mno.access import members, users
    from mno.sso import clients, sessions
    from mno.store.db import session_scope
    from mno.tenancy import apps, tenants

    key = _key()
    with session_scope() as s:
        tenants.create(s, "acme", name="Acme", status="active")
        apps.create(s, "ERP", code="erp", owner="acme")
        members.add(s, "acme", "bob@acme.io", "member", name="Bob")
        issued = clients.enable(s, "erp", [REDIRECT], jwks=_jwks(key))
        assert issued.secret is None
        cookie = sessions.start(s, users.get(s, "bob@acme.io")).token
    return {"client_id": issued.client.client_id, "key": key, "cookie": cookie}


def _authlib_client(hub: str, erp: dict[str, Any]) -> OAuth2Client:
    client = OAuth2Client(
        erp["client_id"],
        erp["key"],
        scope=SCOPE,
        redirect_uri=REDIRECT,
        code_challenge_method="S256",
        token_endpoint_auth_method="private_key_jwt",
        revocation_endpoint_auth_method="private_key_jwt",
    )
    client.register_client_auth_method(PrivateKeyJWT(f"{hub}/token"))
    return client


def test_private_key_jwt_login_introspect_revoke_and_at_hash(live, erp):
    conf = httpx.get(f"{live}/.well-known/openid-configuration").json()
    assert "private_key_jwt" in conf["token_endpoint_auth_methods_supported"]
    assert "private_key_jwt" in conf["introspection_endpoint_auth_methods_supported"]
    assert "RS256" in conf["token_endpoint_auth_signing_alg_values_supported"]
    assert "at_hash" in conf["claims_supported"]
    client = _authlib_client(live, erp)
    r, verifier, _ = _authorize(live, client, erp["cookie"], nonce=generate_token(20))
    assert r.status_code == 302, r.text
    token = client.fetch_token(
        f"{live}/token", authorization_response=r.headers["location"], code_verifier=verifier
    )
    claims = _verify_id_token(live, token["id_token"])
    assert claims["aud"] == erp["client_id"] and claims["tenant"] == "acme"
    # OIDC Core 3.1.3.6, computed here independently of the hub
    import base64
    import hashlib

    digest = hashlib.sha256(token["access_token"].encode()).digest()
    assert claims["at_hash"] == base64.urlsafe_b64encode(digest[:16]).rstrip(b"=").decode()
    assert client.get(f"{live}/userinfo").json()["email"] == "bob@acme.io"
    # introspection and revocation authenticate the same way (aud: the token endpoint)
    seen = client.introspect_token(f"{live}/introspect", token=token["access_token"])
    assert seen.status_code == 200 and seen.json()["active"] is True
    r = client.revoke_token(f"{live}/revoke", token=token["refresh_token"])
    assert r.status_code == 200, r.text
    seen = client.introspect_token(f"{live}/introspect", token=token["access_token"])
    assert seen.json() == {"active": False}
    # the refresh grant with a fresh assertion
    r, verifier, _ = _authorize(live, client, erp["cookie"])
    token = client.fetch_token(
        f"{live}/token", authorization_response=r.headers["location"], code_verifier=verifier
    )
    new = client.refresh_token(f"{live}/token", refresh_token=token["refresh_token"])
    assert new["refresh_token"] != token["refresh_token"]


def test_assertion_rules_at_the_token_endpoint(live, erp):
    cid, key = erp["client_id"], erp["key"]
    aud = f"{live}/token"

    def post(assertion: str, **extra: Any) -> httpx.Response:
        data = {
            "grant_type": "authorization_code",
            "code": "mnoac_nothing",
            "redirect_uri": REDIRECT,
            "client_assertion_type": ASSERTION_TYPE,
            "client_assertion": assertion,
            **extra,
        }
        return httpx.post(f"{live}/token", data=data)

    good = _assertion(key, cid, aud)
    first = post(good)  # the client is authenticated; the code is not
    assert first.status_code == 400 and first.json()["error"] == "invalid_grant"
    replay = post(good)
    assert replay.status_code == 401 and "already used" in replay.json()["error_description"]
    # the issuer is an accepted audience too
    assert post(_assertion(key, cid, live)).status_code == 400
    refused = {
        "wrong audience": _assertion(key, cid, "https://elsewhere.example/token"),
        "expired": _assertion(key, cid, aud, exp=int(time.time()) - 5),
        "no exp": _assertion(key, cid, aud, exp=None),
        "too long-lived": _assertion(key, cid, aud, exp=int(time.time()) + 7200),
        "no jti": _assertion(key, cid, aud, jti=None),
        "iss not the client": _assertion(key, cid, aud, iss="someone-else"),
        "another key": _assertion(_key(), cid, aud),
        "not a JWT": "abc.def",
    }
    for why, assertion in refused.items():
        r = post(assertion)
        assert r.status_code == 401 and r.json()["error"] == "invalid_client", why
    # client_id in the form must be the assertion's subject
    assert post(_assertion(key, cid, aud), client_id="crm-other").status_code == 401
    # a client with keys has no secret to fall back on
    r = httpx.post(
        f"{live}/token",
        data={"grant_type": "authorization_code", "code": "x"},
        auth=(cid, "anything"),
    )
    assert r.status_code == 401
    # a wrong assertion type is no authentication at all
    r = post(_assertion(key, cid, aud), client_assertion_type="urn:other")
    assert r.status_code == 401


class _Keys(BaseHTTPRequestHandler):
    doc: dict[str, Any] = {}

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        body = json.dumps(self.doc).encode()
        self.send_response(200)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_: Any) -> None:
        return


@pytest.fixture
def jwks_server() -> Iterator[tuple[str, type[_Keys]]]:
    handler = type("Keys", (_Keys,), {"doc": {}})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/jwks.json", handler
    finally:
        server.shutdown()
        server.server_close()


def test_jwks_uri_goes_through_the_ssrf_guard_and_is_fetched(store_url, monkeypatch, jwks_server):
    from mno.errors import BadInput
    from mno.sso import client_auth, clients
    from mno.store.db import session_scope
    from mno.tenancy import apps, tenants

    uri, handler = jwks_server
    key = _key()
    handler.doc = _jwks(key)
    client_auth.clear_cache()
    with session_scope() as s:
        tenants.create(s, "acme", name="Acme")
        apps.create(s, "ERP", code="erp", owner="acme")
    # loopback is internal: refused unless the operator allows it
    monkeypatch.delenv("MNO_WEBHOOKS_ALLOW_NETWORKS", raising=False)
    with pytest.raises(BadInput, match="refused"), session_scope() as s:
        clients.enable(s, "erp", [REDIRECT], jwks_uri=uri)
    with session_scope(write=False) as s:
        assert s.exec(select(OidcClient)).first() is None
    monkeypatch.setenv("MNO_WEBHOOKS_ALLOW_NETWORKS", "127.0.0.1/32")
    with session_scope() as s:
        client_id = clients.enable(s, "erp", [REDIRECT], jwks_uri=uri).client.client_id
    aud = ["http://hub/token"]
    with session_scope() as s:
        client, why = client_auth.authenticate(s, _assertion(key, client_id, aud[0]), None, aud)
        assert client is not None, why
    # the client rolls its key: an unknown kid fetches the keys again (after a pause)
    newer = _key()
    handler.doc = _jwks(newer)
    client_auth._fetched[uri] = (time.monotonic() - client_auth.REFETCH_AFTER_S - 1,
                                 client_auth._fetched[uri][1])  # fmt: skip
    with session_scope() as s:
        client, why = client_auth.authenticate(s, _assertion(newer, client_id, aud[0]), None, aud)
        assert client is not None, why
    client_auth.clear_cache()


def test_used_assertions_are_remembered_until_they_expire(session):
    from mno.errors import BadInput
    from mno.sso import client_auth, clients, oidc_tokens
    from mno.tenancy import apps, tenants

    key = _key()
    with session() as s:
        tenants.create(s, "acme", name="Acme")
        apps.create(s, "ERP", code="erp", owner="acme")
        with pytest.raises(BadInput, match="private"):
            clients.enable(s, "erp", [REDIRECT], jwks={"keys": [key.as_dict(private=True)]})
    with session() as s:
        client_id = clients.enable(s, "erp", [REDIRECT], jwks=_jwks(key)).client.client_id
        assert (
            clients.as_dict(s.exec(select(OidcClient)).one(), apps.get(s, "erp"))["auth_method"]
            == "private_key_jwt"
        )
    aud = ["http://hub/token"]
    clock.set_now(clock.now())
    assertion = _assertion(key, client_id, aud[0], jti="one")
    with session() as s:
        assert client_auth.authenticate(s, assertion, client_id, aud)[0] is not None
    with session() as s:
        assert client_auth.authenticate(s, assertion, client_id, aud)[1].endswith("(jti)")
    # a failed authentication records nothing
    with session() as s:
        other = _assertion(_key(), client_id, aud[0])
        assert client_auth.authenticate(s, other, None, aud)[0] is None
    with session(write=False) as s:
        assert [a.jti for a in s.exec(select(OidcAssertion))] == ["one"]
    clock.advance(client_auth.MAX_LIFETIME)
    with session() as s:
        assert oidc_tokens.prune_expired(s) == 1
    with session(write=False) as s:
        assert s.exec(select(OidcAssertion)).first() is None


def test_cli_enable_with_a_jwks_file(sqlite_url, cli, tmp_path: Path):
    assert cli("tenant", "create", "acme").exit_code == 0
    assert cli("app", "create", "ERP", "--code", "erp", "--owner", "acme").exit_code == 0
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    r = cli("app", "sso", "enable", "erp", "--redirect-uri", REDIRECT, "--jwks", str(bad))
    assert r.exit_code == 2 and "JWKS" in r.stderr
    good = tmp_path / "jwks.json"
    good.write_text(json.dumps(_jwks(_key())))
    made = cli.json("app", "sso", "enable", "erp", "--redirect-uri", REDIRECT, "--jwks", str(good))
    assert made["auth_method"] == "private_key_jwt" and made["client_secret"] is None
    assert cli("app", "sso", "rotate-secret", "erp").exit_code == 1
