"""The sign-in pages on a real uvicorn server on loopback, driven with httpx: cookies,
CSRF, open redirects, lockout (20 concurrent wrong passwords on PostgreSQL), TOTP,
sign-out, the launcher and the invitation page."""

from __future__ import annotations

import re
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest
from sqlmodel import select

from mno.access import invites, users
from mno.sso import mfa, passwords, sessions
from mno.store.models.core import AuditEntry, Event
from tests.sso.signin_support import PASSWORD, estate, light_argon2, person


@pytest.fixture(autouse=True)
def _light(mno_env):
    light_argon2(mno_env)


def _serve() -> Iterator[str]:
    from mno.api import server

    srv, port = server.serve_in_thread("127.0.0.1", 0)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        srv.should_exit = True


@pytest.fixture
def hub(sqlite_url: str) -> Iterator[str]:
    yield from _serve()


@pytest.fixture
def pg_hub(pg_url: str) -> Iterator[str]:
    yield from _serve()


def _client(base: str) -> httpx.Client:
    return httpx.Client(base_url=base, follow_redirects=False, timeout=30)


def _csrf(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found, html
    return found.group(1)


def _open(client: httpx.Client, path: str = "/signin") -> str:
    page = client.get(path)
    assert page.status_code == 200, page.text
    return _csrf(page.text)


def _sign_in(client: httpx.Client, email: str, password: str, next_: str = "") -> httpx.Response:
    token = _open(client, "/signin" + (f"?next={next_}" if next_ else ""))
    return client.post(
        "/signin",
        data={"csrf": token, "email": email, "password": password, "next": next_},
    )


def _store(url: str | None = None) -> Any:
    from mno.store.db import session_scope

    return session_scope(url)


def test_sign_in_page_is_accessible_html_with_safe_cookies(hub):
    with _client(hub) as c:
        page = c.get("/signin")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    html = page.text
    for needle in (
        '<html lang="en">',
        '<label for="email">',
        'autocomplete="username"',
        '<label for="password">',
        'autocomplete="current-password"',
        'type="submit"',
    ):
        assert needle in html
    assert "<script" not in html
    assert page.headers["x-frame-options"] == "DENY"
    assert "frame-ancestors 'none'" in page.headers["content-security-policy"]
    cookie = page.headers["set-cookie"]
    assert cookie.startswith("mno_csrf=") and "HttpOnly" in cookie and "SameSite=lax" in cookie
    assert "Secure" not in cookie
    with _client(hub) as c:
        https = c.get("/signin", headers={"X-Forwarded-Proto": "https"})
    assert "Secure" in https.headers["set-cookie"]


def test_sign_in_sets_session_cookie_and_sign_out_ends_it(hub):
    with _store() as s:
        person(s)
    with _client(hub) as c:
        done = _sign_in(c, "ada@example.com", PASSWORD)
        assert done.status_code == 303 and done.headers["location"] == "/launcher"
        cookie = [v for k, v in done.headers.multi_items() if k == "set-cookie"]
        sid = next(v for v in cookie if v.startswith(sessions.COOKIE + "="))
        assert "HttpOnly" in sid and "SameSite=lax" in sid and "Path=/" in sid
        token = c.cookies[sessions.COOKIE]
        with _store() as s:
            assert sessions.user_for(s, token) is not None
        # a signed-in browser is sent on at once
        again = c.get("/signin?next=/launcher%3Ftenant%3Dacme")
        assert again.status_code == 303 and again.headers["location"] == "/launcher?tenant=acme"
        launcher = c.get("/launcher")
        assert launcher.status_code == 200 and "ada@example.com" in launcher.text
        # signing in again (say, as another user) ends the browser's previous session
        first = token
        again = c.post(
            "/signin",
            data={"csrf": _csrf(launcher.text), "email": "ada@example.com", "password": PASSWORD},
        )
        assert again.status_code == 303
        token = c.cookies[sessions.COOKIE]
        assert token != first
        with _store() as s:
            assert sessions.user_for(s, first) is None
            assert sessions.user_for(s, token) is not None
        # sign-out needs the CSRF token too
        assert c.post("/signout", data={}).status_code == 403
        out = c.post("/signout", data={"csrf": _csrf(launcher.text)})
        assert out.status_code == 303 and out.headers["location"] == "/signin"
        with _store() as s:
            assert sessions.user_for(s, token) is None
        c.cookies.set(sessions.COOKIE, token)
        gone = c.get("/launcher")
        assert gone.status_code == 303
        assert gone.headers["location"] == "/signin?next=%2Flauncher"
    with _store() as s:
        types = [e.type for e in s.exec(select(Event)).all()]
        assert "sso.signed_in" in types and "sso.signed_out" in types


def test_post_without_matching_csrf_is_refused(hub):
    with _store() as s:
        person(s)
    with _client(hub) as c:
        token = _open(c)
        form = {"email": "ada@example.com", "password": PASSWORD}
        assert c.post("/signin", data=form).status_code == 403
        assert c.post("/signin", data=form | {"csrf": token + "x"}).status_code == 403
        c.cookies.clear()
        assert c.post("/signin", data=form | {"csrf": token}).status_code == 403
        assert sessions.COOKIE not in c.cookies
    with _store() as s:
        assert not [e for e in s.exec(select(Event)).all() if e.type == "sso.signed_in"]


@pytest.mark.parametrize(
    "target", ["//evil.com", "https://evil.com", "/\\evil.com", "http:evil.com", "/\t/evil.com"]
)
def test_open_redirects_are_refused(hub, target):
    with _store() as s:
        person(s)
    with _client(hub) as c:
        page = c.get("/signin", params={"next": target})
        assert 'name="next" value="/launcher"' in page.text
        done = c.post(
            "/signin",
            data={
                "csrf": _csrf(page.text),
                "email": "ada@example.com",
                "password": PASSWORD,
                "next": target,
            },
        )
        assert done.status_code == 303 and done.headers["location"] == "/launcher"
        signed = c.get("/signin", params={"next": target})
        assert signed.headers["location"] == "/launcher"


def test_next_on_this_hub_is_followed(hub):
    with _store() as s:
        person(s)
    with _client(hub) as c:
        target = "/authorize?client_id=crm&state=xyz"
        done = _sign_in(c, "ada@example.com", PASSWORD, httpx.QueryParams({"n": target})["n"])
        assert done.headers["location"] == target


def test_unknown_user_and_wrong_password_get_the_same_page(hub):
    with _store() as s:
        person(s)
    with _client(hub) as c:
        unknown = _sign_in(c, "nobody@example.com", PASSWORD)
        wrong = _sign_in(c, "ada@example.com", "not the password")
    assert unknown.status_code == wrong.status_code == 401
    assert 'role="alert"' in wrong.text and "not right" in wrong.text

    def message(r: httpx.Response) -> str:
        return re.search(r"<ul>(.*?)</ul>", r.text, re.S).group(1)

    assert message(unknown) == message(wrong)
    assert sessions.COOKIE not in wrong.headers.get("set-cookie", "")


def test_twenty_concurrent_wrong_passwords_lock_on_postgres(pg_hub, pg_url):
    with _store() as s:
        person(s)

    def attempt(_: int) -> int:
        with _client(pg_hub) as c:
            return _sign_in(c, "ada@example.com", "wrong password!").status_code

    with ThreadPoolExecutor(20) as pool:
        codes = list(pool.map(attempt, range(20)))
    assert codes == [401] * 20
    with _store() as s:
        row = passwords.credential(s, users.get(s, "ada@example.com"))
        failed = s.exec(select(AuditEntry).where(AuditEntry.action == "sso.signin_failed")).all()
        reasons = [a.diff for a in failed]
        locked_refusals = sum("locked" in str(r) for r in reasons)
        types = [e.type for e in s.exec(select(Event)).all()]
    # every checked attempt was counted (no lost update), the rest met the lock
    assert row.failures + locked_refusals == 20
    assert row.failures >= 5 and row.locked_until is not None
    assert types.count("sso.locked_out") == 1
    with _client(pg_hub) as c:
        assert _sign_in(c, "ada@example.com", PASSWORD).status_code == 401
        assert sessions.COOKIE not in c.cookies


def test_totp_step_over_http_and_code_replay(hub):
    with _store() as s:
        person(s)
        secret = mfa.enable(s, "ada@example.com").secret
    with _client(hub) as c:
        first = _sign_in(c, "ada@example.com", PASSWORD)
        assert first.status_code == 303 and first.headers["location"] == "/signin/mfa"
        assert sessions.COOKIE not in c.cookies
        page = c.get("/signin/mfa")
        assert 'autocomplete="one-time-code"' in page.text
        code = mfa.code_now(secret)
        done = c.post("/signin/mfa", data={"csrf": _csrf(page.text), "code": code})
        assert done.status_code == 303 and done.headers["location"] == "/launcher"
        assert sessions.COOKIE in c.cookies
    with _client(hub) as other:
        _sign_in(other, "ada@example.com", PASSWORD)
        page = other.get("/signin/mfa")
        replay = other.post("/signin/mfa", data={"csrf": _csrf(page.text), "code": code})
        assert replay.status_code == 401 and "used already" in replay.text
        assert sessions.COOKIE not in other.cookies
    with _client(hub) as stranger:
        assert stranger.get("/signin/mfa").headers["location"] == "/signin"


def test_launcher_lists_apps_and_switches_tenant(hub):
    with _store() as s:
        person(s)
        estate(s)
    with _client(hub) as c:
        assert c.get("/launcher").status_code == 303
        _sign_in(c, "ada@example.com", PASSWORD)
        page = c.get("/launcher")
        assert page.status_code == 200
        assert 'href="https://acme-books.apps.example.com"' in page.text
        assert 'href="https://crm.example.com/"' in page.text
        assert "wiki.example.com" not in page.text
        assert 'href="/launcher?tenant=globex"' in page.text
        globex = c.get("/launcher", params={"tenant": "globex"})
        assert 'href="https://wiki.example.com/"' in globex.text
        assert "acme-books" not in globex.text


def test_invite_page_sets_password_and_lands_in_launcher(hub):
    from mno.tenancy import tenants

    with _store() as s:
        tenants.create(s, "acme", name="Acme Corp")
        token = invites.create(s, "acme", "nia@example.com", "member").token
    with _client(hub) as c:
        assert c.get("/invites/mnoinv_nope").status_code == 404
        page = c.get(f"/invites/{token}")
        assert page.status_code == 200 and "nia@example.com" in page.text
        assert 'autocomplete="new-password"' in page.text
        form = {"csrf": _csrf(page.text), "name": "Nia", "password": PASSWORD}
        assert c.post(f"/invites/{token}", data=form | {"csrf": ""}).status_code == 403
        bad = c.post(f"/invites/{token}", data=form | {"confirm": "something else!"})
        assert bad.status_code == 400 and "differ" in bad.text
        done = c.post(f"/invites/{token}", data=form | {"confirm": PASSWORD})
        assert done.status_code == 303 and done.headers["location"] == "/launcher"
        launcher = c.get("/launcher")
        assert launcher.status_code == 200 and "Acme Corp" in launcher.text
        used = c.get(f"/invites/{token}")
        assert "accepted" in used.text
    with _client(hub) as fresh:
        assert _sign_in(fresh, "nia@example.com", PASSWORD).status_code == 303


def test_invite_for_a_user_with_a_password_asks_for_it_and_counts_failures(hub):
    from mno.tenancy import tenants

    with _store() as s:
        person(s)
        tenants.create(s, "acme", name="Acme Corp")
        token = invites.create(s, "acme", "ada@example.com", "member").token
    with _client(hub) as c:
        page = c.get(f"/invites/{token}")
        assert 'autocomplete="current-password"' in page.text and "confirm" not in page.text
        wrong = c.post(f"/invites/{token}", data={"csrf": _csrf(page.text), "password": "nope"})
        assert wrong.status_code == 403 and "not right" in wrong.text
        with _store() as s:
            assert passwords.credential(s, users.get(s, "ada@example.com")).failures == 1
            assert users.memberships(s, users.get(s, "ada@example.com")) == []
        done = c.post(f"/invites/{token}", data={"csrf": _csrf(page.text), "password": PASSWORD})
        assert done.status_code == 303 and done.headers["location"] == "/launcher"
    with _store() as s:
        assert users.memberships(s, users.get(s, "ada@example.com")) == [
            {"tenant": "acme", "role": "member"}
        ]
