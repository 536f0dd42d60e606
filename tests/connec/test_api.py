"""The Connec API on a real uvicorn server on 127.0.0.1 (SQLite and PostgreSQL): writes
with versions, per-field errors, tenant isolation, app ids, batch, pages, history and
rollback."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.access.conftest import basic


@pytest.fixture
def store_url(sqlite_url: str) -> str:
    """HTTP behaviour on SQLite; the store-level tests run on both stores."""
    return sqlite_url


ACME_ORG = {"name": "Wayne Enterprises", "is_customer": True, "currency": "USD"}


def create(client: Any, entity: str, body: dict[str, Any]) -> dict[str, Any]:
    r = client("POST", f"/{entity}", json=body)
    assert r.status_code == 201, r.text
    return r.json()


def test_create_get_update_delete_with_versions(crm, books):
    rec = create(crm, "organizations", {"id": "crm-1", **ACME_ORG})
    assert rec["version"] == 1 and rec["app_id"] == "crm-1" and rec["data"] == ACME_ORG
    rid = rec["id"]
    r = crm("GET", f"/organizations/{rid}")
    assert r.status_code == 200 and r.headers["etag"] == '"1"'
    assert crm("GET", "/organizations/by-app-id/crm-1").json()["id"] == rid
    # books does not know crm's id, but sees the record
    assert books("GET", "/organizations/by-app-id/crm-1").status_code == 404
    assert books("GET", f"/organizations/{rid}").json()["app_id"] is None

    r = books(
        "PATCH",
        f"/organizations/{rid}",
        json={"email": "bw@wayne.com"},
        headers={"If-Match": '"1"'},
    )
    assert r.status_code == 200 and r.json()["version"] == 2
    assert r.json()["data"] == {**ACME_ORG, "email": "bw@wayne.com"}
    # a stale version is refused and nothing changes
    r = crm("PUT", f"/organizations/{rid}", json={"name": "Stale"}, headers={"If-Match": "1"})
    assert r.status_code == 412 and r.headers["content-type"] == "application/problem+json"
    assert crm("GET", f"/organizations/{rid}").json()["data"]["name"] == ACME_ORG["name"]
    r = crm("PUT", f"/organizations/{rid}", json={"name": "Wayne"}, headers={"If-Match": '"2"'})
    assert r.status_code == 200 and r.json()["data"] == {"name": "Wayne"}
    assert r.json()["app_id"] == "crm-1"
    # patch with null removes a field
    r = crm("PATCH", f"/organizations/{rid}", json={"phone": "+1 555", "name": "W"})
    r = crm("PATCH", f"/organizations/{rid}", json={"phone": None})
    assert r.json()["data"] == {"name": "W"} and r.json()["version"] == 5
    assert (
        crm("PATCH", f"/organizations/{rid}", json={}, headers={"If-Match": "x"}).status_code == 422
    )

    r = crm("DELETE", f"/organizations/{rid}", headers={"If-Match": '"5"'})
    assert r.status_code == 200 and r.json()["deleted_at"] is not None
    assert crm("GET", f"/organizations/{rid}").status_code == 404
    assert crm("PATCH", f"/organizations/{rid}", json={"name": "x"}).status_code == 404
    assert crm("GET", "/organizations").json()["records"] == []
    # the tombstone keeps the history
    changes = crm("GET", f"/organizations/{rid}/history").json()["changes"]
    assert [c["action"] for c in changes] == [
        "create",
        "update",
        "update",
        "update",
        "update",
        "delete",
    ]
    assert [c["source"] for c in changes][:2] == ["app:crm", "app:books"]
    assert changes[-1]["after"] is None and changes[-1]["before"] == {"name": "W"}


def test_invalid_records_list_every_field_and_write_nothing(crm):
    r = crm("POST", "/invoices", json={"currency": "usd", "total_amount": 10, "status": "?"})
    assert r.status_code == 422
    assert r.headers["content-type"] == "application/problem+json"
    body = r.json()
    assert {e["field"] for e in body["errors"]} == {
        "transaction_date",
        "currency",
        "total_amount",
        "status",
    }
    assert body["status"] == 422 and body["detail"].startswith("invalid invoices")
    assert crm("GET", "/invoices").json()["records"] == []
    assert crm("POST", "/nonsense", json={"a": 1}).status_code == 404
    assert crm("POST", "/invoices", json=[1]).status_code == 422
    r = crm("POST", "/organizations", json={"id": "dup", "name": "A"})
    assert r.status_code == 201
    assert crm("POST", "/organizations", json={"id": "dup", "name": "B"}).status_code == 409


def test_other_tenants_are_unreachable(api, apps_keys, crm, payroll):
    rec = create(crm, "organizations", {"id": "o1", **ACME_ORG})
    # payroll belongs to globex: acme is not its tenant, so acme does not exist for it
    as_payroll_on_acme = payroll.for_tenant("acme")
    for method, path, body in [
        ("GET", "/organizations", None),
        ("GET", f"/organizations/{rec['id']}", None),
        ("GET", "/organizations/by-app-id/o1", None),
        ("GET", f"/organizations/{rec['id']}/history", None),
        ("POST", "/organizations", {"name": "Intruder"}),
        ("PATCH", f"/organizations/{rec['id']}", {"name": "Hacked"}),
        ("DELETE", f"/organizations/{rec['id']}", None),
        (
            "POST",
            "/batch",
            {"operations": [{"op": "delete", "entity": "organizations", "id": rec["id"]}]},
        ),
        ("POST", f"/transactions/{rec['transaction_id']}/rollback", None),
    ]:
        r = as_payroll_on_acme(method, path, json=body)
        assert r.status_code == 404, (method, path, r.text)
        assert r.json()["detail"] == "no tenant acme"
    # an unknown tenant gets the same answer
    assert payroll.for_tenant("nope")("GET", "/organizations").json()["detail"] == "no tenant nope"
    # globex's own data is separate: payroll sees none of acme's records
    assert payroll("GET", "/organizations").json()["records"] == []
    assert payroll("GET", f"/organizations/{rec['id']}").status_code == 404
    # and crm's record in acme cannot be reached through globex either
    assert crm.for_tenant("globex")("GET", "/organizations").status_code == 404
    assert crm("GET", f"/organizations/{rec['id']}").json()["data"] == ACME_ORG
    # the tenant-level paths are no entities: other methods are 405 naming theirs
    r = crm("GET", "/batch")
    assert r.status_code == 405 and r.headers["allow"] == "POST"
    assert crm("POST", "/subscriptions/x").headers["allow"] == "DELETE"
    # bad credentials are 401
    r = httpx.get(f"{api}/v1/connec/acme/organizations", headers=basic("mnoak_x", "y"))
    assert r.status_code == 401
    assert httpx.get(f"{api}/v1/connec/acme/organizations").status_code == 401


def test_batch_reports_each_result(crm):
    org = create(crm, "organizations", {"id": "o1", "name": "Org"})
    ops = [
        {
            "op": "create",
            "entity": "people",
            "app_id": "p1",
            "data": {"last_name": "Doe", "organization_id": org["id"]},
        },
        {"op": "create", "entity": "people", "data": {"first_name": "No last name"}},
        {
            "op": "update",
            "entity": "organizations",
            "app_id": "o1",
            "version": 1,
            "data": {"name": "Org 2"},
        },
        {
            "op": "patch",
            "entity": "organizations",
            "id": org["id"],
            "version": 1,
            "data": {"name": "stale"},
        },
        {"op": "delete", "entity": "items", "id": "00000000-0000-0000-0000-000000000000"},
        {"op": "create", "entity": "people", "app_id": "p1", "data": {"last_name": "Twice"}},
        {"op": "explode", "entity": "people"},
    ]
    r = crm("POST", "/batch", json={"operations": ops})
    assert r.status_code == 200, r.text
    results = r.json()["results"]
    assert [x["status"] for x in results] == [201, 422, 200, 409, 404, 409, 422]
    assert results[1]["errors"] == [{"field": "last_name", "message": "is required"}]
    assert results[2]["record"]["version"] == 2
    tx = r.json()["transaction_id"]
    people = crm("GET", "/people").json()["records"]
    assert [p["app_id"] for p in people] == ["p1"]
    history = crm("GET", f"/people/{people[0]['id']}/history").json()["changes"]
    assert history[0]["transaction_id"] == tx
    too_many = {"operations": [{"op": "create", "entity": "items", "data": {"name": "x"}}] * 1001}
    assert crm("POST", "/batch", json=too_many).status_code == 422


def test_pages_filters_select_and_updated_since(crm):
    ops = [
        {
            "op": "create",
            "entity": "items",
            "data": {"name": f"item {i}", "code": f"c{i:02d}", "unit_price": f"{i}.50"},
        }
        for i in range(25)
    ]
    assert crm("POST", "/batch", json={"operations": ops}).status_code == 200
    seen: list[str] = []
    params: dict[str, Any] = {
        "$filter": "unit_price ge 10 and contains(name, 'ITEM')",
        "$select": "code",
        "limit": 4,
    }
    while True:
        r = crm("GET", "/items", params=params)
        assert r.status_code == 200
        page = r.json()
        seen.extend(rec["data"]["code"] for rec in page["records"])
        assert all(set(rec["data"]) == {"code"} for rec in page["records"])
        if not page["next"]:
            assert "link" not in r.headers
            break
        assert r.headers["link"].endswith('rel="next"')
        params["cursor"] = page["next"]
    assert sorted(seen) == [f"c{i:02d}" for i in range(10, 25)]
    r = crm("GET", "/items", params={"$orderby": "unit_price desc", "limit": 3})
    assert [x["data"]["code"] for x in r.json()["records"]] == ["c24", "c23", "c22"]
    last = r.json()["records"][0]["updated_at"]
    assert len(crm("GET", "/items", params={"updated_since": last}).json()["records"]) == 25
    assert (
        crm("GET", "/items", params={"updated_since": "2999-01-01T00:00:00Z"}).json()["records"]
        == []
    )
    naive = crm("GET", "/items", params={"updated_since": "2000-01-01T00:00:00"})
    assert naive.status_code == 200 and len(naive.json()["records"]) == 25
    r = crm("GET", "/items", params={"$filter": "unit_price gt 'x'"})
    assert r.status_code == 422 and "does not compare" in r.json()["detail"]
    assert crm("GET", "/items", params={"$orderby": "nope"}).status_code == 422
    assert crm("GET", "/items", params={"$select": "nope"}).status_code == 422


def test_rollback_with_the_sync_conflict_rules(crm, books):
    first = create(crm, "organizations", {"id": "o1", "name": "Before"})
    rid = first["id"]
    change = crm("PATCH", f"/organizations/{rid}", json={"name": "Changed by crm"}).json()
    # a later change by another app makes the rollback a conflict
    books("PATCH", f"/organizations/{rid}", json={"email": "b@b.io"})
    r = crm("POST", f"/transactions/{change['transaction_id']}/rollback")
    assert r.status_code == 409
    plan = r.json()["plan"]
    assert plan["refused"] and plan["conflicts"][0]["source"] == "app:books"
    assert crm("GET", f"/organizations/{rid}").json()["data"]["email"] == "b@b.io"
    dry = crm(
        "POST", f"/transactions/{change['transaction_id']}/rollback", params={"dry_run": "true"}
    ).json()
    assert dry["applied"] is False and dry["refused"] is True
    r = crm("POST", f"/transactions/{change['transaction_id']}/rollback", params={"force": "true"})
    assert r.status_code == 200 and r.json()["applied"] is True
    assert crm("GET", f"/organizations/{rid}").json()["data"] == {"name": "Before"}
    # rolling back the creation deletes the record
    r = crm("POST", f"/transactions/{first['transaction_id']}/rollback", params={"force": "true"})
    assert r.json()["records"][0]["restore"] == "delete"
    assert crm("GET", f"/organizations/{rid}").status_code == 404
    assert crm("POST", "/transactions/not-a-uuid/rollback").status_code == 404
    sources = [c["source"] for c in crm("GET", f"/organizations/{rid}/history").json()["changes"]]
    assert sources[-1] == f"rollback:{first['transaction_id']}"


def test_user_tokens_go_through_the_idm_check(api, crm, session):
    from mno.access import members, tokens, users

    with session() as s:
        members.add(s, "acme", "bob@acme.io", "member")
        members.add(s, "globex", "eve@globex.io", "member")
        bob = tokens.create(s, "bob@acme.io", ttl="1h").secret
        eve = tokens.create(s, "eve@globex.io", ttl="1h").secret

    def as_user(token: str, method: str, path: str, **kw: Any) -> httpx.Response:
        headers = {"Authorization": f"Bearer {token}"}
        return httpx.request(method, f"{api}/v1/connec{path}", headers=headers, **kw)

    made = create(crm, "items", {"name": "Widget"})
    r = as_user(bob, "GET", "/acme/items")
    assert r.status_code == 200 and [x["id"] for x in r.json()["records"]] == [made["id"]]
    r = as_user(bob, "PATCH", f"/acme/items/{made['id']}", json={"code": "W-1"})
    assert r.status_code == 200
    history = crm("GET", f"/items/{made['id']}/history").json()["changes"]
    assert history[-1]["source"] == "user:bob@acme.io"
    # eve is no member of acme: acme does not exist for her
    assert as_user(eve, "GET", "/acme/items").status_code == 404
    assert as_user(eve, "GET", f"/acme/items/{made['id']}").status_code == 404
    assert as_user(eve, "GET", "/globex/items").json()["records"] == []
    assert as_user("mnopt_nope", "GET", "/acme/items").status_code == 401
    with session() as s:
        users.set_status(s, "bob@acme.io", "disabled")
    assert as_user(bob, "GET", "/acme/items").status_code == 404
