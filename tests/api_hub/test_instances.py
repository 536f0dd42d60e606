"""Hub API instances: the desired state recorded and queued for the provisioner."""

from __future__ import annotations

import pytest
from sqlmodel import select

from mno.store.models.nex import Instance


@pytest.fixture
def wiki(session, world):
    from mno.tenancy import apps

    with session() as s:
        apps.create(s, "Wiki", code="wiki", stack="nex", access="any", image="wiki:1", port=8080)
    return "wiki"


def _row(session, name: str) -> Instance:
    with session() as s:
        found = s.exec(select(Instance).where(Instance.name == name)).one()
        s.expunge(found)
        return found


def test_create_then_start_stop_update_terminate(hub, world, wiki, session):
    admin = hub.as_(world["admin"])
    r = admin.post("/v1/hub/tenants/acme/instances", json={"app": "wiki", "name": "acme-wiki"})
    assert r.status_code == 201, r.text
    inst = r.json()
    assert (inst["tenant"], inst["app"], inst["status"], inst["desired"]) == (
        "acme",
        "wiki",
        "staged",
        "running",
    )
    assert r.headers["location"] == f"/v1/hub/instances/{inst['id']}"
    row = _row(session, "acme-wiki")
    assert row.work == "pending"  # queued for the provisioner
    bob = hub.as_(world["bob"])
    assert bob.get("/v1/hub/instances/acme-wiki").json()["id"] == inst["id"]
    listed = bob.get("/v1/hub/tenants/acme/instances").json()["instances"]
    assert [i["name"] for i in listed] == ["acme-wiki"]
    r = admin.post("/v1/hub/instances/acme-wiki/stop")
    assert r.status_code == 200, r.text
    assert r.json()["desired"] == "stopped"
    assert _row(session, "acme-wiki").spec_version > row.spec_version
    assert admin.post("/v1/hub/instances/acme-wiki/start").json()["desired"] == "running"
    etag = admin.get("/v1/hub/instances/acme-wiki").headers["etag"]
    r = admin.patch(
        "/v1/hub/instances/acme-wiki",
        json={"image": "wiki:2", "env": {"A": "1"}},
        headers={"If-Match": etag},
    )
    assert r.status_code == 200, r.text
    assert (r.json()["image"], r.json()["env"]) == ("wiki:2", {"A": "1"})
    assert r.headers["etag"] != etag
    r = admin.patch(
        "/v1/hub/instances/acme-wiki", json={"image": "wiki:3"}, headers={"If-Match": etag}
    )
    assert r.status_code == 412  # a lost update refused
    assert admin.get("/v1/hub/instances/acme-wiki").json()["image"] == "wiki:2"
    r = admin.post("/v1/hub/instances/acme-wiki/terminate", json={"purge_data": False})
    assert r.status_code == 200
    assert r.json()["desired"] == "terminated"
    r = admin.post("/v1/hub/instances/acme-wiki/start")
    assert r.status_code == 409


def test_instance_denials(hub, world, wiki, session):
    from mno.nex import instances

    with session() as s:
        instances.create(s, "globex", "wiki", name="globex-wiki")
    bob = hub.as_(world["bob"])
    assert bob.post("/v1/hub/tenants/acme/instances", json={"app": "wiki"}).status_code == 403
    assert bob.get("/v1/hub/instances/globex-wiki").status_code == 404
    owner = hub.as_(world["owner"])
    r = owner.post("/v1/hub/instances/globex-wiki/stop")
    assert r.status_code == 404
    assert r.json()["detail"] == owner.post("/v1/hub/instances/nope/stop").json()["detail"].replace(
        "nope", "globex-wiki"
    )
    assert _row(session, "globex-wiki").desired == "running"
    r = owner.post("/v1/hub/tenants/acme/instances", json={"app": "nope"})
    assert r.status_code == 404
