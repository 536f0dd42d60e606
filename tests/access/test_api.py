"""The hub API against a real uvicorn server on 127.0.0.1 (SQLite and PostgreSQL)."""

from __future__ import annotations

import json

import httpx
import pytest

from mno.access import keys, tokens, users
from tests.access.conftest import basic


@pytest.fixture
def bob_token(session, acme):
    with session() as s:
        return tokens.create(s, "bob@acme.io", ttl="1h").secret


def _authorize(api, app_key, **body):
    return httpx.post(
        f"{api}/v1/idm/authorize", json=body, headers=basic(app_key["key_id"], app_key["secret"])
    )


def test_bad_credentials_get_401(api, app_key):
    url = f"{api}/v1/idm/authorize"
    body = {"token": "x", "tenant": "acme", "action": "read"}
    for headers in (
        {},
        basic(app_key["key_id"], "wrong"),
        basic("mnoak_nope", "s"),
        {"Authorization": "Basic !!!"},
        {"Authorization": "Bearer x"},
    ):
        r = httpx.post(url, json=body, headers=headers)
        assert r.status_code == 401, headers
        assert r.json()["error"]["code"] == "unauthorized"
        assert r.headers["www-authenticate"].startswith("Basic")
    r = httpx.get(f"{api}/v1/dev/customers", headers=basic(app_key["key_id"], "wrong"))
    assert r.status_code == 401


def test_authorize_answers_and_revocation_is_not_cached(
    api, app_key, bob_token, session, api_profile
):
    r = _authorize(api, app_key, token=bob_token, tenant="acme", action="read")
    assert r.status_code == 200
    assert r.json() == {
        "allowed": True,
        "reason": "bob@acme.io is member in acme",
        "user": "bob@acme.io",
        "role": "member",
    }
    denied = _authorize(api, app_key, token=bob_token, tenant="acme", action="manage_billing")
    assert denied.json()["allowed"] is False and denied.json()["role"] == "member"
    # cached now; revoking the token on this host must be seen at once
    assert _authorize(api, app_key, token=bob_token, tenant="acme", action="read").json()["allowed"]
    with session() as s:
        token_id = tokens.list_tokens(s, "bob@acme.io")[0]["id"]
        tokens.revoke(s, token_id)
    r = _authorize(api, app_key, token=bob_token, tenant="acme", action="read")
    assert r.json() == {
        "allowed": False,
        "reason": "the token is unknown, expired or revoked",
        "user": None,
        "role": None,
    }


def test_authorize_cache_sees_user_disable(api, app_key, bob_token, session):
    assert _authorize(api, app_key, token=bob_token, tenant="acme", action="read").json()["allowed"]
    with session() as s:
        users.set_status(s, "bob@acme.io", "disabled")
    r = _authorize(api, app_key, token=bob_token, tenant="acme", action="read").json()
    assert r["allowed"] is False and "disabled" in r["reason"]


def test_rotated_key_grace_and_retirement(api, app_key, bob_token, session):
    body = {"token": bob_token, "tenant": "acme", "action": "read"}
    for _ in range(2):  # the second answer comes from the cache
        assert _authorize(api, app_key, **body).status_code == 200
    with session() as s:
        new = keys.rotate(s, "crm", grace="0s")
    assert _authorize(api, app_key, **body).status_code == 401
    new_key = {"key_id": new.key.key_id, "secret": new.secret}
    assert _authorize(api, new_key, **body).status_code == 200


