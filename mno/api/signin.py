"""The hub's pages for people: sign-in (password, then TOTP when enabled), sign-out, the
app launcher and the invitation page.

Plain HTML forms, no script. Every POST carries a CSRF token that must equal the
``mno_csrf`` cookie (double submit; a POST without it is refused with 403). Cookies are
HttpOnly and SameSite=Lax, and Secure when the hub is reached over https. ``next`` is
followed only when it is a path on this hub (``mno.sso.signin.safe_next``). The rules
live in ``mno.sso``; these routes parse forms, call them and render templates.
"""

from __future__ import annotations

import hmac
import secrets as _secrets
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import parse_qs, quote

from fastapi import APIRouter, Request, Response
from fastapi.responses import HTMLResponse, RedirectResponse

from mno.api import threads
from mno.errors import BadInput, Forbidden, MnoError, NotFound
from mno.sso import launcher as launcher_mod
from mno.sso import passwords, sessions, signin
from mno.store.db import session_scope

router = APIRouter(include_in_schema=False)

CSRF_COOKIE = "mno_csrf"
MFA_COOKIE = "mno_mfa"
MAX_FORM = 16 * 1024
T = TypeVar("T")

HEADERS = {
    "Cache-Control": "no-store",
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'unsafe-inline'; img-src https: data:; "
        "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
}


@lru_cache(maxsize=1)
def _env() -> Any:
    from jinja2 import Environment, FileSystemLoader, StrictUndefined

    import mno.sso

    folder = Path(mno.sso.__file__).parent / "templates"
    return Environment(
        loader=FileSystemLoader(str(folder)), autoescape=True, undefined=StrictUndefined
    )


def _secure(request: Request) -> bool:
    return request.url.scheme == "https"


def _csrf_of(request: Request) -> str:
    value = request.cookies.get(CSRF_COOKIE, "")
    if 20 <= len(value) <= 100 and value.replace("-", "").replace("_", "").isalnum():
        return value
    return _secrets.token_urlsafe(32)


def _set_cookie(
    request: Request, response: Response, name: str, value: str, *, max_age: int | None = None
) -> None:
    response.set_cookie(
        name,
        value,
        max_age=max_age,
        path="/",
        httponly=True,
        samesite="lax",
        secure=_secure(request),
    )


def _page(
    request: Request,
    template: str,
    status: int = 200,
    *,
    csrf: str | None = None,
    form_action: str = "",
    **context: Any,
) -> HTMLResponse:
    token = csrf or _csrf_of(request)
    context.setdefault("errors", [])
    context.setdefault("signed_in", None)
    context.setdefault("wide", False)
    html = _env().get_template(template).render(csrf=token, **context)
    headers = HEADERS
    if form_action:  # the form's redirects may end at this client (see next_origin)
        csp = HEADERS["Content-Security-Policy"].replace(
            "form-action 'self'", f"form-action 'self' {form_action}"
        )
        headers = {**HEADERS, "Content-Security-Policy": csp}
    response = HTMLResponse(html, status_code=status, headers=headers)
    if request.cookies.get(CSRF_COOKIE) != token:
        _set_cookie(request, response, CSRF_COOKIE, token)
    return response


def _redirect(url: str) -> RedirectResponse:
    return RedirectResponse(url, status_code=303, headers={"Cache-Control": "no-store"})


async def _form(request: Request) -> dict[str, str] | None:
    """The urlencoded form when its CSRF token matches the cookie, else None."""
    body = b""
    async for chunk in request.stream():
        body += chunk
        if len(body) > MAX_FORM:
            return None
    try:
        parsed = parse_qs(body.decode("utf-8"), keep_blank_values=True, max_num_fields=20)
    except (UnicodeDecodeError, ValueError):
        return None
    form = {k: v[0] for k, v in parsed.items()}
    cookie = request.cookies.get(CSRF_COOKIE, "")
    sent = form.get("csrf", "")
    if not cookie or not sent or not hmac.compare_digest(cookie.encode(), sent.encode()):
        return None
    return form


def _forbidden(request: Request) -> HTMLResponse:
    return _page(
        request,
        "message.html",
        403,
        title="Form expired",
        message="This form was not sent from the hub's page, or it expired. Open it again.",
    )


async def _run(fn: Callable[..., T], *args: Any) -> T:
    return await threads.run(fn, *args)


