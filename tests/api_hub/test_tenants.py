"""Hub API tenants: create, update with ETag/If-Match, status changes, hierarchy, lists."""

from __future__ import annotations

import httpx

from tests.api_hub.conftest import both_stores


def test_the_operator_creates_a_tenant(hub, world, session):
    op = hub.as_(world["op"])
    r = op.post(
        "/v1/hub/tenants", json={"key": "initech", "name": "Initech", "domains": ["ini.io"]}
    )
    assert r.status_code == 201, r.text
    assert r.headers["location"] == "/v1/hub/tenants/initech"
    body = r.json()
    assert body["key"] == "initech"
    assert body["status"] == "pending_provision"
    assert body["parent"] == "system"
    assert body["domains"] == ["ini.io"]
    assert op.get("/v1/hub/tenants/initech").json() == body
    # the same rules and messages as the CLI
    r = op.post("/v1/hub/tenants", json={"key": "initech"})
    assert r.status_code == 409
    assert r.json()["detail"] == "tenant initech already exists"
    r = op.post("/v1/hub/tenants", json={"key": "Bad Key!"})
    assert r.status_code == 422
    r = op.post("/v1/hub/tenants", json={"key": "x1", "unknown": 1})
    assert r.status_code == 422


def test_only_an_operator_creates_a_top_level_tenant(hub, world):
    owner = hub.as_(world["owner"])
    r = owner.post("/v1/hub/tenants", json={"key": "rogue"})
    assert r.status_code == 403
    op = hub.as_(world["op"])
    assert op.get("/v1/hub/tenants/rogue").status_code == 404


def test_a_super_admin_creates_a_child_and_manages_it(hub, world):
    owner = hub.as_(world["owner"])
    r = owner.post("/v1/hub/tenants", json={"key": "acme-eu", "parent": "acme"})
    assert r.status_code == 201, r.text
    assert r.json()["parent"] == "acme"
    assert owner.get("/v1/hub/tenants/acme-eu").status_code == 200
    children = owner.get("/v1/hub/tenants/acme/children").json()["tenants"]
    assert [c["key"] for c in children] == ["acme-eu"]
    # not under a tenant the caller cannot see, nor one where their role falls short
    assert owner.post("/v1/hub/tenants", json={"key": "g2", "parent": "globex"}).status_code == 404
    carol = hub.as_(world["carol"])
    assert carol.get("/v1/hub/tenants/acme/children").status_code == 404
    assert carol.get("/v1/hub/tenants/acme-eu").status_code == 404


@both_stores
def test_patch_with_a_stale_etag_is_refused(hub, world):
    owner = hub.as_(world["owner"])
    first = owner.get("/v1/hub/tenants/acme")
    etag = first.headers["etag"]
    r = owner.patch(
        "/v1/hub/tenants/acme",
        json={"name": "Acme One", "city": "Paris"},
        headers={"If-Match": etag},
    )
    assert r.status_code == 200, r.text
    assert r.json()["name"] == "Acme One"
    new_etag = r.headers["etag"]
    assert new_etag != etag
    assert owner.get("/v1/hub/tenants/acme").headers["etag"] == new_etag
    # a second writer still holding the first ETag loses: 412, nothing written
    r = owner.patch("/v1/hub/tenants/acme", json={"name": "Lost"}, headers={"If-Match": etag})
    assert r.status_code == 412
    assert r.headers["content-type"] == "application/problem+json"
    assert owner.get("/v1/hub/tenants/acme").json()["name"] == "Acme One"
    # without If-Match the write goes through (last write wins)
    r = owner.patch("/v1/hub/tenants/acme", json={"name": "Acme Two"})
    assert r.status_code == 200
    r = owner.patch("/v1/hub/tenants/acme", json={"tier": "nope"})
    assert r.status_code == 422


def test_status_transitions_go_through_the_state_machine(hub, world, session):
    from mno.store.models.tenancy import TenantStatusChange

    op = hub.as_(world["op"])
    r = op.post("/v1/hub/tenants/acme/suspend", json={})
    assert r.status_code == 422
    r = op.post("/v1/hub/tenants/acme/suspend", json={"reason": "arrears"})
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "suspended"
    assert r.json()["status_reason"] == "arrears"
    r = op.post("/v1/hub/tenants/acme/suspend", json={"reason": "again"})
    assert r.status_code == 409
    assert r.json()["detail"] == "tenant acme cannot go from suspended to suspended"
    assert op.post("/v1/hub/tenants/acme/resume").json()["status"] == "active"
    assert op.post("/v1/hub/tenants/acme/archive").json()["status"] == "offboarded"
    with session() as s:
        from sqlmodel import select

        changes = [c.to_status for c in s.exec(select(TenantStatusChange))]
    assert changes == ["suspended", "active", "offboarding", "offboarded"]
    r = op.post("/v1/hub/tenants", json={"key": "fresh"})
    assert op.post("/v1/hub/tenants/fresh/provision").json()["status"] == "active"


