"""A real browser (Debian's Chromium driven by Playwright) signs in with a password and
a TOTP code, lands in the launcher and switches tenant. The screenshots of the sign-in
page and the launcher are written to docs/images/."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from mno.sso import mfa
from tests.sso.signin_support import PASSWORD, estate, light_argon2, person

CHROMIUM = "/usr/bin/chromium"
IMAGES = Path(__file__).resolve().parents[2] / "docs" / "images"

pytestmark = pytest.mark.skipif(
    not os.access(CHROMIUM, os.X_OK),
    reason=f"no Chromium at {CHROMIUM} (scripts/test installs it: apt-get install chromium)",
)


@pytest.fixture
def hub(sqlite_url: str, mno_env: Path) -> Iterator[str]:
    from mno.api import server

    light_argon2(mno_env)
    srv, port = server.serve_in_thread("127.0.0.1", 0)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        srv.should_exit = True


def test_sign_in_with_totp_and_open_the_launcher(hub: str) -> None:
    from playwright.sync_api import sync_playwright

    from mno.store.db import session_scope

    with session_scope() as s:
        person(s)
        estate(s)
        secret = mfa.enable(s, "ada@example.com").secret
    IMAGES.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 960, "height": 640})
            page.goto(f"{hub}/launcher")
            # not signed in: sent to the sign-in page, which will come back here
            assert page.url == f"{hub}/signin?next=%2Flauncher"
            page.get_by_label("Email address").fill("ada@example.com")
            page.screenshot(path=str(IMAGES / "signin.png"))
            page.get_by_label("Password").fill("not the password")
            page.get_by_role("button", name="Sign in").click()
            assert page.get_by_role("alert").inner_text().startswith("There is a problem")
            page.get_by_label("Password").fill(PASSWORD)
            page.get_by_role("button", name="Sign in").click()
            page.wait_for_url(f"{hub}/signin/mfa")
            page.get_by_label("Code from your authenticator app").fill(mfa.code_now(secret))
            page.get_by_role("button", name="Verify").click()
            page.wait_for_url(f"{hub}/launcher")
            assert page.get_by_role("heading", name="Your apps").is_visible()
            books = page.get_by_role("link", name="Books (acme-books)")
            assert books.get_attribute("href") == "https://acme-books.apps.example.com"
            assert page.get_by_role("link", name="Sales CRM").is_visible()
            page.screenshot(path=str(IMAGES / "launcher.png"))
            page.get_by_role("link", name="Globex").click()
            page.wait_for_url(f"{hub}/launcher?tenant=globex")
            assert page.get_by_role("link", name="Globex Wiki").is_visible()
            cookies = {c["name"]: c for c in page.context.cookies()}
            assert cookies["mno_sid"]["httpOnly"] and cookies["mno_sid"]["sameSite"] == "Lax"
            page.get_by_role("button", name="Sign out").click()
            page.wait_for_url(f"{hub}/signin")
            page.goto(f"{hub}/launcher")
            assert page.url.startswith(f"{hub}/signin")
        finally:
            browser.close()