def _user_agent(request: Request) -> str:
    return request.headers.get("user-agent", "")[:200]


def _signed_in_email(token: str | None) -> str | None:
    with session_scope(write=False) as s:
        user = signin.user_of(s, token)
        return user.email if user is not None else None


def _next_origin(target: str | None) -> str:
    with session_scope(write=False) as s:
        return signin.next_origin(s, target)


def _challenge_origin(token: str | None) -> str | None:
    """None when the challenge is not live, else the origin of where it continues."""
    with session_scope(write=False) as s:
        target = signin.challenge_next(s, token)
        return None if target is None else signin.next_origin(s, target)


@router.get("/signin")
async def signin_page(request: Request) -> Response:
    target = signin.safe_next(request.query_params.get("next"))
    if await _run(_signed_in_email, request.cookies.get(sessions.COOKIE)):
        return _redirect(target)
    origin = await _run(_next_origin, target)
    return _page(request, "signin.html", title="Sign in", next=target, email="", form_action=origin)


def _do_signin(
    email: str, password: str, target: str, agent: str, previous: str | None
) -> signin.Outcome:
    with session_scope(write=False) as s:
        checked = passwords.check(s, email.strip().lower(), password[: passwords.MAX_LENGTH])
    with session_scope() as s:
        return signin.sign_in(
            s,
            email,
            password,
            next_url=target,
            user_agent=agent,
            previous=previous,
            checked=checked,
        )


def _finish(request: Request, outcome: signin.Outcome) -> Response:
    assert outcome.started is not None
    response = _redirect(outcome.next_url)
    max_age = int(sessions.ttl().total_seconds())
    _set_cookie(request, response, sessions.COOKIE, outcome.started.token, max_age=max_age)
    response.delete_cookie(MFA_COOKIE, path="/")
    return response


INVALID = "The email address or the password is not right."
LOCKED = "Too many failed sign-ins: signing in is locked for a while. Try again later."


@router.post("/signin")
async def signin_post(request: Request) -> Response:
    form = await _form(request)
    if form is None:
        return _forbidden(request)
    email = form.get("email", "").strip()
    target = signin.safe_next(form.get("next"))
    if not email or not form.get("password"):
        errors = []
        if not email:
            errors.append(("email", "Enter your email address."))
        if not form.get("password"):
            errors.append(("password", "Enter your password."))
        return _page(
            request, "signin.html", 400, title="Sign in", next=target, email=email,
            errors=errors, form_action=await _run(_next_origin, target),
        )  # fmt: skip
    outcome = await _run(
        _do_signin,
        email,
        form["password"],
        target,
        _user_agent(request),
        request.cookies.get(sessions.COOKIE),
    )
    if outcome.status == "signed_in":
        return _finish(request, outcome)
    if outcome.status == "mfa":
        assert outcome.challenge is not None
        response = _redirect("/signin/mfa")
        _set_cookie(request, response, MFA_COOKIE, outcome.challenge, max_age=300)
        return response
    message = LOCKED if outcome.status == "locked" else INVALID
    return _page(
        request,
        "signin.html",
        401,
        title="Sign in",
        next=target,
        email=email,
        errors=[("email", message)],
        form_action=await _run(_next_origin, target),
    )


@router.get("/signin/mfa")
async def mfa_page(request: Request) -> Response:
    origin = await _run(_challenge_origin, request.cookies.get(MFA_COOKIE))
    if origin is None:
        return _redirect("/signin")
    return _page(request, "mfa.html", title="Two-step verification", form_action=origin)


def _do_mfa(token: str | None, code: str, agent: str, previous: str | None) -> signin.Outcome:
    with session_scope() as s:
        return signin.second_factor(s, token, code, user_agent=agent, previous=previous)


