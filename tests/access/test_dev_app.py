"""PATCH /v1/dev/app: an app changes its listing for a tenant that holds edit access."""

from __future__ import annotations

import httpx

from mno.tenancy import apps, tenants
from tests.access.conftest import basic
from tests.conftest import counts


def test_edit_access_decides(api, app_key, session, store_url):
    with session() as s:
        tenants.create(s, "reader")
        tenants.create(s, "editor")
        tenants.create(s, "child", parent="acme")
        apps.update(s, "crm", access="any")
        apps.grant(s, "crm", "reader")
        apps.grant(s, "crm", "editor", can_edit=True, by="acme")
    h = basic(app_key["key_id"], app_key["secret"])
    url = f"{api}/v1/dev/app"
    before = counts(store_url)
    # a read-only grant, and access: any alone, are not enough
    for tenant in ("reader", "child"):
        r = httpx.patch(url, json={"tenant": tenant, "name": "Nope"}, headers=h)
        assert r.status_code == 403, r.text
        assert "may not change crm" in r.json()["detail"]
    r = httpx.patch(url, json={"tenant": "ghost", "name": "Nope"}, headers=h)
    assert r.status_code == 404
    r = httpx.patch(
        url, json={"tenant": "editor", "thumbnail": "http://x.example.com/a.png"}, headers=h
    )
    assert r.status_code == 422
    r = httpx.patch(url, json={"tenant": "editor", "owner": "editor"}, headers=h)
    assert r.status_code == 422
    assert counts(store_url) == before

    r = httpx.patch(
        url,
        json={
            "tenant": "editor",
            "name": "CRM Plus",
            "thumbnail": "https://cdn.example.com/crm.png",
            "metadata": {"category": "sales"},
        },
        headers=h,
    )
    assert r.status_code == 200, r.text
    body = r.json()
    assert (body["name"], body["owner"], body["thumbnail"]) == (
        "CRM Plus",
        "acme",
        "https://cdn.example.com/crm.png",
    )
    assert body["metadata"] == {"category": "sales"} and body["updated_at"].endswith("Z")
    # the owner edits too
    r = httpx.patch(url, json={"tenant": "acme", "thumbnail": ""}, headers=h)
    assert r.status_code == 200 and r.json()["thumbnail"] is None
    with session(write=False) as s:
        assert apps.get(s, "crm").name == "CRM Plus"
