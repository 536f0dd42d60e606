"""The dashboard page served by the hub, opened by a signed-in member in headless
Chromium: it draws its SVG charts and fetches nothing but itself."""

from __future__ import annotations

import shutil

import pytest

from tests.access.conftest import api, api_profile  # noqa: F401

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture
def store_url(sqlite_url: str) -> str:
    return sqlite_url


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is installed by scripts/test")
def test_dashboard_in_chromium(books, session, api, tmp_path):  # noqa: F811
    from playwright.sync_api import sync_playwright

    from mno.access import members, users
    from mno.sso import sessions

    with session() as s:
        members.add(s, "acme", "ann@acme.io", "member")
        cookie = sessions.start(s, users.get(s, "ann@acme.io")).token
    url = f"{api}/impac/acme?from=2026-01-01&to=2026-06-30"
    requested: list[str] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            context = browser.new_context(viewport={"width": 1400, "height": 900})
            context.add_cookies([{"name": sessions.COOKIE, "value": cookie, "url": api}])
            page = context.new_page()
            errors: list[str] = []
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("request", lambda r: requested.append(r.url))
            response = page.goto(url)
            assert response is not None and response.status == 200
            charts = page.locator("svg.chart")
            assert charts.count() >= 10
            for i in range(charts.count()):
                box = charts.nth(i).bounding_box()
                assert box is not None and box["width"] > 300 and box["height"] > 150
            bars = page.locator("svg.chart rect")
            assert bars.count() > 40
            assert "86.4 days (USD)" in page.inner_text("body")
            shot = tmp_path / "dashboard.png"
            page.screenshot(path=str(shot), full_page=True)
            assert shot.stat().st_size > 20_000
            assert errors == []
        finally:
            browser.close()
    assert requested == [url]