@router.post("/signin/mfa")
async def mfa_post(request: Request) -> Response:
    form = await _form(request)
    if form is None:
        return _forbidden(request)
    outcome = await _run(
        _do_mfa,
        request.cookies.get(MFA_COOKIE),
        form.get("code", ""),
        _user_agent(request),
        request.cookies.get(sessions.COOKIE),
    )
    if outcome.status == "signed_in":
        return _finish(request, outcome)
    if outcome.status == "invalid":
        return _page(
            request,
            "mfa.html",
            401,
            title="Two-step verification",
            errors=[("code", "The code is not right, or it was used already.")],
            form_action=await _run(_next_origin, outcome.next_url),
        )
    response = _page(
        request,
        "signin.html",
        401,
        title="Sign in",
        next=outcome.next_url,
        email=outcome.email,
        errors=[("email", LOCKED if outcome.status == "locked" else "Sign in again.")],
        form_action=await _run(_next_origin, outcome.next_url),
    )
    response.delete_cookie(MFA_COOKIE, path="/")
    return response


def _do_signout(token: str | None) -> bool:
    with session_scope() as s:
        return signin.sign_out(s, token)


@router.post("/signout")
async def signout(request: Request) -> Response:
    form = await _form(request)
    if form is None:
        return _forbidden(request)
    await _run(_do_signout, request.cookies.get(sessions.COOKIE))
    response = _redirect("/signin")
    response.delete_cookie(sessions.COOKIE, path="/")
    return response


def _launcher(token: str | None, tenant: str | None) -> dict[str, Any] | None:
    with session_scope(write=False) as s:
        user = signin.user_of(s, token)
        if user is None:
            return None
        tenants, current = launcher_mod.launcher(s, user, tenant)
        return {"email": user.email, "tenants": tenants, "current": current}


@router.get("/launcher")
async def launcher(request: Request) -> Response:
    found = await _run(
        _launcher, request.cookies.get(sessions.COOKIE), request.query_params.get("tenant")
    )
    if found is None:
        target = "/launcher"
        if request.url.query:
            target += "?" + request.url.query
        return _redirect("/signin?next=" + quote(signin.safe_next(target), safe=""))
    return _page(
        request,
        "launcher.html",
        title="Your apps",
        wide=True,
        signed_in=found["email"],
        tenants=found["tenants"],
        current=found["current"],
    )


def _invite_view(token: str) -> signin.InviteView | None:
    with session_scope(write=False) as s:
        try:
            return signin.invite_view(s, token)
        except NotFound:
            return None


def _missing_invite(request: Request) -> HTMLResponse:
    return _page(
        request,
        "message.html",
        404,
        title="Invitation not found",
        message="This invitation link is not valid. Ask for a new invitation.",
    )


@router.get("/invites/{token}")
async def invite_page(request: Request, token: str) -> Response:
    view = await _run(_invite_view, token)
    if view is None:
        return _missing_invite(request)
    return _page(
        request,
        "invite.html",
        title="Invitation",
        invite=view,
        token=token,
        min_length=passwords.MIN_LENGTH,
    )


def _do_accept(token: str, form: dict[str, str], agent: str) -> sessions.Started:
    with session_scope() as s:
        return signin.accept_invite(
            s,
            token,
            form.get("password", ""),
            confirm=form.get("confirm"),
            name=form.get("name", ""),
            user_agent=agent,
        )


def _note_failure(email: str) -> None:
    with session_scope() as s:
        signin.record_failure(s, email)


def _invite_error(
    request: Request, token: str, view: signin.InviteView, status: int, message: str
) -> HTMLResponse:
    return _page(
        request,
        "invite.html",
        status,
        title="Invitation",
        invite=view,
        token=token,
        min_length=passwords.MIN_LENGTH,
        errors=[("password", message[:1].upper() + message[1:])],
    )


@router.post("/invites/{token}")
async def invite_post(request: Request, token: str) -> Response:
    form = await _form(request)
    if form is None:
        return _forbidden(request)
    try:
        started = await _run(_do_accept, token, form, _user_agent(request))
    except NotFound:
        return _missing_invite(request)
    except signin.WrongPassword as exc:
        view = await _run(_invite_view, token)
        if view is None:
            return _missing_invite(request)
        await _run(_note_failure, view.email)
        return _invite_error(request, token, view, 403, str(exc))
    except MnoError as exc:
        view = await _run(_invite_view, token)
        if view is None:
            return _missing_invite(request)
        status = 400 if isinstance(exc, BadInput) else 403 if isinstance(exc, Forbidden) else 409
        return _invite_error(request, token, view, status, str(exc))
    response = _redirect("/launcher")
    max_age = int(sessions.ttl().total_seconds())
    _set_cookie(request, response, sessions.COOKIE, started.token, max_age=max_age)
    return response
