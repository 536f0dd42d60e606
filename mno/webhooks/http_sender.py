"""The HTTP adapter: signed POSTs over keep-alive connections, SSRF-checked.

Requests go through httpcore (the connection layer under httpx) straight from byte
headers: on this workload the httpx ``Client`` layers (URL and header models, cookies,
auth, redirects) cost more CPU than the request itself, and the dispatcher needs none of
them (redirects are never followed).

A process-wide pool of ``concurrency`` threads, each keeping its own connection pool, so
connections stay open across ticks. ``submit_all(jobs)`` starts a batch: one drain task
per thread pulls the batch's jobs in turn, so a following batch starts on each thread as
soon as the thread runs out of work in this one. Each request goes to the address the SSRF
guard resolved and checked (the URL's host is replaced by that address; the ``Host``
header and TLS SNI keep the name, and the certificate is verified against the name).

TLS verification uses the certifi bundle, or the PEM file named by
``MNO_WEBHOOKS_CA_BUNDLE`` / ``webhooks.ca_bundle`` (profile, then platform YAML) for
receivers behind a private CA.

httpcore and certifi are imported when the first request is made, not with this module.
"""

from __future__ import annotations

import os
import ssl
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from mno import __version__, clock, crypto, platform, settings, signing
from mno.errors import BadInput
from mno.webhooks import ssrf

USER_AGENT = f"mno/{__version__}"
RESPONSE_EXCERPT = 4096
ROUTE_TTL_S = 30.0
# headers the dispatcher sets itself; an endpoint's custom headers cannot replace them
RESERVED = frozenset(
    {
        "host",
        "content-type",
        "content-length",
        "user-agent",
        "transfer-encoding",
        "connection",
        "webhook-id",
        "webhook-timestamp",
        "webhook-signature",
    }
)
_UA = USER_AGENT.encode()


@dataclass
class Job:
    delivery_id: Any
    url: str
    msg_id: str
    body: str
    secrets: list[str]
    timeout_s: float = 15.0
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class Outcome:
    delivery_id: Any
    at: Any
    status_code: int | None = None
    latency_ms: float = 0.0
    error_class: str | None = None
    error: str | None = None
    response: str | None = None
    retry_after: str | None = None
    timed_out: bool = False
    success: bool | None = None  # set by non-HTTP channels (email)

    @property
    def ok(self) -> bool:
        if self.success is not None:
            return self.success
        return self.status_code is not None and 200 <= self.status_code < 300


def build_request(job: Job, timestamp: int) -> tuple[dict[str, str], bytes]:
    """The headers and body of one attempt (names lowercase)."""
    body = crypto.reveal_json(job.body).encode()  # sealed values are opened only here
    hdrs = {k.lower(): v for k, v in job.headers.items() if k.lower() not in RESERVED}
    hdrs.update(signing.headers(job.secrets, job.msg_id, timestamp, body))
    hdrs["content-type"] = "application/json"
    hdrs["user-agent"] = USER_AGENT
    return hdrs, body


def ca_bundle() -> str | None:
    """The PEM file of trusted CAs for HTTPS receivers; None means the certifi bundle."""
    value = os.environ.get(settings.ENV_WEBHOOKS_CA_BUNDLE) or settings.profile_value(
        "webhooks.ca_bundle"
    )
    if not value:
        value = platform.load().webhooks.ca_bundle
    return str(value) if value else None


def ssl_context(cafile: str | None) -> ssl.SSLContext:
    if cafile is None:
        import certifi  # lazy (see the module docstring)

        cafile = certifi.where()
    if not os.path.isfile(cafile):
        raise BadInput(f"webhooks.ca_bundle: no file {cafile}")
    return ssl.create_default_context(cafile=cafile)


@dataclass
class Route:
    """Where one endpoint URL's requests go, after the SSRF check."""

    url: Any  # httpcore.URL of the checked address
    headers: list[tuple[bytes, bytes]]  # host + the endpoint's own headers
    extensions: dict[str, Any]
    until: float


class _Batch:
    """Jobs shared by the drain tasks of one batch, and their outcomes in job order."""

    def __init__(self, jobs: list[Job]) -> None:
        self.jobs = jobs
        self.outcomes: list[Outcome | None] = [None] * len(jobs)
        self.next = iter(range(len(jobs)))
        self.lock = threading.Lock()


@dataclass
class Pending:
    """A batch being sent; ``results()`` waits for it."""

    batch: _Batch
    futures: list[Any]

    def results(self) -> list[Outcome]:
        for f in self.futures:
            f.result()
        return [o for o in self.batch.outcomes if o is not None]


