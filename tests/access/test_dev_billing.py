"""Developer API bills and usage (needs the billing package); real uvicorn on loopback."""

from __future__ import annotations

import json

import httpx
import pytest

from tests.access.conftest import basic

pytest.importorskip("mno.billing.charges")
pytest.importorskip("mno.billing.usage")


@pytest.fixture
def other_key(session):
    from mno.access import keys
    from mno.tenancy import apps

    with session() as s:
        apps.create(s, "Other", code="other", owner="acme", if_not_exists=True)
        issued = keys.rotate(s, "other")
    return basic(issued.key.key_id, issued.secret)


def test_bills_idempotent_scoped_and_cancellable(api, app_key, other_key, acme):
    h = basic(app_key["key_id"], app_key["secret"])
    body = {"tenant": "acme", "amount": "12.50", "currency": "USD", "description": "Setup"}
    first = httpx.post(f"{api}/v1/dev/bills", json=body, headers={**h, "Idempotency-Key": "k1"})
    assert first.status_code == 201, first.text
    bill = first.json()
    assert bill["amount"] == {"amount": "12.50", "currency": "USD"} and bill["app"] == "crm"
    again = httpx.post(f"{api}/v1/dev/bills", json=body, headers={**h, "Idempotency-Key": "k1"})
    assert again.status_code == 200 and again.json()["id"] == bill["id"]
    got = httpx.get(f"{api}/v1/dev/bills/{bill['id']}", headers=h)
    assert got.status_code == 200 and got.json()["id"] == bill["id"]
    foreign = httpx.get(f"{api}/v1/dev/bills/{bill['id']}", headers=other_key)
    assert foreign.status_code in (403, 404)
    assert httpx.delete(f"{api}/v1/dev/bills/{bill['id']}", headers=other_key).status_code in (
        403,
        404,
    )
    cancelled = httpx.delete(f"{api}/v1/dev/bills/{bill['id']}", headers=h)
    assert cancelled.status_code == 200, cancelled.text
    assert app_key["secret"] not in first.text + got.text + cancelled.text
    missing = httpx.get(f"{api}/v1/dev/bills/not-a-bill", headers=h)
    assert missing.status_code == 404 and missing.json()["error"]["code"] == "not_found"
    bad = httpx.post(f"{api}/v1/dev/bills", json={**body, "amount": "abc"}, headers=h)
    assert bad.status_code == 422


def test_bill_for_a_tenant_that_is_not_a_customer_is_403(api, app_key, session):
    from mno.tenancy import tenants

    with session() as s:
        tenants.create(s, "globex")
    h = basic(app_key["key_id"], app_key["secret"])
    body = {"tenant": "globex", "amount": "1.00", "currency": "USD", "description": "x"}
    r = httpx.post(f"{api}/v1/dev/bills", json=body, headers=h)
    assert r.status_code == 403 and r.json()["error"]["code"] == "forbidden"


def test_usage_is_recorded_once_per_idempotency_key(api, app_key, acme, session):
    from mno.store.models.billing import BillingMetric

    with session() as s:
        s.add(BillingMetric(code="api_calls", name="API calls"))
    h = {**basic(app_key["key_id"], app_key["secret"]), "Idempotency-Key": "u1"}
    body = {"tenant": "acme", "metric": "api_calls", "quantity": "3"}
    first = httpx.post(f"{api}/v1/dev/usage", json=body, headers=h)
    assert first.status_code == 201, first.text
    again = httpx.post(f"{api}/v1/dev/usage", json=body, headers=h)
    assert again.status_code == 200 and again.json()["id"] == first.json()["id"]
    assert again.json()["created"] is False
    unknown = httpx.post(f"{api}/v1/dev/usage", json={**body, "metric": "nope"}, headers=h)
    assert unknown.status_code == 404
    nan = json.dumps({**body, "properties": {"ok": [1, {"x": float("nan")}]}})
    headers = {**h, "Idempotency-Key": "u2", "Content-Type": "application/json"}
    r = httpx.post(f"{api}/v1/dev/usage", content=nan, headers=headers)
    assert r.status_code == 422 and "NaN" in r.json()["error"]["message"]