def _keys(client: httpx.Client, url: str) -> list[str]:
    """Every key of a list, following the Link header."""
    seen: list[str] = []
    while url:
        r = client.get(url)
        assert r.status_code == 200, r.text
        seen += [t["key"] for t in r.json()["tenants"]]
        link = r.headers.get("link")
        url = link[1 : link.index(">")] if link else ""
    return seen


@both_stores
def test_pages_follow_link_and_stay_stable_under_inserts(hub, world, session):
    from mno.tenancy import tenants

    with session() as s:
        for i in range(1, 8):
            tenants.create(s, f"t{i:02d}", name=f"T {i}")
    op = hub.as_(world["op"])
    r = op.get("/v1/hub/tenants", params={"limit": 3})
    first = [t["key"] for t in r.json()["tenants"]]
    assert first == ["acme", "globex", "t01"]
    assert r.json()["next"] == "t01"
    assert r.headers["link"].endswith('>; rel="next"')
    next_url = r.headers["link"][1 : r.headers["link"].index(">")]
    # tenants inserted before and after the cursor meanwhile
    with session() as s:
        tenants.create(s, "aaa", name="Early")
        tenants.create(s, "t05b", name="Late")
    rest = _keys(op, next_url)
    assert rest == ["t02", "t03", "t04", "t05", "t05b", "t06", "t07"]
    assert not set(first) & set(rest)
    everything = _keys(op, "/v1/hub/tenants?limit=4")
    assert everything == sorted(everything)
    assert len(everything) == 11


def test_lists_filter_and_sort(hub, world, session):
    from mno.tenancy import tenants

    with session() as s:
        tenants.create(s, "acme-lab", name="Acme Lab")
        tenants.create(s, "zeta", name="Acme_Zeta")
    op = hub.as_(world["op"])
    by_prefix = _keys(op, "/v1/hub/tenants?name_prefix=Acme&limit=2")
    assert by_prefix == ["acme", "acme-lab", "zeta"]
    assert _keys(op, "/v1/hub/tenants?name_prefix=Acme_") == ["zeta"]
    assert _keys(op, "/v1/hub/tenants?sort=-key&limit=2") == ["zeta", "globex", "acme-lab", "acme"]
    assert _keys(op, "/v1/hub/tenants?sort=name&limit=1") == ["acme", "acme-lab", "zeta", "globex"]
    assert _keys(op, "/v1/hub/tenants?status=pending_provision") == ["acme-lab", "zeta"]
    assert op.get("/v1/hub/tenants?status=bogus").status_code == 422
    assert op.get("/v1/hub/tenants?sort=bogus").status_code == 422
    assert op.get("/v1/hub/tenants?cursor=%25zz").status_code == 422
    assert op.get("/v1/hub/tenants?whatever=1").status_code == 422


def test_contacts(hub, world):
    owner = hub.as_(world["owner"])
    body = {"name": "Ann", "email": "ann@acme.example", "type": "billing"}
    r = owner.post("/v1/hub/tenants/acme/contacts", json=body)
    assert r.status_code == 201, r.text
    assert r.json() == body | {"primary": r.json()["primary"]}
    bob = hub.as_(world["bob"])
    assert [c["email"] for c in bob.get("/v1/hub/tenants/acme/contacts").json()["contacts"]] == [
        "ann@acme.example"
    ]
    assert bob.post("/v1/hub/tenants/acme/contacts", json=body).status_code == 403
    r = owner.post("/v1/hub/tenants/acme/contacts", json=body | {"type": "boss"})
    assert r.status_code == 422
    assert hub.as_(world["carol"]).get("/v1/hub/tenants/acme/contacts").status_code == 404
    assert owner.delete("/v1/hub/tenants/acme/contacts/ann@acme.example").status_code == 204
    assert bob.get("/v1/hub/tenants/acme/contacts").json()["contacts"] == []


@both_stores
def test_concurrent_patches_with_one_etag_make_one_change(hub, world):
    from concurrent.futures import ThreadPoolExecutor

    etag = hub.as_(world["owner"]).get("/v1/hub/tenants/acme").headers["etag"]

    def patch(i: int) -> int:
        with hub.as_(world["owner"]) as c:
            r = c.patch(
                "/v1/hub/tenants/acme", json={"name": f"Acme {i}"}, headers={"If-Match": etag}
            )
            return r.status_code

    with ThreadPoolExecutor(6) as pool:
        codes = sorted(pool.map(patch, range(6)))
    assert codes == [200, 412, 412, 412, 412, 412]
