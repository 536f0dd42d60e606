"""The onboarding flow entirely over HTTP: a real uvicorn server and a real SMTP server
on loopback; the code travels only by email."""

from __future__ import annotations

from typing import Any

from tests.conftest import counts
from tests.onboarding.conftest import LEAD, Hub


def _audit_actions(store: str) -> list[str]:
    import sqlalchemy as sa

    from mno.store import db

    with db.get_engine(store).connect() as conn:
        rows = conn.execute(sa.text("SELECT action FROM audit_entry")).scalars().all()
    return [str(r) for r in rows]


def test_lead_to_active_tenant_over_http(hub: Hub) -> None:
    creds = hub.frontend(
        "market",
        brand_name="Market",
        from_address="Market <signup@market.example.com>",
        logo_url="https://market.example.com/logo.png",
    )
    created = hub.call("POST", "/v1/onboarding/leads", json=LEAD, headers=creds)
    assert created.status_code == 201, created.text
    lead = created.json()
    assert lead["isValidated"] is False and lead["status"] == "pending"
    assert lead["firstName"] == "Ada" and lead["companyName"] == "Analytical"
    assert "code" not in lead and "key" not in lead

    message = hub.mail_for("ada@analytical.io")
    assert message["From"] == "Market <signup@market.example.com>"  # the frontend's brand
    assert message["Subject"].startswith("Market:")
    code = hub.code_for("ada@analytical.io")
    assert "https://market.example.com/logo.png" in str(message)

    # converting before verifying is refused, with or without a token
    early = hub.call(
        "POST",
        f"/v1/onboarding/leads/{lead['id']}/tenants",
        json={"key": "analytical", "domains": ["analytical.io"]},
        headers=creds | {"X-Lead-Token": "mnolt_guess"},
    )
    assert early.status_code == 403, early.text

    verified = hub.call(
        "POST", f"/v1/onboarding/leads/{lead['id']}/verify", json={"code": code}, headers=creds
    )
    assert verified.status_code == 200, verified.text
    token = verified.json()["token"]
    assert token.startswith("mnolt_") and token != code

    # the code works once
    again = hub.call(
        "POST", f"/v1/onboarding/leads/{lead['id']}/verify", json={"code": code}, headers=creds
    )
    assert again.status_code == 409

    before = counts(hub.store)
    no_token = hub.call(
        "POST",
        f"/v1/onboarding/leads/{lead['id']}/tenants",
        json={"key": "analytical", "domains": ["analytical.io"]},
        headers=creds,
    )
    assert no_token.status_code == 403
    assert no_token.headers["content-type"] == "application/problem+json"
    assert counts(hub.store) == before  # nothing written

    converted = hub.call(
        "POST",
        f"/v1/onboarding/leads/{lead['id']}/tenants",
        json={"key": "analytical", "domains": ["analytical.io"]},
        headers=creds | {"X-Lead-Token": token},
    )
    assert converted.status_code == 201, converted.text
    tenant = converted.json()
    assert tenant["key"] == "analytical" and tenant["leadId"] == lead["id"]
    assert tenant["status"] == "provisioning" and tenant["statusCode"] == 2
    assert tenant["request"]["contextId"] and tenant["request"]["answeredAt"] is None

    reused = hub.call(
        "POST",
        f"/v1/onboarding/leads/{lead['id']}/tenants",
        json={"key": "analytical2", "domains": ["analytical.io"]},
        headers=creds | {"X-Lead-Token": token},
    )
    assert reused.status_code == 403  # the lead token is single use

    status = hub.call(
        "GET", f"/v1/onboarding/tenants/{tenant['id']}/provisioning", headers=creds
    ).json()
    assert status["status"] == "provisioning"

    bad = hub.call(
        "POST",
        "/v1/onboarding/webhook",
        json={"initiatorId": tenant["id"], "type": 0, "data": {"status": 1}},
        headers={"x-signature": "0" * 64, "x-timestamp": "1"},
    )
    assert bad.status_code == 401
    assert bad.headers["content-type"] == "application/problem+json"

    answered = hub.callback(tenant["id"])
    assert answered.status_code == 200, answered.text
    assert answered.json() == {"tenant": "analytical", "status": "active"}
    assert hub.callback(tenant["id"]).status_code == 409  # a replay changes nothing

    final = hub.call("GET", f"/v1/onboarding/tenants/{tenant['id']}/provisioning", headers=creds)
    assert final.status_code == 200
    body = final.json()
    assert body["status"] == "active" and body["statusCode"] == 0
    assert body["appPlaneUrl"] == "https://app.test"
    assert body["request"]["outcome"] == "active"

    actions = _audit_actions(hub.store)
    for action in ("lead.create", "onboarding.lead", "lead.verify", "lead.convert"):
        assert action in actions
    # the code was never in any answer
    assert all(code not in text for text in hub.bodies)


