"""An app's customers (Nex instances and subscriptions) and what the IDM lets it ask."""

from __future__ import annotations

import httpx
import pytest

from mno.access import customers, members, tokens
from mno.tenancy import apps, tenants
from tests.access.conftest import basic

pytest.importorskip("mno.store.models.nex")
pytest.importorskip("mno.store.models.billing")


def _instance(s, tenant_key: str, status: str) -> None:
    from mno.store.models.nex import Instance

    tenant = tenants.get(s, tenant_key)
    app = apps.get(s, "crm")
    s.add(
        Instance(
            name=f"crm-{tenant_key}",
            tenant_id=tenant.id,
            app_id=app.id,
            status=status,
            image="busybox",
            port=80,
            url=f"http://crm-{tenant_key}.local",
        )
    )


def _subscription(s, tenant_key: str, status: str, app_code: str = "crm") -> None:
    from sqlmodel import select

    from mno import clock
    from mno.store.models.billing import Plan, Subscription

    plan = s.exec(select(Plan).where(Plan.code == "basic")).first()
    if plan is None:
        plan = Plan(code="basic", name="Basic", currency="USD")
        s.add(plan)
        s.flush()
    s.add(
        Subscription(
            tenant_id=tenants.get(s, tenant_key).id,
            plan_id=plan.id,
            plan_code=plan.code,
            app_code=app_code,
            status=status,
            started_at=clock.now(),
        )
    )


@pytest.fixture
def world(session, app_key):
    """crm (owned by acme); globex runs an instance, initech subscribes; hooli's instance
    is terminated, umbrella's subscription canceled, wayne subscribes to another app,
    stark has nothing. bob@ is a member of every one of them."""
    with session() as s:
        for key in ("globex", "initech", "hooli", "umbrella", "wayne", "stark"):
            tenants.create(s, key)
        _instance(s, "globex", "running")
        _instance(s, "hooli", "terminated")
        _subscription(s, "initech", "active")
        _subscription(s, "umbrella", "canceled")
        _subscription(s, "wayne", "active", app_code="other")
        for key in ("acme", "globex", "initech", "hooli", "umbrella", "wayne", "stark"):
            members.add(s, key, "bob@acme.io", "member")
        token = tokens.create(s, "bob@acme.io", ttl="1h").secret
    return {**app_key, "token": token}


def test_customer_ids_count_live_instances_and_subscriptions(session, world):
    with session(write=False) as s:
        crm = apps.get(s, "crm")
        keys = {tenants.get(s, i).key for i in customers.customer_ids(s, crm)}
        assert keys == {"globex", "initech"}
        assert customers.may_ask(s, crm, tenants.get(s, "acme")) == (True, "acme owns crm")
        assert customers.may_ask(s, crm, tenants.get(s, "globex"))[0]
        allowed, reason = customers.may_ask(s, crm, tenants.get(s, "hooli"))
        assert not allowed
        assert reason.startswith("hooli has no instance of and no subscription to crm")


def test_dev_customers_lists_instance_and_subscription_tenants(api, world):
    h = basic(world["key_id"], world["secret"])
    r = httpx.get(f"{api}/v1/dev/customers", headers=h)
    assert r.status_code == 200, r.text
    assert [c["key"] for c in r.json()["customers"]] == ["globex", "initech"]
    page = httpx.get(f"{api}/v1/dev/customers", headers=h, params={"limit": 1}).json()
    assert [c["key"] for c in page["customers"]] == ["globex"] and page["next"] == "globex"
    rest = httpx.get(f"{api}/v1/dev/customers", headers=h, params={"after": "globex"}).json()
    assert [c["key"] for c in rest["customers"]] == ["initech"] and rest["next"] is None


def test_idm_answers_an_app_only_about_its_customers_and_owner(api, world):
    h = basic(world["key_id"], world["secret"])

    def ask(tenant: str) -> httpx.Response:
        body = {"token": world["token"], "tenant": tenant, "action": "read"}
        return httpx.post(f"{api}/v1/idm/authorize", json=body, headers=h)

    for tenant in ("acme", "globex", "initech"):
        r = ask(tenant)
        assert r.status_code == 200 and r.json()["allowed"] is True, (tenant, r.text)
    for tenant in ("hooli", "umbrella", "wayne", "stark"):
        for _ in range(2):  # a refusal is not cached as an answer either
            r = ask(tenant)
            assert r.status_code == 403, (tenant, r.text)
            error = r.json()["error"]
            assert error["code"] == "forbidden"
            assert error["message"].startswith(
                f"{tenant} has no instance of and no subscription to crm"
            )
            assert "bob@acme.io" not in r.text
    # a tenant that does not exist gets the same answer as one that is not a customer
    r, known = ask("nobody"), ask("hooli")
    assert r.status_code == known.status_code == 403
    assert r.json()["error"]["message"] == known.json()["error"]["message"].replace(
        "hooli", "nobody"
    )
