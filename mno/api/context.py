"""What the API knows about the request being answered: its id and its rate limit state.

``RequestContext`` (ASGI middleware around the whole app of ``mno serve``) gives every
request an id: the client's ``X-Request-Id`` when it is a sane token (letters, digits
and ``._:+/=@-``, at most 64 characters), else a new one. The id is echoed in the
``X-Request-Id`` response header, written into problem+json bodies (``request_id``, see
``mno.api.errors``) and into the server's log lines (logger ``mno.api``: one line per
request at INFO, unhandled errors at ERROR).

A rate-limited route records its caller's bucket here (``set_rate``); the answer then
carries the IETF draft headers ``RateLimit-Limit`` (the bucket size),
``RateLimit-Remaining`` (whole requests left now) and ``RateLimit-Reset`` (seconds until
the bucket is full again). ``document`` adds these headers to the OpenAPI document.
"""

from __future__ import annotations

import logging
import math
import re
import time
import uuid
from contextvars import ContextVar
from typing import Any

log = logging.getLogger("mno.api")

HEADER = "X-Request-Id"
MAX_ID = 64
_SANE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:+/=@-]{0,63}")


class Context:
    __slots__ = ("id", "rate")

    def __init__(self, request_id: str) -> None:
        self.id = request_id
        self.rate: tuple[int, int, int] | None = None  # limit, remaining, reset seconds


_current: ContextVar[Context | None] = ContextVar("mno_api_request", default=None)


def current() -> Context | None:
    return _current.get()


def request_id() -> str | None:
    ctx = _current.get()
    return ctx.id if ctx is not None else None


def set_rate(limit: float, remaining: float, reset: float) -> None:
    """Record the caller's bucket for the answer's ``RateLimit-*`` headers (of several
    buckets spent by one request, the one with the fewest requests left)."""
    ctx = _current.get()
    if ctx is None:
        return
    state = (int(limit), max(0, int(remaining)), max(0, math.ceil(reset)))
    if ctx.rate is None or state[1] < ctx.rate[1]:
        ctx.rate = state


def sane(value: str) -> bool:
    """Whether a client's request id may be used as is."""
    return len(value) <= MAX_ID and _SANE.fullmatch(value) is not None


def new_id() -> str:
    return uuid.uuid4().hex


class RequestContext:
    """ASGI middleware: request id and rate limit headers on every HTTP answer."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        rid = None
        for name, value in scope["headers"]:
            if name == b"x-request-id":
                given = value.decode("latin-1")
                rid = given if sane(given) else None
                break
        ctx = Context(rid or new_id())
        _current.set(ctx)
        start = time.perf_counter()
        status = 0

        async def send_with_headers(message: Any) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = list(message.get("headers", ()))
                headers.append((b"x-request-id", ctx.id.encode()))
                if ctx.rate is not None:
                    limit, remaining, reset = ctx.rate
                    headers += [
                        (b"ratelimit-limit", str(limit).encode()),
                        (b"ratelimit-remaining", str(remaining).encode()),
                        (b"ratelimit-reset", str(reset).encode()),
                    ]
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, receive, send_with_headers)
        except Exception:
            log.exception(
                "%s %s failed request_id=%s", scope.get("method"), scope.get("path"), ctx.id
            )
            raise
        if log.isEnabledFor(logging.INFO):
            log.info(
                "%s %s %d %.1fms request_id=%s",
                scope.get("method"),
                scope.get("path"),
                status,
                1000 * (time.perf_counter() - start),
                ctx.id,
            )


_ID_HEADER = {
    "description": "The request's id (the client's X-Request-Id when sane, else a new one).",
    "required": True,
    "schema": {"type": "string", "maxLength": MAX_ID},
}
_RATE_HEADERS = {
    "RateLimit-Limit": "Requests the caller's bucket holds when full.",
    "RateLimit-Remaining": "Requests the caller may make now.",
    "RateLimit-Reset": "Seconds until the caller's bucket is full again.",
}
_RETRY_AFTER = {
    "description": "Seconds to wait before the next request.",
    "required": True,
    "schema": {"type": "integer", "minimum": 1},
}


def document(spec: dict[str, Any]) -> None:
    """Add ``X-Request-Id`` to every answer, ``RateLimit-*`` to the answers of the
    rate-limited routes (those that answer 429) and ``Retry-After`` to their 429."""
    for operations in spec.get("paths", {}).values():
        for operation in operations.values():
            responses = operation.get("responses", {})
            limited = "429" in responses
            for code, response in responses.items():
                headers = response.setdefault("headers", {})
                headers[HEADER] = dict(_ID_HEADER)
                if limited and code != "401":
                    for name, what in _RATE_HEADERS.items():
                        headers[name] = {
                            "description": what,
                            "schema": {"type": "integer", "minimum": 0},
                        }
                if code == "429":
                    headers["Retry-After"] = dict(_RETRY_AFTER)