def test_wrong_codes_lock_the_lead(hub_sqlite: Hub) -> None:
    hub = hub_sqlite
    creds = hub.app_key()  # an app key may sign leads up too
    lead = hub.call("POST", "/v1/onboarding/leads", json=LEAD, headers=creds).json()
    code = hub.code_for(LEAD["email"])
    path = f"/v1/onboarding/leads/{lead['id']}/verify"
    for left in (4, 3, 2, 1):
        wrong = hub.call("POST", path, json={"code": "nope"}, headers=creds)
        assert wrong.status_code == 422
        assert f"{left} attempt(s) left" in wrong.json()["detail"]
    locked = hub.call("POST", path, json={"code": "nope"}, headers=creds)
    assert locked.status_code == 409 and "locked" in locked.json()["detail"]
    right = hub.call("POST", path, json={"code": code}, headers=creds)
    assert right.status_code == 409  # the right code no longer helps
    assert all(code not in text for text in hub.bodies)


def test_bad_input_and_missing_credentials_write_nothing(hub_sqlite: Hub) -> None:
    hub = hub_sqlite
    creds = hub.frontend("shop")
    before = counts(hub.store)
    assert hub.call("POST", "/v1/onboarding/leads", json=LEAD).status_code == 401
    wrong = {"Authorization": creds["Authorization"][:-4] + "AAAA"}
    assert hub.call("POST", "/v1/onboarding/leads", json=LEAD, headers=wrong).status_code == 401
    bad_email = LEAD | {"email": "not-an-email"}
    answer = hub.call("POST", "/v1/onboarding/leads", json=bad_email, headers=creds)
    assert answer.status_code == 422
    extra = LEAD | {"isValidated": True}
    assert hub.call("POST", "/v1/onboarding/leads", json=extra, headers=creds).status_code == 422
    assert counts(hub.store) == before
    assert hub.received == []


def test_lead_creation_is_rate_limited_per_client(hub_sqlite: Hub) -> None:
    from tests.onboarding.conftest import write_profile

    hub = hub_sqlite
    write_profile(hub.home, None, {"lead_limit": 2, "lead_window": "1h"})
    a, b = hub.frontend("a"), hub.frontend("b")

    def post(creds: dict[str, str], n: int) -> Any:
        body = LEAD | {"email": f"p{n}@example.com"}
        return hub.call("POST", "/v1/onboarding/leads", json=body, headers=creds)

    # without SMTP a lead cannot be told its code: refused, nothing written
    before = counts(hub.store)
    refused = post(a, 0)
    assert refused.status_code == 409
    assert "email is not configured" in refused.json()["detail"]
    assert counts(hub.store) == before
    assert post(a, 1).status_code == 409
    limited = post(a, 2)
    assert limited.status_code == 429
    assert int(limited.headers["Retry-After"]) >= 1
    assert limited.headers["RateLimit-Limit"] == "2"
    assert limited.headers["RateLimit-Remaining"] == "0"
    assert post(b, 3).status_code == 409  # another client has its own budget
