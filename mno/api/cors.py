"""CORS for frontends: a browser may call the API only from an origin some frontend
allows (``mno frontend create --origin``).

- a preflight (``OPTIONS`` with ``Origin`` and ``Access-Control-Request-Method``) from an
  allowed origin is answered 204 with the ``Access-Control-Allow-*`` headers; from any
  other origin it is refused 403 (problem+json) without them;
- another request from an allowed origin gets ``Access-Control-Allow-Origin`` (and
  ``Vary: Origin``) on its answer; from any other origin it gets no CORS header, so the
  browser does not hand the answer to the page. Which frontend may use which origin is
  checked with its credentials (``mno.api.onboarding``).

The allowed origins are read from the store and kept for ``TTL`` seconds; an origin not
in the kept set is looked up afresh (at most once per ``MISS_TTL`` seconds).
"""

from __future__ import annotations

import threading
import time
from typing import Any

import anyio.to_thread

from mno.api.errors import error_response
from mno.store.db import session_scope
from mno.tenancy import frontends

TTL = 5.0
MISS_TTL = 0.5
METHODS = "GET, POST, PUT, PATCH, DELETE, OPTIONS"
HEADERS = "authorization, content-type, idempotency-key, if-match, x-lead-token"
EXPOSE = "etag, link, location, retry-after, ratelimit-limit, ratelimit-remaining"
MAX_AGE = "600"


class Origins:
    """The allowed origins, cached."""

    def __init__(self) -> None:
        self.allowed: set[str] = set()
        self.loaded = 0.0
        self.lock = threading.Lock()

    def _load(self) -> None:
        with session_scope(write=False) as s:
            found = frontends.allowed_origins(s)
        with self.lock:
            self.allowed = found
            self.loaded = time.monotonic()

    def allows(self, origin: str) -> bool:
        age = time.monotonic() - self.loaded
        if origin in self.allowed and age < TTL:
            return True
        if age >= MISS_TTL:
            self._load()
        return origin in self.allowed

    def clear(self) -> None:
        with self.lock:
            self.allowed, self.loaded = set(), 0.0


origins = Origins()


class FrontendCors:
    """ASGI middleware; see the module docstring."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        origin = ""
        preflight = False
        for name, value in scope["headers"]:
            if name == b"origin":
                origin = value.decode("latin-1").strip().lower()
            elif name == b"access-control-request-method":
                preflight = True
        if not origin:
            await self.app(scope, receive, send)
            return
        try:
            allowed = await anyio.to_thread.run_sync(origins.allows, origin)
        except Exception:  # noqa: BLE001 - a store outage refuses cross-origin use
            allowed = False
        if scope["method"] == "OPTIONS" and preflight:
            if not allowed:
                response = error_response(
                    403, "forbidden", f"origin {origin} is not allowed", {"Vary": "Origin"}
                )
                await response(scope, receive, send)
                return
            await send(
                {
                    "type": "http.response.start",
                    "status": 204,
                    "headers": [
                        (b"access-control-allow-origin", origin.encode()),
                        (b"access-control-allow-methods", METHODS.encode()),
                        (b"access-control-allow-headers", HEADERS.encode()),
                        (b"access-control-max-age", MAX_AGE.encode()),
                        (b"vary", b"Origin"),
                    ],
                }
            )
            await send({"type": "http.response.body", "body": b""})
            return
        if not allowed:
            await self.app(scope, receive, send)
            return

        async def send_with_cors(message: Any) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers += [
                    (b"access-control-allow-origin", origin.encode()),
                    (b"access-control-expose-headers", EXPOSE.encode()),
                    (b"vary", b"Origin"),
                ]
                message = {**message, "headers": headers}
            await send(message)

        await self.app(scope, receive, send_with_cors)
