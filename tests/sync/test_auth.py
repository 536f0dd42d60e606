"""Connector auth against real servers on loopback: OAuth2 client_credentials and
authorization_code with refresh tokens (authlib), tokens kept as secrets, a 401 retried
once after a refresh; API keys in a header or a query parameter."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from tests.sync.apps import OAuthState, oauth_app, serve

PREFIX = "oauth.acme.books"


def oauth_yaml(url: str, grant: str) -> str:
    return f"""name: books
app: books
base_url: {url}
auth:
  type: oauth2
  grant: {grant}
  token_url: {url}/oauth/token
  authorize_url: {url}/oauth/authorize
  redirect_uri: http://127.0.0.1/callback
  client_id: cid
  client_secret: secret:BOOKS_CLIENT_SECRET
entities:
  - canonical: invoice
    list:
      path: /api/invoices
    records: data
    mapping:
      number: number
      total: total
"""


def apply(world: Any, text: str) -> None:
    from mno.store.db import session_scope
    from mno.sync import spec

    path: Path = world.tmp / "connector.yaml"
    path.write_text(text)
    with session_scope(world.url) as s:
        spec.apply(s, spec.load_file(path), str(path))


def store_text(url: str) -> str:
    """Every row of the tables that could hold a credential, as text."""
    from mno.store import db

    out = []
    with db.get_engine(url).connect() as conn:
        for table in ("sync_connector", "sync_connection", "audit_entry", "outbox_event"):
            out += [str(tuple(r)) for r in conn.execute(sa.text(f"SELECT * FROM {table}"))]
    return "\n".join(out)


@pytest.fixture
def oauth(world: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    state = OAuthState()
    monkeypatch.setenv("MNO_SECRET_BOOKS_CLIENT_SECRET", "csecret")
    with serve(oauth_app(state)) as url:
        yield state, url


def test_client_credentials_fetches_stores_and_renews_before_expiry(world: Any, oauth: Any) -> None:
    from mno import secrets

    state, url = oauth
    apply(world, oauth_yaml(url, "client_credentials"))
    name = world.connect("books", push=False)
    run = world.run(name)
    assert run.status == "success", run.error
    assert len(world.records()) == 5
    assert state.grants == ["client_credentials"]
    assert secrets.get(f"{PREFIX}.access_token") == "at-1"
    assert int(secrets.require(f"{PREFIX}.expires_at")) > time.time() + 3000
    # the stored token is about to expire: the next pull renews it before it is refused
    secrets.set(f"{PREFIX}.expires_at", str(int(time.time()) + 20))
    assert world.run(name).status == "success"
    assert state.grants == ["client_credentials", "client_credentials"]
    assert state.unauthorized == 0
    assert secrets.get(f"{PREFIX}.access_token") == "at-2"
    assert "at-1" not in store_text(world.url) and "at-2" not in store_text(world.url)


def test_authorization_code_exchange_refresh_and_401_retry(
    world: Any, oauth: Any, cli: Any
) -> None:
    from mno import secrets
    from mno.sync.rest import AuthFailed

    state, url = oauth
    apply(world, oauth_yaml(url, "authorization_code"))
    name = world.connect("books", push=False)
    # no consent yet: the run fails with what to do
    with pytest.raises(AuthFailed) as exc:
        world.run(name, raise_fatal=True)
    assert "mno connector auth" in (exc.value.hint or "")
    consent = cli("connector", "auth", name, "-o", "json")
    assert consent.exit_code == 0, consent.stderr
    assert "/oauth/authorize?" in consent.stdout and "client_id=cid" in consent.stdout
    bad = cli("connector", "auth", name, "--code", "wrong")
    assert bad.exit_code == 1 and "refused the authorization code" in bad.stderr
    ok = cli("connector", "auth", name, "--code", "good-code", "-o", "json")
    assert ok.exit_code == 0, ok.stderr
    assert "at-1" not in ok.stdout and "rt-1" not in ok.stdout
    assert secrets.get(f"{PREFIX}.access_token") == "at-1"
    assert secrets.get(f"{PREFIX}.refresh_token") == "rt-1"
    assert state.grants == ["authorization_code", "authorization_code"]  # wrong, good
    assert json.loads(ok.stdout)["secrets"] == [
        f"{PREFIX}.access_token",
        f"{PREFIX}.refresh_token",
        f"{PREFIX}.expires_at",
    ]
    assert "connection.authorized" in store_text(world.url)  # its event, names only
    state.grants.clear()
    run = world.run(name)
    assert run.status == "success", run.error
    assert state.grants == []
    # near expiry: refreshed before the request, the rotated refresh token stored
    secrets.set(f"{PREFIX}.expires_at", str(int(time.time()) + 30))
    assert world.run(name).status == "success"
    assert state.grants == ["refresh_token"]
    assert state.unauthorized == 0
    assert secrets.get(f"{PREFIX}.access_token") == "at-2"
    assert secrets.get(f"{PREFIX}.refresh_token") == "rt-2"
    # the API revokes the token early: one 401, one refresh, the request retried
    state.valid.clear()
    calls = state.api_calls
    run = world.run(name)
    assert run.status == "success", run.error
    assert state.unauthorized == 1 and state.api_calls == calls + 2
    assert state.grants[-1] == "refresh_token"
    assert secrets.get(f"{PREFIX}.access_token") == "at-3"
    # refused again after the refresh: the run fails, no loop of refreshes
    state.valid.clear()
    state.refresh = "revoked"
    grants = len(state.grants)
    with pytest.raises(AuthFailed):
        world.run(name, raise_fatal=True)
    assert len(state.grants) == grants + 1
    text = store_text(world.url)
    for token in (*state.issued, "rt-1", "rt-2", "rt-3", "csecret"):
        assert token not in text


@pytest.mark.parametrize("where", ["header", "query"])
def test_api_key_in_header_or_query(world: Any, oauth: Any, monkeypatch: Any, where: str) -> None:
    from mno.sync import spec
    from mno.sync.rest import AuthFailed, HttpError, RestClient

    state, url = oauth
    monkeypatch.setenv("MNO_SECRET_BOOKS_KEY", "k3y")
    place = "header: X-Api-Key" if where == "header" else "query: api_key"
    doc = spec.parse(
        f"""name: books
