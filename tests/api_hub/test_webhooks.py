"""Hub API webhook endpoints: a tenant's admins manage theirs, operators the platform's."""

from __future__ import annotations

from sqlmodel import select

from mno.store.models.hub import IdempotencyKey
from mno.store.models.webhooks import WebhookEndpoint


def test_a_tenant_admin_manages_their_endpoints(hub, world, session):
    admin = hub.as_(world["admin"])
    headers = {"Idempotency-Key": "hook-1"}
    body = {"url": "https://hooks.example.com/a", "tenant": "acme", "events": ["tenant.*"]}
    r = admin.post("/v1/hub/webhooks", json=body, headers=headers)
    assert r.status_code == 201, r.text
    created = r.json()
    assert created["tenant"] == "acme"
    assert created["secret"].startswith("whsec_")
    again = admin.post("/v1/hub/webhooks", json=body, headers=headers)
    assert again.json() == created | {"secret": None}
    with session() as s:
        assert len(s.exec(select(WebhookEndpoint)).all()) == 1
        assert all(created["secret"] not in b for b in s.exec(select(IdempotencyKey.body)))
    eid = created["id"]
    shown = admin.get(f"/v1/hub/webhooks/{eid}").json()
    assert "secret" not in shown
    listed = admin.get("/v1/hub/webhooks", params={"tenant": "acme"}).json()["endpoints"]
    assert [e["id"] for e in listed] == [eid]
    assert listed[0]["tenant"] == "acme"
    r = admin.patch(f"/v1/hub/webhooks/{eid}", json={"events": ["invoice.issued"]})
    assert r.json()["events"] == ["invoice.issued"]
    r = admin.post(f"/v1/hub/webhooks/{eid}/disable", json={"reason": "maintenance"})
    assert (r.json()["status"], r.json()["disabled_reason"]) == ("disabled", "maintenance")
    assert admin.post(f"/v1/hub/webhooks/{eid}/enable").json()["status"] == "active"
    rotated = admin.post(f"/v1/hub/webhooks/{eid}/rotate-secret").json()
    assert rotated["secret"] not in (None, created["secret"])
    assert admin.delete(f"/v1/hub/webhooks/{eid}").status_code == 204
    assert admin.get(f"/v1/hub/webhooks/{eid}").status_code == 404


def test_webhook_denials(hub, world, session):
    op = hub.as_(world["op"])
    r = op.post("/v1/hub/webhooks", json={"url": "https://hooks.example.com/all"})
    assert r.status_code == 201, r.text
    platform_hook = r.json()["id"]
    r = op.post("/v1/hub/webhooks", json={"url": "https://hooks.example.com/g", "tenant": "globex"})
    globex_hook = r.json()["id"]
    admin = hub.as_(world["admin"])
    # platform endpoints and another tenant's are not even visible
    assert admin.get(f"/v1/hub/webhooks/{platform_hook}").status_code == 404
    assert admin.get(f"/v1/hub/webhooks/{globex_hook}").status_code == 404
    assert admin.delete(f"/v1/hub/webhooks/{globex_hook}").status_code == 404
    r = admin.post("/v1/hub/webhooks", json={"url": "https://h.example.com/x"})
    assert r.status_code == 403
    r = admin.post("/v1/hub/webhooks", json={"url": "https://h.example.com/x", "tenant": "globex"})
    assert r.status_code == 404
    assert admin.get("/v1/hub/webhooks").status_code == 403
    # a member's token carries no webhooks:write
    bob = hub.as_(world["bob"])
    r = bob.post("/v1/hub/webhooks", json={"url": "https://h.example.com/x", "tenant": "acme"})
    assert r.status_code == 403
    r = admin.post("/v1/hub/webhooks", json={"url": "ftp://x", "tenant": "acme"})
    assert r.status_code == 422
    every = op.get("/v1/hub/webhooks").json()["endpoints"]
    assert {e["id"] for e in every} == {platform_hook, globex_hook}