def test_validation_errors_and_limits(api, app_key, bob_token, api_profile):
    h = basic(app_key["key_id"], app_key["secret"])
    url = f"{api}/v1/idm/authorize"
    r = httpx.post(url, content=b"{not json", headers={**h, "Content-Type": "application/json"})
    assert r.status_code == 400 and r.json()["error"]["code"] == "bad_request"
    r = httpx.post(url, json={"token": "t", "tenant": "acme"}, headers=h)
    assert r.status_code == 422 and "action" in r.json()["error"]["message"]
    r = httpx.post(url, json={"token": "t", "tenant": "acme", "action": "fly"}, headers=h)
    assert r.status_code == 422
    r = httpx.post(url, json={"token": "t", "tenant": "acme", "action": "open"}, headers=h)
    assert r.status_code == 422 and "instance" in r.json()["error"]["message"]
    big = {"token": "t" * 100, "tenant": "acme", "action": "read", "pad": "x" * 70000}
    r = httpx.post(url, json=big, headers=h)
    assert r.status_code == 413 and r.json()["error"]["code"] == "too_large"
    r = httpx.get(f"{api}/v1/nothing", headers=h)
    assert r.status_code == 404 and r.json()["error"]["code"] == "not_found"


def test_rate_limit_answers_429_with_retry_after(api, app_key, bob_token, api_profile):
    api_profile(api={"rate_limit": 1, "rate_burst": 3})
    codes = []
    for _ in range(6):
        r = _authorize(api, app_key, token=bob_token, tenant="acme", action="read")
        codes.append(r.status_code)
        if r.status_code == 429:
            assert int(r.headers["retry-after"]) >= 1
            assert r.json()["error"]["code"] == "rate_limited"
    assert codes[:3] == [200, 200, 200] and 429 in codes


def test_customers_and_no_secret_in_responses(api, app_key, bob_token):
    h = basic(app_key["key_id"], app_key["secret"])
    r = httpx.get(f"{api}/v1/dev/customers", headers=h, params={"limit": 5})
    assert r.status_code == 200
    assert set(r.json()) == {"customers", "next"}
    seen = r.text + _authorize(api, app_key, token=bob_token, tenant="acme", action="read").text
    spec = httpx.get(f"{api}/openapi.json").text
    from mno.access.secrets import digest

    for secret in (app_key["secret"], bob_token):
        for text in (seen, spec):
            assert secret not in text and digest(secret) not in text


def test_openapi_document(api):
    spec = httpx.get(f"{api}/openapi.json").json()
    assert "/v1/idm/authorize" in spec["paths"]
    assert "/v1/dev/customers" in spec["paths"]
    responses = spec["paths"]["/v1/idm/authorize"]["post"]["responses"]
    assert {"200", "400", "401", "413", "422", "429"} <= set(responses)
    assert json.dumps(spec)


def test_agents_listener_mounts_the_api(api, app_key, bob_token):
    from mno.agents import http

    srv = http.serve_in_thread(None, "127.0.0.1", 0)
    try:
        port = srv.servers[0].sockets[0].getsockname()[1]
        base = f"http://127.0.0.1:{port}"
        r = _authorize(base, app_key, token=bob_token, tenant="acme", action="read")
        assert r.status_code == 200 and r.json()["allowed"] is True
        r = httpx.post(f"{base}/v1/idm/authorize", json={}, headers=basic("k", "s"))
        assert r.status_code == 401 and r.json()["error"]["code"] == "unauthorized"
    finally:
        srv.should_exit = True


def test_old_key_works_during_grace_then_stops_even_when_cached(api, app_key, bob_token, session):
    from datetime import timedelta

    from mno import clock

    clock.set_now(clock.now())
    with session() as s:
        keys.rotate(s, "crm", grace="1h")
    body = {"token": bob_token, "tenant": "acme", "action": "read"}
    for _ in range(2):
        assert _authorize(api, app_key, **body).status_code == 200
    clock.advance(timedelta(hours=1, seconds=1))
    assert _authorize(api, app_key, **body).status_code == 401


def test_nul_characters_are_rejected_not_a_500(api, app_key):
    h = {**basic(app_key["key_id"], app_key["secret"]), "Content-Type": "application/json"}
    r = httpx.post(
        f"{api}/v1/idm/authorize",
        headers=h,
        content=b'{"token": "t", "tenant": "a\\u0000", "action": "read"}',
    )
    assert r.status_code == 422 and "NUL" in r.json()["error"]["message"]
