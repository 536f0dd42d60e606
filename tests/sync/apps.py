"""Small Starlette APIs on loopback (uvicorn in a thread) for the connector features:
an OAuth2 token endpoint with the API it guards, invoices with their lines (a child
stream), and listings with the pagination and quota styles real APIs use."""

from __future__ import annotations

import base64
import math
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email.utils import formatdate
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route


@contextmanager
def serve(app: Starlette) -> Iterator[str]:
    """Serve ``app`` on 127.0.0.1 (a free port) in a thread; yields its base URL."""
    config = uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning", lifespan="off")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("the test server did not start")
        time.sleep(0.01)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(5)


# -- OAuth2 -------------------------------------------------------------------------------


@dataclass
class OAuthState:
    """The token endpoint's and the API's state: issued tokens, the valid ones, counts."""

    client_id: str = "cid"
    client_secret: str = "csecret"
    code: str = "good-code"
    lifetime: int = 3600
    issued: list[str] = field(default_factory=list)
    valid: set[str] = field(default_factory=set)
    refresh: str | None = None
    grants: list[str] = field(default_factory=list)
    unauthorized: int = 0
    api_calls: int = 0
    keys: list[tuple[str, str]] = field(default_factory=list)  # (where, key) seen
    lock: threading.Lock = field(default_factory=threading.Lock)

    def issue(self, with_refresh: bool) -> dict[str, Any]:
        n = len(self.issued) + 1
        access = f"at-{n}"
        self.issued.append(access)
        self.valid.add(access)
        out: dict[str, Any] = {
            "access_token": access,
            "token_type": "Bearer",
            "expires_in": self.lifetime,
        }
        if with_refresh:
            self.refresh = f"rt-{n}"
            out["refresh_token"] = self.refresh
        return out


INVOICES = [{"id": f"inv{i}", "number": f"2026-{i:03d}", "total": 100 * i} for i in range(1, 6)]


def oauth_app(state: OAuthState) -> Starlette:
    async def token(request: Request) -> Response:
        form = await request.form()
        header = request.headers.get("authorization", "")
        basic = base64.b64decode(header[6:]).decode() if header.startswith("Basic ") else ""
        cid, _, secret = basic.partition(":")
        if not basic:  # client_secret_post
            cid, secret = str(form.get("client_id", "")), str(form.get("client_secret", ""))
        if (cid, secret) != (state.client_id, state.client_secret):
            return JSONResponse({"error": "invalid_client"}, 401)
        grant = str(form.get("grant_type"))
        with state.lock:
            state.grants.append(grant)
            if grant == "client_credentials":
                return JSONResponse(state.issue(with_refresh=False))
            if grant == "authorization_code" and form.get("code") == state.code:
                state.code = "used"  # single use
                return JSONResponse(state.issue(with_refresh=True))
            if grant == "refresh_token" and form.get("refresh_token") == state.refresh:
                return JSONResponse(state.issue(with_refresh=True))  # rotates
        return JSONResponse({"error": "invalid_grant"}, 400)

    async def invoices(request: Request) -> Response:
        auth = request.headers.get("authorization", "")
        with state.lock:
            state.api_calls += 1
            if not auth.startswith("Bearer ") or auth[7:] not in state.valid:
                state.unauthorized += 1
                return JSONResponse({"error": "invalid_token"}, 401)
        return JSONResponse({"data": INVOICES})

    async def keyed(request: Request) -> Response:
        header, query = request.headers.get("x-api-key"), request.query_params.get("api_key")
        with state.lock:
            if header:
                state.keys.append(("header", header))
            if query:
                state.keys.append(("query", query))
        if "k3y" not in (header, query):
            return JSONResponse({"error": "no key"}, 401)
        return JSONResponse({"data": INVOICES})

    return Starlette(
        routes=[
            Route("/oauth/token", token, methods=["POST"]),
            Route("/api/invoices", invoices),
            Route("/api/keyed", keyed),
        ]
    )


# -- invoices and their lines (a child stream) ----------------------------------------------


@dataclass
class Books:
    invoices: dict[str, dict[str, Any]] = field(default_factory=dict)
    lines: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    tick: int = 0
    line_calls: list[str] = field(default_factory=list)
    in_flight: int = 0
    max_in_flight: int = 0
    delay: float = 0.0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def stamp(self) -> str:
        self.tick += 1
        return f"2026-01-01T00:00:{self.tick:02d}Z"

    def add_invoice(self, iid: str, lines: int) -> None:
        self.invoices[iid] = {"id": iid, "total": 10 * lines, "updated_at": self.stamp()}
        self.lines[iid] = []
        for _ in range(lines):
            self.add_line(iid, touch=False)

    def add_line(self, iid: str, *, touch: bool = True) -> str:
        lid = f"{iid}-l{len(self.lines[iid]) + 1}"
        self.lines[iid].append({"id": lid, "sku": f"sku-{lid}", "qty": 1})
        if touch:
            self.invoices[iid]["updated_at"] = self.stamp()
        return lid


