"""The only HTTP adapter of sync: an httpx client with auth, a client-side rate limit,
``Retry-After`` on 429/503 and exponential backoff with jitter for other failures."""

from __future__ import annotations

import base64
import functools
import json
import random
import ssl
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import httpx

from mno import secrets
from mno.errors import MnoError, Unavailable
from mno.sync.spec import Auth, ConnectorSpec

RETRY_STATUSES = {429, 500, 502, 503, 504}
MAX_RETRY_AFTER = 300.0


class HttpError(MnoError):
    """The API answered with an error that retrying did not fix."""

    exit_code = 1

    def __init__(self, message: str, status: int | None = None, hint: str | None = None) -> None:
        super().__init__(message, hint)
        self.status = status


class AuthFailed(HttpError):
    """The API refused the credentials (401 or 403); the hint says what to check."""


class RateLimiter:
    """A token bucket: ``requests`` per ``per_seconds``, shared by one client's threads."""

    def __init__(self, requests: int, per_seconds: float) -> None:
        self.capacity = float(requests)
        self.rate = requests / per_seconds
        self.tokens = float(requests)
        self.at = time.monotonic()
        self.lock = threading.Lock()

    def acquire(self) -> None:
        while True:
            with self.lock:
                now = time.monotonic()
                self.tokens = min(self.capacity, self.tokens + (now - self.at) * self.rate)
                self.at = now
                if self.tokens >= 1:
                    self.tokens -= 1
                    return
                wait = (1 - self.tokens) / self.rate
            time.sleep(wait)


def auth_headers(auth: Auth, credentials: dict[str, Any] | None = None) -> dict[str, str]:
    """Headers for the connector's auth; ``secret:NAME`` values are resolved here only.

    A connection may override any auth field with its own secret reference."""
    values = auth.model_dump()
    for key, value in (credentials or {}).items():
        if key in values and value:
            values[key] = value

    def val(name: str) -> str:
        return str(secrets.resolve(values[name]))

    if auth.type == "bearer":
        return {"Authorization": f"Bearer {val('token')}"}
    if auth.type == "basic":
        raw = f"{secrets.resolve(values['username'])}:{val('password')}".encode()
        return {"Authorization": "Basic " + base64.b64encode(raw).decode()}
    if auth.type == "header":
        return {str(values["header"]): val("value")}
    return {}


def auth_hint(auth: Auth, credentials: dict[str, Any] | None = None) -> str:
    """What to check when the API refuses the credentials: the connector's own ``hint``,
    or the secrets its auth reads (a connection's credentials override them)."""
    if auth.hint:
        return auth.hint
    if auth.type == "none":
        return "the connector sends no credentials: give it an auth section"
    values = auth.model_dump()
    for key, value in (credentials or {}).items():
        if key in values and value:
            values[key] = value
    fields = {"bearer": ["token"], "basic": ["username", "password"], "header": ["value"]}
    refs = [
        str(values[f]).partition(":")[2] for f in fields[auth.type] if secrets.is_ref(values[f])
    ]
    what = f"{auth.type} auth"
    if not refs:
        return f"check the connector's {what}"
    names = ", ".join(refs)
    return f"check the {what} secret {names} (mno secret set {refs[0]})"


def retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("Retry-After")
    if not value:
        return None
    try:
        return min(MAX_RETRY_AFTER, max(0.0, float(value)))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return min(MAX_RETRY_AFTER, max(0.0, (when - datetime.now(UTC)).total_seconds()))


def backoff_seconds(attempt: int, base: float = 0.5, cap: float = 30.0) -> float:
    """Exponential with full jitter (AWS style): uniform(0, min(cap, base * 2^attempt))."""
    return random.uniform(0, min(cap, base * (2**attempt))) + base / 10


@functools.cache
def tls_context() -> ssl.SSLContext:
    """The TLS context every client of this process shares (httpx's default: certificates
    verified, ``SSL_CERT_FILE``/``SSL_CERT_DIR`` honoured): loading the CA bundle takes
    tens of milliseconds, too much to repeat for every run."""
    return httpx.create_ssl_context()


class RestClient:
    def __init__(
        self,
        spec: ConnectorSpec,
        credentials: dict[str, Any] | None = None,
        base_url: str | None = None,
        *,
        max_retries: int = 5,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.spec = spec
        self.base_url = (base_url or spec.base_url).rstrip("/")
        self.limiter = RateLimiter(spec.rate_limit.requests, spec.rate_limit.per_seconds)
        self.max_retries = max_retries
        self.sleep = sleep
        self.auth_hint = auth_hint(spec.auth, credentials)
        self.requests = 0
        self.waited = 0.0
        self.client = httpx.Client(
            headers={"Accept": "application/json", **auth_headers(spec.auth, credentials)},
            timeout=spec.timeout_seconds,
            verify=tls_context(),
        )

    def close(self) -> None:
        self.client.close()

    def __enter__(self) -> RestClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def url(self, path: str) -> str:
        return path if path.startswith(("http://", "https://")) else self.base_url + path

    def request(
        self,
        method: str,
        path: str,
        *,
        params: dict[str, Any] | None = None,
        body: Any = None,
    ) -> httpx.Response:
        url = self.url(path)
        attempt = 0
        while True:
            self.limiter.acquire()
            self.requests += 1
            try:
                response = self.client.request(
                    method,
                    url,
                    params=params,
                    content=None if body is None else json.dumps(body),
                    headers={"Content-Type": "application/json"} if body is not None else None,
                )
            except httpx.TransportError as exc:
                if attempt >= self.max_retries:
                    raise Unavailable(f"{method} {_safe(url)} failed: {exc}") from None
                self._wait(backoff_seconds(attempt))
                attempt += 1
                continue
            if response.status_code < 400:
                return response
            if response.status_code in RETRY_STATUSES and attempt < self.max_retries:
                wait = None
                if response.status_code in (429, 503):
                    wait = retry_after(response)
                self._wait(wait if wait is not None else backoff_seconds(attempt))
                attempt += 1
                continue
            if response.status_code in (401, 403):
                raise AuthFailed(
                    f"{method} {_safe(url)} answered {response.status_code}: the credentials "
                    "were refused",
                    response.status_code,
                    self.auth_hint,
                )
            raise HttpError(
                f"{method} {_safe(url)} answered {response.status_code}", response.status_code
            )

    def _wait(self, seconds: float) -> None:
        self.waited += seconds
        self.sleep(seconds)

    def get_json(
        self, path: str, params: dict[str, Any] | None = None
    ) -> tuple[Any, httpx.Response]:
        response = self.request("GET", path, params=params)
        try:
            return response.json(), response
        except ValueError:
            raise HttpError(f"GET {_safe(self.url(path))} did not answer JSON") from None


def _safe(url: str) -> str:
    """The URL without its query string (tokens sometimes travel there)."""
    return url.split("?", 1)[0]


def next_link(response: httpx.Response) -> str | None:
    """The ``rel="next"`` target of an RFC 8288 ``Link`` header."""
    links = response.links  # httpx parses Link headers
    nxt = links.get("next")
    return nxt.get("url") if nxt else None
