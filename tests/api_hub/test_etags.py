"""ETag/If-Match on member and webhook endpoint updates: a lost update is refused (412)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from tests.api_hub.conftest import both_stores

BOB = "/v1/hub/tenants/acme/members/bob@acme.io"


@both_stores
def test_a_member_patch_with_a_stale_etag_is_refused(hub, world):
    admin = hub.as_(world["owner"])
    first = admin.get(BOB)
    assert first.status_code == 200, first.text
    assert first.json()["role"] == "member"
    etag = first.headers["etag"]
    r = admin.patch(BOB, json={"role": "admin"}, headers={"If-Match": etag})
    assert r.status_code == 200, r.text
    assert r.json()["role"] == "admin"
    assert r.headers["etag"] != etag
    assert admin.get(BOB).headers["etag"] == r.headers["etag"]
    # a second writer still holding the first ETag loses: 412, nothing written
    r = admin.patch(BOB, json={"role": "member"}, headers={"If-Match": etag})
    assert r.status_code == 412
    assert r.headers["content-type"] == "application/problem+json"
    assert r.json()["detail"] == "member bob@acme.io changed since that ETag; read it again"
    assert admin.get(BOB).json()["role"] == "admin"
    # without If-Match the write goes through (last write wins)
    assert admin.patch(BOB, json={"role": "member"}).json()["role"] == "member"
    # the member's ETag is read with the same rules as the member list
    assert hub.as_(world["carol"]).get(BOB).status_code == 404
    assert admin.get("/v1/hub/tenants/acme/members/nobody@acme.io").status_code == 404


@both_stores
def test_concurrent_member_patches_with_one_etag_make_one_change(hub, world):
    etag = hub.as_(world["owner"]).get(BOB).headers["etag"]

    def patch(_: int) -> int:
        with hub.as_(world["owner"]) as c:
            return c.patch(BOB, json={"role": "admin"}, headers={"If-Match": etag}).status_code

    with ThreadPoolExecutor(5) as pool:
        codes = sorted(pool.map(patch, range(5)))
    assert codes == [200, 412, 412, 412, 412]


def _endpoint(client) -> str:
    body = {"url": "https://hooks.example.com/a", "tenant": "acme", "events": ["tenant.*"]}
    r = client.post("/v1/hub/webhooks", json=body)
    assert r.status_code == 201, r.text
    return f"/v1/hub/webhooks/{r.json()['id']}"


@both_stores
def test_a_webhook_patch_with_a_stale_etag_is_refused(hub, world):
    admin = hub.as_(world["admin"])
    path = _endpoint(admin)
    etag = admin.get(path).headers["etag"]
    r = admin.patch(path, json={"description": "billing"}, headers={"If-Match": etag})
    assert r.status_code == 200, r.text
    assert r.json()["description"] == "billing"
    assert r.headers["etag"] != etag
    assert admin.get(path).headers["etag"] == r.headers["etag"]
    r = admin.patch(path, json={"description": "lost"}, headers={"If-Match": etag})
    assert r.status_code == 412
    assert r.headers["content-type"] == "application/problem+json"
    assert admin.get(path).json()["description"] == "billing"
    r = admin.patch(path, json={"description": "x"}, headers={"If-Match": '"unknown"'})
    assert r.status_code == 412  # an unknown tag matches no version
    assert admin.patch(path, json={"description": "last"}).json()["description"] == "last"


@both_stores
def test_concurrent_webhook_patches_with_one_etag_make_one_change(hub, world):
    admin = hub.as_(world["admin"])
    path = _endpoint(admin)
    etag = admin.get(path).headers["etag"]

    def patch(i: int) -> int:
        with hub.as_(world["admin"]) as c:
            r = c.patch(path, json={"description": f"d{i}"}, headers={"If-Match": etag})
            return r.status_code

    with ThreadPoolExecutor(5) as pool:
        codes = sorted(pool.map(patch, range(5)))
    assert codes == [200, 412, 412, 412, 412]
