"""The only HTTP adapter of sync: an httpx client with auth (bearer, basic, a header, an
API key in a header or query parameter, OAuth2 through ``mno.sync.oauth``), a client-side
rate limit, the API's own limits (``Retry-After`` on 429/503, in seconds or as an HTTP
date; ``X-RateLimit-Remaining: 0`` waits until ``X-RateLimit-Reset``) and exponential
backoff with jitter for other failures."""

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
from typing import TYPE_CHECKING, Any

import httpx

from mno import secrets
from mno.errors import MnoError, Unavailable
from mno.sync.spec import Auth, ConnectorSpec

if TYPE_CHECKING:
    from mno.sync.oauth import TokenClient

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


def auth_values(auth: Auth, credentials: dict[str, Any] | None = None) -> dict[str, Any]:
    """The auth's fields, a connection's credentials overriding them."""
    return auth.values(credentials)


def auth_headers(auth: Auth, credentials: dict[str, Any] | None = None) -> dict[str, str]:
    """Headers for the connector's auth; ``secret:NAME`` values are resolved here only.

    A connection may override any auth field with its own secret reference."""
    values = auth_values(auth, credentials)

    def val(name: str) -> str:
        return str(secrets.resolve(values[name]))

    if auth.type == "bearer":
        return {"Authorization": f"Bearer {val('token')}"}
    if auth.type == "basic":
        raw = f"{secrets.resolve(values['username'])}:{val('password')}".encode()
        return {"Authorization": "Basic " + base64.b64encode(raw).decode()}
    if auth.type == "header" or (auth.type == "api_key" and values.get("header")):
        return {str(values["header"]): val("value")}
    return {}


def auth_params(auth: Auth, credentials: dict[str, Any] | None = None) -> dict[str, str]:
    """Query parameters for the connector's auth (an API key in the query)."""
    values = auth_values(auth, credentials)
    if auth.type == "api_key" and values.get("query"):
        return {str(values["query"]): str(secrets.resolve(values["value"]))}
    return {}


def auth_hint(auth: Auth, credentials: dict[str, Any] | None = None) -> str:
    """What to check when the API refuses the credentials: the connector's own ``hint``,
    or the secrets its auth reads (a connection's credentials override them)."""
    if auth.hint:
        return auth.hint
    if auth.type == "none":
        return "the connector sends no credentials: give it an auth section"
    values = auth_values(auth, credentials)
    fields = {
        "bearer": ["token"],
        "basic": ["username", "password"],
        "header": ["value"],
        "api_key": ["value"],
        "oauth2": ["client_id", "client_secret"],
    }
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


QUOTA_HEADERS = (
    ("X-RateLimit-Remaining", "X-RateLimit-Reset"),
    ("RateLimit-Remaining", "RateLimit-Reset"),
)


def quota_wait(response: httpx.Response) -> float | None:
    """Seconds to wait before the next request when the API says its quota is spent
    (``X-RateLimit-Remaining: 0``, or the IETF ``RateLimit-Remaining``): until
    ``X-RateLimit-Reset``, an epoch time (GitHub) or a number of seconds (others)."""
    for remaining_name, reset_name in QUOTA_HEADERS:
        remaining = response.headers.get(remaining_name)
        if remaining is None:
            continue
        try:
            if float(remaining) > 0:
                return None
            reset = float(response.headers.get(reset_name, "1"))
        except ValueError:
            return None
        wait = reset - time.time() if reset > 1e9 else reset  # epoch or delta seconds
        return min(MAX_RETRY_AFTER, max(0.0, wait))
    return None


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
        owner: str | None = None,
    ) -> None:
        """``owner`` names whose OAuth tokens the client uses (a connection's name; the
        connector's by default)."""
        self.spec = spec
        self.base_url = (base_url or spec.base_url).rstrip("/")
        self.limiter = RateLimiter(spec.rate_limit.requests, spec.rate_limit.per_seconds)
        self.max_retries = max_retries
        self.sleep = sleep
        self.auth_hint = auth_hint(spec.auth, credentials)
        self.requests = 0
        self.waited = 0.0
        self.quota_lock = threading.Lock()
        self.resume_at = 0.0  # monotonic time before which the API's quota is spent
        self.params = auth_params(spec.auth, credentials)
        limits = httpx.Limits(max_connections=max(10, spec.concurrency))
        kwargs: dict[str, Any] = {
            "headers": {"Accept": "application/json", **auth_headers(spec.auth, credentials)},
            "timeout": spec.timeout_seconds,
            "verify": tls_context(),
            "limits": limits,
        }
        self.oauth: TokenClient | None = None
        if spec.auth.type == "oauth2":
            from mno.sync import oauth  # lazy: authlib

            values = auth_values(spec.auth, credentials)
            self.oauth = oauth.make_client(
                spec.auth, values, owner or f"connector.{spec.name}", **kwargs
            )
            try:
                self.oauth.start()
            except oauth.TokenError as exc:
                self.oauth.close()
                raise AuthFailed(str(exc), None, exc.hint or self.auth_hint) from None
            self.client: httpx.Client = self.oauth
        else:
            self.client = httpx.Client(**kwargs)

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
        renewed = False
        query: httpx.QueryParams | None = None
        if self.params or params:
            # httpx replaces a URL's query with ``params``: a next-page URL keeps its own
            # (page, cursor), which win over the list's params of the same name (a
            # json-server ``_page=1`` must not send every next link back to page 1), and
            # gets an API key in the query added
            target = httpx.URL(url)
            query = httpx.QueryParams(params or {}).merge(target.params).merge(self.params)
            url = str(target.copy_with(query=None))
        while True:
            self._wait_quota()
            self.limiter.acquire()
            self.requests += 1
            sent_token = self.oauth.access_token() if self.oauth is not None else None
            try:
                response = self.client.request(
                    method,
                    url,
                    params=query,
                    content=None if body is None else json.dumps(body),
                    headers={"Content-Type": "application/json"} if body is not None else None,
                )
            except httpx.TransportError as exc:
                if attempt >= self.max_retries:
                    raise Unavailable(f"{method} {_safe(url)} failed: {exc}") from None
                self._wait(backoff_seconds(attempt))
                attempt += 1
                continue
            self._note_quota(response)
            if response.status_code < 400:
                return response
            if response.status_code in RETRY_STATUSES and attempt < self.max_retries:
                wait = None
                if response.status_code in (429, 503):
                    wait = retry_after(response)
                    if wait is None and response.status_code == 429:
                        wait = quota_wait(response)
                self._wait(wait if wait is not None else backoff_seconds(attempt))
                attempt += 1
                continue
            if response.status_code == 401 and self.oauth is not None and not renewed:
                # the API may revoke a token before it expires: one refresh, one retry
                from mno.sync.oauth import TokenError

                renewed = True
                try:
                    self.oauth.renew(sent_token)
                except TokenError as exc:
                    raise AuthFailed(str(exc), 401, exc.hint or self.auth_hint) from None
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

    def _note_quota(self, response: httpx.Response) -> None:
        wait = quota_wait(response)
        if wait:
            with self.quota_lock:
                self.resume_at = max(self.resume_at, time.monotonic() + wait)

    def _wait_quota(self) -> None:
        """Wait while the API's announced quota is spent (every thread of the client)."""
        with self.quota_lock:
            wait = self.resume_at - time.monotonic()
        if wait > 0:
            self._wait(wait)

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