class Sender:
    """A process-wide pool of ``concurrency`` threads, each with its own keep-alive
    connection pool. (On this workload threads with sync connections measured several
    times faster than one asyncio client with the same number of connections.)"""

    def __init__(self, concurrency: int = 32) -> None:
        self.concurrency = max(1, concurrency)
        self.pool = ThreadPoolExecutor(max_workers=self.concurrency, thread_name_prefix="webhooks")
        self.local = threading.local()
        self.clients: list[Any] = []
        self.resolver = ssrf.Resolver(ssrf.allow_networks())
        self.cafile = ca_bundle()
        self._ssl: Any = None
        self._routes: dict[tuple[str, tuple[tuple[str, str], ...], float], Route] = {}

    def _ssl_context(self) -> Any:
        if self._ssl is None:
            self._ssl = ssl_context(self.cafile)
        return self._ssl

    def _client(self) -> Any:
        client = getattr(self.local, "client", None)
        if client is None:
            import httpcore

            client = httpcore.ConnectionPool(
                ssl_context=self._ssl_context(), max_connections=8, max_keepalive_connections=8
            )
            self.local.client = client
            self.clients.append(client)
        return client

    def close(self) -> None:
        self.pool.shutdown(wait=True)
        for c in self.clients:
            c.close()

    def send_all(self, jobs: list[Job]) -> list[Outcome]:
        if not jobs:
            return []
        if len(jobs) == 1:
            return [self._send(jobs[0])]
        return self.submit_all(jobs).results()

    def submit_all(self, jobs: list[Job]) -> Pending:
        """Start sending a batch; the caller records the previous one meanwhile."""
        batch = _Batch(jobs)
        n = min(self.concurrency, len(jobs))
        return Pending(batch, [self.pool.submit(self._drain, batch) for _ in range(n)])

    def _drain(self, batch: _Batch) -> None:
        while True:
            with batch.lock:
                i = next(batch.next, None)
            if i is None:
                return
            batch.outcomes[i] = self._send(batch.jobs[i])

    def route(self, url: str, headers: dict[str, str], timeout_s: float) -> Route:
        """The checked address for ``url`` (cached for ``ROUTE_TTL_S``, like DNS answers)."""
        key = (url, tuple(headers.items()), timeout_s)
        hit = self._routes.get(key)
        now = time.monotonic()
        if hit is not None and hit.until > now:
            return hit
        import httpcore

        parts = urlsplit(url)
        host = parts.hostname or ""
        https = parts.scheme == "https"
        port = parts.port or (443 if https else 80)
        addr = self.resolver.resolve(host, port)  # raises ssrf.Refused
        ip = f"[{addr}]" if addr.version == 6 else str(addr)
        netloc = ip if parts.port is None else f"{ip}:{parts.port}"
        target = urlunsplit(parts._replace(netloc=netloc, fragment=""))
        hdrs = [(b"host", parts.netloc.rsplit("@", 1)[-1].encode())]
        hdrs += [
            (k.lower().encode(), v.encode())
            for k, v in headers.items()
            if k.lower() not in RESERVED
        ]
        ext: dict[str, Any] = {
            "timeout": {"connect": timeout_s, "read": timeout_s, "write": timeout_s, "pool": 60.0}
        }
        if https:
            ext["sni_hostname"] = host
        route = Route(httpcore.URL(target), hdrs, ext, now + ROUTE_TTL_S)
        if len(self._routes) > 10_000:
            self._routes.clear()
        self._routes[key] = route
        return route

    def _send(self, job: Job) -> Outcome:
        import httpcore

        at = clock.now()
        out = Outcome(delivery_id=job.delivery_id, at=at)
        start = time.perf_counter()
        try:
            route = self.route(job.url, job.headers, job.timeout_s)
            body = crypto.reveal_json(job.body).encode()  # sealed values are opened only here
            ts = int(at.timestamp())
            hdrs = route.headers + [
                (b"content-type", b"application/json"),
                (b"user-agent", _UA),
                (b"content-length", str(len(body)).encode()),
                (b"webhook-id", job.msg_id.encode()),
                (b"webhook-timestamp", str(ts).encode()),
                (
                    b"webhook-signature",
                    signing.signature_header(job.secrets, job.msg_id, ts, body).encode(),
                ),
            ]
            with self._client().stream(
                "POST", route.url, headers=hdrs, content=body, extensions=route.extensions
            ) as resp:
                out.status_code = resp.status
                chunks: list[bytes] = []
                size = 0
                for chunk in resp.iter_stream():
                    chunks.append(chunk)
                    size += len(chunk)
                    if size >= RESPONSE_EXCERPT:
                        break  # the rest is not read; the connection is then not reused
                for name, value in resp.headers:
                    if name.lower() == b"retry-after":
                        out.retry_after = value.decode("latin-1")
            if size:
                out.response = b"".join(chunks)[:RESPONSE_EXCERPT].decode("utf-8", "replace")
            if not out.ok:
                out.error_class = f"http_{out.status_code}"
                out.error = f"HTTP {out.status_code}"
        except ssrf.Refused as exc:
            out.error_class, out.error = "ssrf_refused", str(exc)
        except httpcore.TimeoutException as exc:
            out.error_class, out.error, out.timed_out = "timeout", str(exc) or "timed out", True
        except Exception as exc:  # noqa: BLE001 - network, TLS, protocol: fails only this item
            # reported: the error is recorded as this attempt's error class and message
            out.error_class, out.error = type(exc).__name__, str(exc) or type(exc).__name__
        out.latency_ms = (time.perf_counter() - start) * 1000
        return out


_senders: dict[tuple[int, str, str], Sender] = {}
_lock = threading.Lock()


def sender(concurrency: int) -> Sender:
    """The process's sender for this concurrency (and the current allow list and CAs)."""
    key = (
        concurrency,
        os.environ.get(settings.ENV_WEBHOOKS_ALLOW_NETWORKS, ""),
        os.environ.get(settings.ENV_WEBHOOKS_CA_BUNDLE, ""),
    )
    with _lock:
        s = _senders.get(key)
        if s is None:
            s = _senders[key] = Sender(concurrency)
        return s


def reset() -> None:
    with _lock:
        for s in _senders.values():
            try:
                s.close()
            except OSError:  # a connection the peer already dropped
                pass
        _senders.clear()