def test_concurrent_usage_posts_are_group_committed_exactly_once_per_key(
    api, app_key, acme, session, store_url
):
    import asyncio

    import sqlalchemy as sa

    from mno.store.models.billing import BillingMetric, UsageEvent

    with session() as s:
        s.add(BillingMetric(code="api_calls", name="API calls"))
    h = basic(app_key["key_id"], app_key["secret"])
    body = {"tenant": "acme", "metric": "api_calls", "quantity": "2"}

    async def post(client: httpx.AsyncClient, key: str, **extra: str) -> httpx.Response:
        headers = {**h, "Idempotency-Key": key}
        return await client.post(f"{api}/v1/dev/usage", json={**body, **extra}, headers=headers)

    async def burst() -> list[httpx.Response]:
        async with httpx.AsyncClient(timeout=60) as client:
            calls = [post(client, "same") for _ in range(12)]
            calls += [post(client, f"k{n}") for n in range(12)]
            calls += [post(client, "bad", metric="nope")]
            return await asyncio.gather(*calls)

    answers = asyncio.run(burst())
    same, distinct, bad = answers[:12], answers[12:24], answers[24]
    assert sorted(r.status_code for r in same) == [200] * 11 + [201], [r.text for r in same]
    assert len({r.json()["id"] for r in same}) == 1
    assert sum(r.json()["created"] for r in same) == 1
    assert all(r.status_code == 201 for r in distinct)
    assert len({r.json()["id"] for r in distinct}) == 12
    assert bad.status_code == 404 and "nope" in bad.json()["error"]["message"]
    again = httpx.post(f"{api}/v1/dev/usage", json=body, headers={**h, "Idempotency-Key": "k3"})
    assert again.status_code == 200 and again.json()["id"] == distinct[3].json()["id"]
    assert again.json() == {
        **distinct[3].json(),
        "created": False,
        "quantity": again.json()["quantity"],
    }
    with session(write=False) as s:
        rows = s.execute(sa.select(UsageEvent.idempotency_key)).scalars().all()
    assert sorted(rows) == sorted(["crm:same", *(f"crm:k{n}" for n in range(12))])


def test_long_idempotency_keys_fit_the_store(api, app_key, acme, session):
    from mno.store.models.billing import BillingMetric

    with session() as s:
        s.add(BillingMetric(code="api_calls", name="API calls"))
    h = {**basic(app_key["key_id"], app_key["secret"]), "Idempotency-Key": "x" * 200}
    body = {"tenant": "acme", "metric": "api_calls", "quantity": "1"}
    first = httpx.post(f"{api}/v1/dev/usage", json=body, headers=h)
    assert first.status_code == 201, first.text
    again = httpx.post(f"{api}/v1/dev/usage", json=body, headers=h)
    assert again.status_code == 200 and again.json()["id"] == first.json()["id"]
    bill = {"tenant": "acme", "amount": "1.00", "currency": "USD", "description": "x"}
    assert httpx.post(f"{api}/v1/dev/bills", json=bill, headers=h).status_code == 201
    assert httpx.post(f"{api}/v1/dev/bills", json=bill, headers=h).status_code == 200


def _same_problem(a: httpx.Response, b: httpx.Response) -> bool:
    """The same problem body but for the request ids, which are each answer's own."""
    one, two = a.json(), b.json()
    assert one.pop("request_id") == a.headers["x-request-id"]
    assert two.pop("request_id") == b.headers["x-request-id"]
    return bool(one == two)


def test_usage_route_answers_alike_on_serve_and_the_agents_listener(api, app_key, acme, session):
    """``mno serve`` and the agents' listener mount the same usage route: both give the
    same answers (each with its own request id) and share idempotency."""
    from mno.agents import http
    from mno.store.models.billing import BillingMetric

    with session() as s:
        s.add(BillingMetric(code="api_calls", name="API calls"))
    srv = http.serve_in_thread(None, "127.0.0.1", 0)
    try:
        listener = f"http://127.0.0.1:{srv.servers[0].sockets[0].getsockname()[1]}"
        h = {**basic(app_key["key_id"], app_key["secret"]), "Idempotency-Key": "same"}
        body = {"tenant": "acme", "metric": "api_calls", "quantity": "4"}
        first = httpx.post(f"{api}/v1/dev/usage", json=body, headers=h)
        again = httpx.post(f"{listener}/v1/dev/usage", json=body, headers=h)
        assert first.status_code == 201 and again.status_code == 200
        assert again.json()["id"] == first.json()["id"]
        for bad, status in (
            ({**body, "quantity": "x"}, 422),
            ({**body, "tenant": "nobody"}, 404),
            ({**body, "extra": 1}, 422),
        ):
            a = httpx.post(f"{api}/v1/dev/usage", json=bad, headers=h)
            b = httpx.post(f"{listener}/v1/dev/usage", json=bad, headers=h)
            assert a.status_code == b.status_code == status, (a.text, b.text)
            assert _same_problem(a, b)
        raw = {**h, "Content-Type": "application/json"}
        a = httpx.post(f"{api}/v1/dev/usage", content=b"{nope", headers=raw)
        b = httpx.post(f"{listener}/v1/dev/usage", content=b"{nope", headers=raw)
        assert a.status_code == b.status_code == 400 and _same_problem(a, b)
        wrong = basic(app_key["key_id"], "wrong")
        a = httpx.post(f"{api}/v1/dev/usage", json=body, headers=wrong)
        b = httpx.post(f"{listener}/v1/dev/usage", json=body, headers=wrong)
        assert a.status_code == b.status_code == 401 and _same_problem(a, b)
        assert a.headers["www-authenticate"] == b.headers["www-authenticate"]
    finally:
        srv.should_exit = True
