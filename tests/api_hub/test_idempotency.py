"""Idempotency-Key on Hub API POSTs: a retry replays the first answer, once written."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from sqlmodel import func, select

from mno.store.models.core import Event
from mno.store.models.tenancy import Tenant
from tests.api_hub.conftest import both_stores


def _count_tenants(session, key: str) -> int:
    with session() as s:
        return s.exec(select(func.count()).select_from(Tenant).where(Tenant.key == key)).one()


def _created_events(session) -> int:
    with session() as s:
        return s.exec(
            select(func.count()).select_from(Event).where(Event.type == "tenant.created")
        ).one()


def test_a_retry_replays_the_first_response(hub, world, session):
    op = hub.as_(world["op"])
    before = _created_events(session)
    headers = {"Idempotency-Key": "create-initech-1"}
    first = op.post("/v1/hub/tenants", json={"key": "initech"}, headers=headers)
    assert first.status_code == 201
    assert "idempotent-replayed" not in first.headers
    again = op.post("/v1/hub/tenants", json={"key": "initech"}, headers=headers)
    assert again.status_code == 201
    assert again.headers["idempotent-replayed"] == "true"
    assert again.json() == first.json()
    assert again.headers["location"] == first.headers["location"]
    assert _count_tenants(session, "initech") == 1
    assert _created_events(session) == before + 1
    # the body compared by value: another spacing of the same JSON is the same request
    same = op.post(
        "/v1/hub/tenants",
        content=b'{ "key" : "initech" }',
        headers=headers | {"Content-Type": "application/json"},
    )
    assert same.status_code == 201
    assert same.headers["idempotent-replayed"] == "true"


def test_the_same_key_with_another_body_is_refused(hub, world, session):
    op = hub.as_(world["op"])
    headers = {"Idempotency-Key": "k-1"}
    assert op.post("/v1/hub/tenants", json={"key": "one"}, headers=headers).status_code == 201
    r = op.post("/v1/hub/tenants", json={"key": "two"}, headers=headers)
    assert r.status_code == 422
    assert r.headers["content-type"] == "application/problem+json"
    assert r.json()["error"]["code"] == "idempotency_key_reused"
    assert _count_tenants(session, "two") == 0
    # another path under the same key is another request too
    r = op.post("/v1/hub/tenants/acme/suspend", json={"reason": "x"}, headers=headers)
    assert r.status_code == 422


def test_keys_belong_to_their_credential(hub, world, token, session):
    op = hub.as_(world["op"])
    other = hub.as_(token("op@platform.io"))
    headers = {"Idempotency-Key": "shared-name"}
    assert op.post("/v1/hub/tenants", json={"key": "one"}, headers=headers).status_code == 201
    r = other.post("/v1/hub/tenants", json={"key": "uno"}, headers=headers)
    assert r.status_code == 201
    assert "idempotent-replayed" not in r.headers


def test_a_refused_request_keeps_no_answer(hub, world, session):
    op = hub.as_(world["op"])
    headers = {"Idempotency-Key": "try-1"}
    r = op.post("/v1/hub/tenants", json={"key": "acme"}, headers=headers)
    assert r.status_code == 409
    r = op.post("/v1/hub/tenants", json={"key": "acme"}, headers=headers)
    assert r.status_code == 409
    assert "idempotent-replayed" not in r.headers


def test_transitions_replay_too(hub, world):
    op = hub.as_(world["op"])
    headers = {"Idempotency-Key": "suspend-acme"}
    body = {"reason": "arrears"}
    first = op.post("/v1/hub/tenants/acme/suspend", json=body, headers=headers)
    assert first.status_code == 200
    again = op.post("/v1/hub/tenants/acme/suspend", json=body, headers=headers)
    assert again.status_code == 200  # not 409: the first answer, replayed
    assert again.headers["idempotent-replayed"] == "true"
    assert again.json() == first.json()


@both_stores
def test_concurrent_requests_with_one_key_make_one_tenant(hub, world, session):
    before = _created_events(session)

    def post(_: int) -> tuple[int, str, bool]:
        with hub.as_(world["op"]) as c:
            r = c.post(
                "/v1/hub/tenants",
                json={"key": "racer", "name": "Racer"},
                headers={"Idempotency-Key": "race-1"},
            )
            return r.status_code, r.json()["id"], "idempotent-replayed" in r.headers

    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(post, range(8)))
    assert {status for status, _, _ in results} == {201}
    assert len({tid for _, tid, _ in results}) == 1
    assert sum(1 for *_, replayed in results if not replayed) == 1
    assert _count_tenants(session, "racer") == 1
    assert _created_events(session) == before + 1
