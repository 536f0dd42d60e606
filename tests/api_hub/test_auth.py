"""Hub API authentication, visibility (404), scopes and roles (403) on a live server."""

from __future__ import annotations

import json

import pytest

from mno.access import keys, tokens
from mno.errors import BadInput
from mno.tenancy import apps
from tests.access.conftest import basic
from tests.api_hub.conftest import bearer, both_stores


def test_missing_or_bad_credentials_are_401_with_a_challenge(hub, world, session):
    for headers in (
        {},
        {"Authorization": "Bearer nope"},
        {"Authorization": "Bearer mnout_" + "x" * 40},
        {"Authorization": "Token abc"},
        basic("mnoak_nope", "s"),
    ):
        r = hub.client.get("/v1/hub/tenants/acme", headers=headers)
        assert r.status_code == 401, headers
        assert r.headers["content-type"] == "application/problem+json"
        assert r.json()["error"]["code"] == "unauthorized"
        assert "Bearer" in r.headers["www-authenticate"]
    with session() as s:
        tid = next(t["id"] for t in tokens.list_tokens(s, "bob@acme.io"))
        tokens.revoke(s, tid)
    r = hub.client.get("/v1/hub/tenants/acme", headers=bearer(world["bob"]))
    assert r.status_code == 401


@both_stores
def test_a_member_sees_their_tenant_and_not_another(hub, world):
    bob = hub.as_(world["bob"])
    r = bob.get("/v1/hub/tenants/acme")
    assert r.status_code == 200
    assert r.json()["key"] == "acme"
    assert r.headers["etag"].startswith('"')
    hidden = bob.get("/v1/hub/tenants/globex")
    missing = bob.get("/v1/hub/tenants/no-such")
    assert hidden.status_code == missing.status_code == 404
    assert hidden.json()["detail"] == "tenant globex not found"
    assert missing.json()["detail"] == "tenant no-such not found"
    assert set(hidden.headers) - {"date", "content-length"} == set(missing.headers) - {
        "date",
        "content-length",
    }
    listed = bob.get("/v1/hub/tenants").json()["tenants"]
    assert [t["key"] for t in listed] == ["acme"]
    # nor through a write or a transition, even holding the scopes those need
    owner = hub.as_(world["owner"])
    assert owner.patch("/v1/hub/tenants/globex", json={"name": "X"}).status_code == 404
    assert owner.post("/v1/hub/tenants/globex/resume").status_code == 404
    assert owner.get("/v1/hub/tenants/globex/children").status_code == 404
    # a token without the scope is refused alike for a hidden and a missing tenant
    a = bob.patch("/v1/hub/tenants/globex", json={"name": "X"})
    b = bob.patch("/v1/hub/tenants/no-such", json={"name": "X"})
    assert a.status_code == b.status_code == 403
    # the same problem body but for the request's own id
    assert {**a.json(), "request_id": None} == {**b.json(), "request_id": None}


def test_roles_are_enforced_with_the_cli_reason(hub, world, session):
    from mno.access import members

    bob = hub.as_(world["bob"])
    r = bob.patch("/v1/hub/tenants/acme", json={"name": "Bob Corp"})
    assert r.status_code == 403  # a member's token does not even carry tenants:write
    admin = hub.as_(world["admin"])
    assert admin.patch("/v1/hub/tenants/acme", json={"name": "X"}).status_code == 403
    # the scope held (super_admin of acme) does not lift the role in another tenant
    with session() as s:
        members.add(s, "globex", "owner@acme.io", "member")
    owner = hub.as_(world["owner"])
    r = owner.patch("/v1/hub/tenants/globex", json={"name": "Owned"})
    assert r.status_code == 403
    assert (
        r.json()["detail"] == "update_tenant needs super_admin; owner@acme.io is member in globex"
    )
    assert owner.get("/v1/hub/tenants/globex").json()["name"] == "Globex"
    r = owner.patch("/v1/hub/tenants/acme", json={"name": "Acme Two"})
    assert r.status_code == 200
    assert r.json()["name"] == "Acme Two"
    # status changes are the platform's: a tenant's own super_admin may not suspend it
    r = owner.post("/v1/hub/tenants/acme/suspend", json={"reason": "x"})
    assert r.status_code == 403
    assert owner.get("/v1/hub/tenants/acme").json()["status"] == "active"