app: books
base_url: {url}
auth:
  type: api_key
  {place}
  value: secret:BOOKS_KEY
entities:
  - canonical: invoice
    list: {{path: /api/keyed, params: {{status: open}}}}
    records: data
    mapping: {{number: number}}
"""
    )
    with RestClient(doc) as client:
        body, _ = client.get_json("/api/keyed")
    assert len(body["data"]) == 5
    assert state.keys == [(where, "k3y")]
    monkeypatch.setenv("MNO_SECRET_BOOKS_KEY", "wrong")
    with RestClient(doc) as client, pytest.raises(AuthFailed) as exc:
        client.get_json("/api/keyed")
    assert "wrong" not in str(exc.value)  # the query string never reaches a message
    assert isinstance(exc.value, HttpError)


def test_auth_spec_errors() -> None:
    from mno.errors import BadInput
    from mno.sync import spec

    base = (
        "name: x\napp: a\nbase_url: http://h\n"
        "entities: [{canonical: c, list: {path: /c}, mapping: {}}]\n"
    )
    with pytest.raises(BadInput, match="api_key needs exactly one of header or query"):
        spec.parse(base + "auth: {type: api_key, value: secret:K}")
    with pytest.raises(BadInput, match="oauth2 needs token_url"):
        spec.parse(base + "auth: {type: oauth2, client_id: c, client_secret: secret:S}")
    with pytest.raises(BadInput, match="secret reference"):
        spec.parse(
            base + "auth: {type: oauth2, token_url: http://h/t, client_id: c, client_secret: s}"
        )
