"""ASGI front of ``mno serve``: the two hot calls answered before FastAPI's routing.

- ``POST /v1/idm/authorize`` cache hits (``mno.api.idm.cached_answer``);
- ``POST /v1/dev/usage``: the route's own model, authentication, rate limit and group
  commit (``mno.api.dev.post_usage``), without the routing and dependency machinery.

Errors are rendered by the same mapping the routes use (``mno.api.errors``). Anything
else, and any request that does not fit the fast path (no credentials, no length, a
body over the limit, not JSON, NUL characters, a query string), goes to the app
unchanged.
"""

from __future__ import annotations

import json
from typing import Any

from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError

from mno.api import auth, config, dev, idm
from mno.api.errors import PROBLEM, ApiError, from_exception
from mno.api.routes import billing_available

AUTHORIZE = "/v1/idm/authorize"
USAGE = "/v1/dev/usage"


class FastPath:
    def __init__(self, app: Any) -> None:
        self.app = app
        self.usage = billing_available()  # the usage route exists

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        path = scope.get("path")
        if scope["type"] != "http" or scope["method"] != "POST" or path not in (AUTHORIZE, USAGE):
            await self.app(scope, receive, send)
            return
        header = ""
        length = -1
        json_body = False
        idem: str | None = None
        for name, value in scope["headers"]:
            if name == b"authorization":
                header = value.decode("latin-1")
            elif name == b"content-length" and value.isdigit():
                length = int(value)
            elif name == b"content-type":
                json_body = value.split(b";")[0].strip().lower() == b"application/json"
            elif name == b"idempotency-key":
                idem = value.decode("latin-1")
        limit = 2048 if path == AUTHORIZE else config.get().max_body
        if not header or length < 0 or length > limit or scope.get("query_string"):
            await self.app(scope, receive, send)
            return
        chunks = []
        more = True
        while more:
            message = await receive()
            if message["type"] != "http.request":
                await self.app(scope, _replay([message]), send)
                return
            chunks.append(message.get("body", b""))
            more = message.get("more_body", False)
        body = b"".join(chunks)
        if path == AUTHORIZE:
            await self._authorize(scope, send, header, body)
        elif not json_body or len(body) > limit or b"\x00" in body or b"\\u0000" in body:
            await self.app(scope, _replay([{"type": "http.request", "body": body}]), send)
        elif not self.usage or (idem is not None and len(idem) > dev.IDEMPOTENCY_KEY_MAX):
            await self.app(scope, _replay([{"type": "http.request", "body": body}]), send)
        else:
            await self._usage(send, header, body, idem)

    async def _authorize(self, scope: Any, send: Any, header: str, body: bytes) -> None:
        hit = idm.cached_answer(header, body)
        if hit is None:
            await self.app(scope, _replay([{"type": "http.request", "body": body}]), send)
            return
        try:
            await auth.rate(hit.key_id)
        except ApiError as exc:
            if exc.status != 429:
                raise
            await _error(send, exc)
            return
        except Exception:  # noqa: BLE001 - e.g. the store is down: the app answers (reports) it
            await self.app(scope, _replay([{"type": "http.request", "body": body}]), send)
            return
        await _send(send, 200, hit.body, [])

    async def _usage(self, send: Any, header: str, body: bytes, idem: str | None) -> None:
        try:
            caller = await auth.authenticate(header)
            try:
                request = dev.UsageRequest.model_validate_json(body)
            except ValidationError as exc:
                raise RequestValidationError(
                    [{**e, "loc": ("body", *e.get("loc", ()))} for e in exc.errors()]
                ) from exc
            data, status = await dev.post_usage(caller, request, idem)
        except Exception as exc:  # noqa: BLE001 - mapped as the routes map it, or re-raised
            await _error(send, exc)
            return
        await _send(send, status, _json(data), [])


def _json(data: Any) -> bytes:
    """As ``JSONResponse`` renders it."""
    return json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode()


async def _error(send: Any, exc: Exception) -> None:
    response = from_exception(exc)
    if response is None:
        raise exc
    headers = [
        (k.encode("latin-1"), v.encode("latin-1"))
        for k, v in response.headers.items()
        if k.lower() not in ("content-length", "content-type")
    ]
    await _send(send, response.status_code, bytes(response.body), headers, PROBLEM)


def _replay(messages: list[dict[str, Any]]) -> Any:
    async def receive() -> dict[str, Any]:
        if messages:
            return messages.pop(0)
        return {"type": "http.disconnect"}

    return receive


async def _send(
    send: Any,
    status: int,
    body: bytes,
    extra: list[tuple[bytes, bytes]],
    content_type: str = "application/json",
) -> None:
    headers = [
        (b"content-type", content_type.encode()),
        (b"content-length", str(len(body)).encode()),
        *extra,
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
