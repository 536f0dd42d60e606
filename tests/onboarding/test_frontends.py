"""Frontends: isolation of their customer bases over HTTP (every crossing answers 404),
CORS preflights, origin checks on credentials, and the CLI."""

from __future__ import annotations

import json
from typing import Any

from tests.conftest import counts
from tests.onboarding.conftest import LEAD, Hub


def test_an_isolated_frontend_sees_only_its_own_signups(hub: Hub) -> None:
    a = hub.frontend("alpha", "isolated")
    b = hub.frontend("beta", "isolated")
    shared = hub.frontend("gamma", "shared")
    app = hub.app_key()
    lead_a, tenant_a, _ = hub.signup(a, "ann", "ann", "ann.io")
    lead_s, tenant_s, _ = hub.signup(shared, "sam", "sam", "sam.io")

    # A reads its own tenant
    own = hub.call("GET", f"/v1/onboarding/tenants/{tenant_a}/provisioning", headers=a)
    assert own.status_code == 200 and own.json()["key"] == "ann"

    def not_found(answer: Any) -> None:
        assert answer.status_code == 404, answer.text
        assert answer.headers["content-type"] == "application/problem+json"
        assert "ann" not in answer.json()["detail"]  # nothing about the other side leaks

    # B, a shared frontend and an app cannot reach A's tenant or lead
    for other in (b, shared, app):
        not_found(hub.call("GET", f"/v1/onboarding/tenants/{tenant_a}/provisioning", headers=other))
        not_found(
            hub.call(
                "POST",
                f"/v1/onboarding/leads/{lead_a}/verify",
                json={"code": "x"},
                headers=other,
            )
        )
        not_found(
            hub.call(
                "POST",
                f"/v1/onboarding/leads/{lead_a}/tenants",
                json={"key": "steal", "domains": ["ann.io"]},
                headers=other | {"X-Lead-Token": "mnolt_x"},
            )
        )
    # an isolated frontend does not see the shared customer base either
    not_found(hub.call("GET", f"/v1/onboarding/tenants/{tenant_s}/provisioning", headers=a))
    not_found(
        hub.call("POST", f"/v1/onboarding/leads/{lead_s}/verify", json={"code": "x"}, headers=a)
    )
    # another shared frontend sees the shared tenant, not its lead
    delta = hub.frontend("delta", "shared")
    seen = hub.call("GET", f"/v1/onboarding/tenants/{tenant_s}/provisioning", headers=delta)
    assert seen.status_code == 200
    not_found(
        hub.call("POST", f"/v1/onboarding/leads/{lead_s}/verify", json={"code": "x"}, headers=delta)
    )
    # an unknown id and a malformed one answer the same
    not_found(
        hub.call(
            "GET",
            "/v1/onboarding/tenants/00000000-0000-0000-0000-000000000000/provisioning",
            headers=a,
        )
    )
    not_found(hub.call("GET", "/v1/onboarding/tenants/nope/provisioning", headers=a))
    # A's lead was not touched by the attempts
    from mno.store.db import session_scope
    from mno.tenancy import leads

    with session_scope(hub.store, write=False) as s:
        assert leads.get(s, lead_a).failed_attempts == 0


def test_cors_preflight_and_origins(hub_sqlite: Hub) -> None:
    hub = hub_sqlite
    shop = hub.frontend("shop", origins=["https://shop.example.com"])
    hub.frontend("mall", origins=["https://mall.example.com"])

    def preflight(origin: str) -> Any:
        return hub.call(
            "OPTIONS",
            "/v1/onboarding/leads",
            headers={
                "Origin": origin,
                "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "authorization, content-type",
            },
        )

    ok = preflight("https://shop.example.com")
    assert ok.status_code == 204
    assert ok.headers["access-control-allow-origin"] == "https://shop.example.com"
    assert "POST" in ok.headers["access-control-allow-methods"]
    assert "authorization" in ok.headers["access-control-allow-headers"]

    refused = preflight("https://evil.example.net")
    assert refused.status_code == 403
    assert "access-control-allow-origin" not in refused.headers

    # a real request from an allowed origin carries the CORS header; from another, none
    before = counts(hub.store)
    answer = hub.call(
        "POST",
        "/v1/onboarding/leads",
        json=LEAD,
        headers=shop | {"Origin": "https://shop.example.com"},
    )
    assert answer.status_code == 201, answer.text
    assert answer.headers["access-control-allow-origin"] == "https://shop.example.com"
    assert counts(hub.store) != before

    elsewhere = hub.call("GET", "/healthz", headers={"Origin": "https://evil.example.net"})
    assert "access-control-allow-origin" not in elsewhere.headers

    # shop's credentials from mall's origin (allowed for mall, not for shop) are refused
    before = counts(hub.store)
    crossed = hub.call(
        "POST",
        "/v1/onboarding/leads",
        json=LEAD | {"email": "x@example.com"},
        headers=shop | {"Origin": "https://mall.example.com"},
    )
    assert crossed.status_code == 403
    assert counts(hub.store) == before


def test_frontend_cli(cli: Any, sqlite_url: str) -> None:
    created = cli(
        "frontend",
        "create",
        "shop",
        "--customers",
        "isolated",
        "--origin",
        "https://Shop.Example.com/",
        "--origin",
        "http://localhost:3000",
        "--origin",
        "https://shop.example.com:443",
        "--brand-name",
        "Shop",
        "--from",
        "Shop <hi@shop.example.com>",
        "-o",
        "json",
    )
    assert created.exit_code == 0, created.stderr
    data = json.loads(created.stdout)
    assert data["secret"].startswith("mnofs_") and data["key_id"].startswith("mnofk_")
    assert data["origins"] == ["https://shop.example.com", "http://localhost:3000"]
    shown = cli.json("frontend", "show", "shop")
    assert "secret" not in shown and data["secret"] not in json.dumps(shown)
    assert shown["customers"] == "isolated" and shown["signups"] == 0
    assert [f["name"] for f in cli.json("frontend", "list")] == ["shop"]

    # the secret is stored hashed only
    import sqlalchemy as sa

    from mno.store import db

    with db.get_engine(sqlite_url).connect() as conn:
        dump = " ".join(
            str(v) for row in conn.execute(sa.text("SELECT * FROM frontend")) for v in row
        )
    assert data["secret"] not in dump

    before = counts(sqlite_url)
    for bad in (
        ["frontend", "create", "shop"],  # exists
        ["frontend", "create", "x", "--origin", "http://plain.example.com"],
        ["frontend", "create", "x", "--origin", "https://a.example.com/path"],
        ["frontend", "create", "Bad Name"],
        ["frontend", "create", "x", "--customers", "private"],
        ["frontend", "create", "x", "--logo-url", "http://a.example.com/l.png"],
    ):
        result = cli(*bad)
        assert result.exit_code in (1, 2), (bad, result.stdout)
        assert result.stderr.startswith("Error:") or "Invalid value" in result.stderr
    assert counts(sqlite_url) == before
    assert cli("frontend", "show", "nope").exit_code == 1

    assert cli("frontend", "delete", "shop", "--yes").exit_code == 0
    assert cli.json("frontend", "list") == []


def test_a_frontend_with_signups_is_kept(hub_sqlite: Hub) -> None:
    hub = hub_sqlite
    creds = hub.frontend("shop", "isolated")
    assert hub.call("POST", "/v1/onboarding/leads", json=LEAD, headers=creds).status_code == 201
    result = hub.cli("frontend", "delete", "shop", "--yes")
    assert result.exit_code == 1 and "signed up 1 lead" in result.stderr
