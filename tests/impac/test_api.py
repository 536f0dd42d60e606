"""The Impac widgets API and dashboard page on a real server (uvicorn on 127.0.0.1)."""

from __future__ import annotations

from urllib.parse import quote, urlencode

import httpx

from tests.access.conftest import api, api_profile, app_key, basic  # noqa: F401

WINDOW = {"from": "2026-01-01", "to": "2026-06-30"}


def _get(url: str, key: dict[str, str], **params: object) -> httpx.Response:
    return httpx.get(url, params=params, headers=basic(key["key_id"], key["secret"]))


def test_widget_list_and_answers(books, app_key, api):  # noqa: F811
    """The app crm is owned by acme, so it may read acme's KPIs (values as in
    test_kpis: USD revenue 2180.84, EUR 2000.00; AR USD 1040.84)."""
    r = _get(f"{api}/v1/impac/acme/widgets", app_key)
    assert r.status_code == 200
    names = [w["name"] for w in r.json()["widgets"]]
    assert names == ["revenue", "receivables", "dso", "cash", "pipeline", "win-rate", "headcount"]

    r = _get(f"{api}/v1/impac/acme/widgets/revenue", app_key, **WINDOW)
    assert r.status_code == 200, r.text
    body = r.json()
    assert set(body) == {"widget", "tenant", "window", "currency", "group_by", "series", "totals"}
    assert body["window"] == {"from": "2026-01-01", "to": "2026-06-30"}
    assert body["totals"]["revenue"] == {"EUR": "2000.00", "USD": "2180.84"}

    r = _get(
        f"{api}/v1/impac/acme/widgets/receivables", app_key, currency="USD",
        rate="EUR:USD=1.5", **WINDOW,
    )  # fmt: skip
    body = r.json()
    # 1040.84 USD + 1200.00 EUR × 1.5 = 2840.84 USD
    assert body["totals"]["receivables"] == {"USD": "2840.84"}
    assert body["rates"] == {"EUR:USD": "1.5"}

    by_customer = _get(
        f"{api}/v1/impac/acme/widgets/revenue", app_key, group_by="customer", **WINDOW
    ).json()
    assert by_customer["group_by"] == "customer"


def test_bad_queries_answer_problem_json(books, app_key, api):  # noqa: F811
    for params, status in (
        ({"from": "2026-13-01"}, 422),
        ({"group_by": "stage"}, 422),
        ({"rate": "EUR:USD=1.1"}, 422),  # a rate needs a currency
        ({"currency": "USD", "rate": "EUR:USD=abc"}, 422),
        ({"nope": "1"}, 422),
    ):
        r = _get(f"{api}/v1/impac/acme/widgets/revenue", app_key, **params)
        assert r.status_code == status, (params, r.text)
        assert r.headers["content-type"].startswith("application/problem+json")
    assert _get(f"{api}/v1/impac/acme/widgets/nope", app_key).status_code == 404


def test_other_tenants_are_unreachable(books, app_key, api):  # noqa: F811
    """``other`` exists but is neither the owner nor a customer of crm: 404, worded as
    for a tenant that does not exist. Bad credentials: 401."""
    for tenant in ("other", "ghost"):
        for path in ("widgets", "widgets/revenue"):
            r = _get(f"{api}/v1/impac/{tenant}/{path}", app_key)
            assert r.status_code == 404, (tenant, path)
            assert r.json()["error"]["message"] == f"tenant {tenant} not found"
    r = httpx.get(f"{api}/v1/impac/acme/widgets/revenue")
    assert r.status_code == 401
    r = _get(f"{api}/v1/impac/acme/widgets", {"key_id": app_key["key_id"], "secret": "wrong"})
    assert r.status_code == 401


def test_dashboard_page_for_a_signed_in_member(books, session, api):  # noqa: F811
    from mno.access import members, users
    from mno.sso import sessions
    from mno.tenancy import tenants

    with session() as s:
        members.add(s, "acme", "ann@acme.io", "member")
        tenants.create(s, "else", name="Else", if_not_exists=True)
        members.add(s, "else", "eve@else.io", "member")
        ann_cookie = sessions.start(s, users.get(s, "ann@acme.io")).token
        eve_cookie = sessions.start(s, users.get(s, "eve@else.io")).token
    url = f"{api}/impac/acme"
    r = httpx.get(url, params=WINDOW, cookies={sessions.COOKIE: ann_cookie})
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/html")
    page = r.text
    assert (
        page.count("<svg") >= 6
        and "<script" not in page
        and "http://" not in page.replace('xmlns="http://www.w3.org/2000/svg"', "")
    )
    assert "2180.84 USD" in page and "Alpha Ltd" in page
    assert httpx.get(url, cookies={sessions.COOKIE: eve_cookie}).status_code == 404
    # no session, or a forged one: sent to the sign-in page, which brings the browser back
    for cookies in ({}, {sessions.COOKIE: "mnosid_forged"}):
        r = httpx.get(url, params=WINDOW, cookies=cookies)
        assert r.status_code == 303
        assert r.headers["location"] == "/signin?next=" + quote(
            "/impac/acme?" + urlencode(WINDOW), safe=""
        )
    assert httpx.get(f"{api}/impac/other", cookies={sessions.COOKIE: ann_cookie}).status_code == 404