def books_app(books: Books) -> Starlette:
    async def invoices(request: Request) -> Response:
        since = request.query_params.get("updated_since")
        rows = sorted(books.invoices.values(), key=lambda r: r["updated_at"])
        rows = [r for r in rows if not since or r["updated_at"] >= since]
        return JSONResponse({"data": rows})

    async def lines(request: Request) -> Response:
        import asyncio

        iid = request.path_params["iid"]
        with books.lock:
            books.line_calls.append(iid)
            books.in_flight += 1
            books.max_in_flight = max(books.max_in_flight, books.in_flight)
        try:
            if books.delay:
                await asyncio.sleep(books.delay)
            if iid not in books.lines:
                return JSONResponse({"error": "not found"}, 404)
            return JSONResponse({"lines": books.lines[iid]})
        finally:
            with books.lock:
                books.in_flight -= 1

    return Starlette(routes=[Route("/invoices", invoices), Route("/invoices/{iid}/lines", lines)])


# -- pagination and quota styles ------------------------------------------------------------


@dataclass
class Listing:
    rows: list[dict[str, Any]]
    calls: list[dict[str, str]] = field(default_factory=list)
    quota_every: int = 0  # every N-th answer says X-RateLimit-Remaining: 0
    quota_reset: float = 1.0
    reset_style: str = "epoch"  # or "delta"
    blocked_until: float = 0.0
    too_early: int = 0
    retry_once: str = ""  # "seconds" or "date": the first request gets 429 + Retry-After
    retry_after: int = 1
    lock: threading.Lock = field(default_factory=threading.Lock)


def listing_app(listing: Listing) -> Starlette:
    def gate(request: Request) -> tuple[Response | None, dict[str, str]]:
        with listing.lock:
            listing.calls.append(dict(request.query_params))
            now = time.time()
            if now < listing.blocked_until:
                listing.too_early += 1
                return JSONResponse({"error": "quota"}, 429), {}
            if listing.retry_once:
                # an HTTP date has whole seconds: the block ends on the second it names
                until = math.ceil(now + listing.retry_after)
                value = (
                    formatdate(until, usegmt=True)
                    if listing.retry_once == "date"
                    else str(listing.retry_after)
                )
                listing.blocked_until = (
                    until if listing.retry_once == "date" else now + listing.retry_after
                )
                listing.retry_once = ""
                return JSONResponse({"error": "slow down"}, 429, {"Retry-After": value}), {}
            headers: dict[str, str] = {}
            if listing.quota_every and len(listing.calls) % listing.quota_every == 0:
                listing.blocked_until = now + listing.quota_reset
                reset = (
                    str(math.ceil(listing.blocked_until))
                    if listing.reset_style == "epoch"
                    else str(math.ceil(listing.quota_reset))
                )
                if listing.reset_style == "epoch":
                    listing.blocked_until = math.ceil(listing.blocked_until)
                headers = {"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": reset}
            elif listing.quota_every:
                headers = {"X-RateLimit-Remaining": "5"}
        return None, headers

    def rows(request: Request) -> list[dict[str, Any]]:
        status = request.query_params.get("status")
        return [r for r in listing.rows if not status or r["status"] == status]

    async def total(request: Request) -> Response:
        """Pages with the total in X-Total-Count; a page past the end is an error."""
        refused, headers = gate(request)
        if refused:
            return refused
        data = rows(request)
        page, size = int(request.query_params.get("page", 1)), int(request.query_params["per_page"])
        if (page - 1) * size >= len(data):
            return JSONResponse({"error": "page out of range"}, 400)
        chunk = data[(page - 1) * size : page * size]
        return JSONResponse(chunk, headers={**headers, "X-Total-Count": str(len(data))})

    async def nexturl(request: Request) -> Response:
        """The next page's URL in the body (relative for odd pages, absolute for even)."""
        refused, headers = gate(request)
        if refused:
            return refused
        data = rows(request)
        page = int(request.query_params.get("page", 1))
        chunk = data[(page - 1) * 4 : page * 4]
        nxt = None
        if page * 4 < len(data):
            rel = f"/next/items?page={page + 1}"
            nxt = rel if page % 2 else f"{request.base_url}".rstrip("/") + rel
        return JSONResponse({"items": chunk, "links": {"next": nxt}}, headers=headers)

    async def linked(request: Request) -> Response:
        """A Link header on every page but the last, the first page asked without any
        page parameter; the link is relative."""
        refused, headers = gate(request)
        if refused:
            return refused
        data = rows(request)
        page = int(request.query_params.get("page", 1))
        chunk = data[(page - 1) * 3 : page * 3]
        if page * 3 < len(data):
            headers["Link"] = f'</linked/items?page={page + 1}>; rel="next"'
        return JSONResponse(chunk, headers=headers)

    return Starlette(
        routes=[
            Route("/total/items", total),
            Route("/next/items", nexturl),
            Route("/linked/items", linked),
        ]
    )


def items(n: int) -> list[dict[str, Any]]:
    return [
        {
            "id": f"i{i}",
            "name": f"item {i}",
            "status": "active" if i % 3 else "archived",
            "price": i * 1.5,
            "is_deleted": False,
            "updated_at": f"2026-02-01T10:00:{i:02d}Z",
        }
        for i in range(1, n + 1)
    ]