def test_the_operator_sees_every_tenant(hub, world):
    op = hub.as_(world["op"])
    keys_seen = [t["key"] for t in op.get("/v1/hub/tenants").json()["tenants"]]
    assert keys_seen == ["acme", "globex"]
    assert op.get("/v1/hub/tenants/globex").status_code == 200


def test_scopes_bound_a_token(hub, world, token):
    read_only = hub.as_(token("owner@acme.io", "tenants:read"))
    assert read_only.get("/v1/hub/tenants/acme").status_code == 200
    r = read_only.patch("/v1/hub/tenants/acme", json={"name": "Nope"})
    assert r.status_code == 403
    assert r.json()["detail"] == "this credential lacks the scope tenants:write"
    r = read_only.get("/v1/hub/events")
    assert r.status_code == 403
    events_only = hub.as_(token("owner@acme.io", "events:read"))
    assert events_only.get("/v1/hub/tenants").status_code == 403
    assert events_only.get("/v1/hub/events").status_code == 200


def test_token_scopes_default_to_the_roles_and_cannot_exceed_them(session, world):
    with session() as s:
        bob = tokens.create(s, "bob@acme.io", ttl="1h")
        owner = tokens.create(s, "owner@acme.io", ttl="1h")
    assert "tenants:write" not in bob.view["scopes"]
    assert "tenants:read" in bob.view["scopes"]
    assert {"tenants:write", "billing:write", "access:write"} <= set(owner.view["scopes"])
    with pytest.raises(BadInput, match="scope tenants:write is beyond the roles of bob@acme.io"):
        with session() as s:
            tokens.create(s, "bob@acme.io", ttl="1h", scopes=["tenants:write"])
    with pytest.raises(BadInput, match="unknown scope"):
        with session() as s:
            tokens.create(s, "owner@acme.io", ttl="1h", scopes=["tenants:fly"])


def test_token_create_takes_scopes_on_the_cli(cli, world):
    r = cli("user", "token", "create", "owner@acme.io", "--scope", "tenants:read", "-o", "json")
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)["scopes"] == ["tenants:read"]
    r = cli("user", "token", "create", "bob@acme.io", "--scope", "billing:write")
    assert r.exit_code == 2
    assert "beyond the roles" in r.output


def test_an_app_key_reads_its_owner_and_customers_only(hub, world, session):
    with session() as s:
        apps.create(s, "CRM", code="crm", owner="acme", if_not_exists=True)
        issued = keys.rotate(s, "crm")
    headers = basic(issued.key.key_id, issued.secret)
    r = hub.client.get("/v1/hub/tenants/acme", headers=headers)
    assert r.status_code == 200
    assert hub.client.get("/v1/hub/tenants/globex", headers=headers).status_code == 404
    listed = hub.client.get("/v1/hub/tenants", headers=headers).json()["tenants"]
    assert [t["key"] for t in listed] == ["acme"]
    r = hub.client.patch("/v1/hub/tenants/acme", json={"name": "X"}, headers=headers)
    assert r.status_code == 403
    bad = basic(issued.key.key_id, "bad")
    assert hub.client.get("/v1/hub/tenants/acme", headers=bad).status_code == 401


def test_a_token_has_its_own_rate_limit(hub, world, api_profile):
    api_profile(api={"rate_limit": 1, "rate_burst": 2})
    bob = hub.as_(world["bob"])
    answers = [bob.get("/v1/hub/tenants/acme") for _ in range(6)]
    assert [r.status_code for r in answers[:2]] == [200, 200]
    limited = [r for r in answers if r.status_code == 429]
    assert limited
    assert int(limited[0].headers["retry-after"]) >= 1
    assert limited[0].json()["error"]["code"] == "rate_limited"
    # another token's bucket is its own
    assert hub.as_(world["owner"]).get("/v1/hub/tenants/acme").status_code == 200
