"""``HubClient``: requests to a hub, problem+json mapped to ``mno.errors``, retries.

- A problem+json answer becomes the error the local command would raise, with the same
  message (the hub's ``detail`` is the domain's message): 404 ``NotFound``; 401, 403
  ``Forbidden``; 409 and 412 ``Conflict``; 400 and 422 ``BadInput`` (exit 2); 429
  ``MnoError`` naming ``Retry-After``; 5xx ``Unavailable`` (exit 3).
- A connection that cannot be made is ``Unavailable``: "service unreachable" (exit 3).
- GETs and POSTs are retried on a connection error and on 502/503/504, a few times with
  a short back-off. Every POST carries an ``Idempotency-Key`` made once per call, so a
  retried create is answered with the first answer instead of being made twice.
- The token is sent as a bearer and never appears in an error or a ``repr``.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import httpx

from mno.errors import BadInput, Conflict, Forbidden, MnoError, NotFound, Unavailable

RETRY_STATUSES = frozenset({502, 503, 504})
DEFAULT_RETRIES = 2
DEFAULT_TIMEOUT = 30.0
MAX_PAGE = 500  # the Hub API's largest page


def segment(value: str) -> str:
    """``value`` quoted as one path segment."""
    return quote(value, safe="")


class HubClient:
    """One hub, one credential. ``request`` answers the decoded JSON body."""

    def __init__(
        self,
        server: str,
        token: str,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        retries: int = DEFAULT_RETRIES,
        backoff: float = 0.2,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        server = server.strip().rstrip("/")
        if not server.startswith(("http://", "https://")):
            raise BadInput(
                f"--server {server!r} is not an http(s) URL", "e.g. https://hub.example.com"
            )
        if not token:
            raise BadInput("--server needs a token", "pass --token or set MNO_TOKEN")
        self.server = server
        self.retries = retries
        self.backoff = backoff
        self._client = httpx.Client(
            base_url=server,
            headers={"Authorization": f"Bearer {token}", "Accept": "application/json"},
            timeout=timeout,
            transport=transport,
        )

    def __repr__(self) -> str:
        return f"HubClient({self.server!r})"

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> HubClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- requests ----------------------------------------------------------------------

    def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> Any:
        """Send one request (retried as the module says); the JSON body, or None."""
        method = method.upper()
        send_headers = dict(headers or {})
        if method == "POST":
            send_headers.setdefault("Idempotency-Key", str(uuid.uuid4()))
        query = {k: v for k, v in (params or {}).items() if v is not None}
        retriable = method in ("GET", "POST")
        attempt = 0
        while True:
            try:
                response = self._client.request(
                    method, path, json=json, params=query, headers=send_headers
                )
            except httpx.TransportError as exc:
                if retriable and attempt < self.retries and _may_retry(exc):
                    attempt += 1
                    time.sleep(self.backoff * attempt)
                    continue
                raise Unavailable(
                    f"service unreachable: {self.server} ({_reason(exc)})",
                    "check --server and that the hub is running",
                ) from exc
            if retriable and response.status_code in RETRY_STATUSES and attempt < self.retries:
                attempt += 1
                time.sleep(self.backoff * attempt)
                continue
            return _answer(response)

    def get(self, path: str, **params: Any) -> Any:
        return self.request("GET", path, params=params)

    def post(self, path: str, body: Any = None) -> Any:
        return self.request("POST", path, json=body if body is not None else {})

    def patch(self, path: str, body: Any) -> Any:
        return self.request("PATCH", path, json=body)

    def page(
        self, path: str, key: str, *, limit: int, after: str | None = None, **params: Any
    ) -> tuple[list[dict[str, Any]], str | None]:
        """One page of a cursor-paged list and the cursor of the next one."""
        body = self.get(path, **params, limit=min(limit, MAX_PAGE), cursor=after)
        return list(body[key]), body.get("next")

    def pages(self, path: str, key: str, **params: Any) -> Iterator[dict[str, Any]]:
        """Every row of a cursor-paged list (``{key: [...], "next": cursor}``)."""
        cursor = params.pop("cursor", None)
        while True:
            page = self.get(path, **params, cursor=cursor)
            yield from page[key]
            cursor = page.get("next")
            if not cursor:
                return


def _may_retry(exc: httpx.TransportError) -> bool:
    """Connection errors and timeouts: a retry may succeed (POSTs are idempotent by key)."""
    return isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout | httpx.RemoteProtocolError)


def _reason(exc: httpx.TransportError) -> str:
    if isinstance(exc, httpx.ConnectError):
        return "connection refused" if "refused" in str(exc).lower() else str(exc) or "no route"
    if isinstance(exc, httpx.TimeoutException):
        return "timed out"
    return str(exc) or type(exc).__name__


def _answer(response: httpx.Response) -> Any:
    status = response.status_code
    if status < 400:
        if status == 204 or not response.content:
            return None
        return response.json()
    message = _problem_message(response)
    if status == 404:
        raise NotFound(message)
    if status in (401, 403):
        raise Forbidden(message)
    if status in (409, 412):
        raise Conflict(message)
    if status in (400, 413, 422):
        raise BadInput(message)
    if status == 429:
        wait = response.headers.get("Retry-After", "a moment")
        raise MnoError(message, f"rate limited: retry after {wait}s")
    if status >= 500:
        raise Unavailable(f"the hub failed: {message}", f"HTTP {status}")
    raise MnoError(message, f"HTTP {status}")


def _problem_message(response: httpx.Response) -> str:
    """The problem's ``detail`` (the domain's message), else its title or the status."""
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict):
        detail = body.get("detail")
        if isinstance(detail, str) and detail:
            return detail
        if isinstance(detail, list) and detail:  # a validation error list
            first = detail[0]
            if isinstance(first, dict):
                where = ".".join(str(p) for p in first.get("loc", ()) if p != "body")
                return f"{where}: {first.get('msg', 'invalid')}" if where else str(first)
        title = body.get("title")
        if isinstance(title, str) and title:
            return title
    return f"HTTP {response.status_code} {response.reason_phrase}".strip()
