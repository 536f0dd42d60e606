"""App authentication (HTTP Basic with the app key id and secret) and rate limits.

Verified keys are cached in-process for the authorize-cache TTL; the cache is dropped
whenever the host's access stamp moves (a rotation, a revocation), so a retired key is
refused at once on this host. Each key has a token bucket in the store, shared by every
API process (``mno.access.ratelimit``); an empty bucket answers 429 with ``Retry-After``.
Each answer carries the bucket's state in ``RateLimit-*`` headers (``mno.api.context``).
"""

from __future__ import annotations

import asyncio
import base64
import math
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import datetime

from fastapi import Request, Security
from fastapi.security import HTTPBasic, HTTPBasicCredentials

from mno import clock
from mno.access import keys, ratelimit, revocation, secrets
from mno.api import config, context, threads
from mno.api.errors import ApiError
from mno.store.db import session_scope

basic = HTTPBasic(auto_error=False, description="App key id and secret")


@dataclass(frozen=True)
class AppRef:
    """What the API needs of the calling app (see ``mno.access.customers``)."""

    id: uuid.UUID
    code: str
    owner_id: uuid.UUID


@dataclass(frozen=True)
class Caller:
    app_id: uuid.UUID
    app_code: str
    key_id: str
    owner_id: uuid.UUID

    @property
    def app(self) -> AppRef:
        return AppRef(self.app_id, self.app_code, self.owner_id)


@dataclass
class _Entry:
    secret_hash: str
    caller: Caller
    key_expires: datetime | None
    until: float


class _Bucket:
    """Tokens this process took from the key's store bucket and has not spent yet."""

    __slots__ = (
        "tokens",
        "until",
        "empty_until",
        "lock",
        "refilling",
        "inflight",
        "waiting",
        "left",
        "taken_at",
    )

    def __init__(self) -> None:
        self.tokens = 0
        self.until = 0.0  # held tokens lapse then (monotonic), so none is hoarded
        self.empty_until = 0.0  # the store said empty: refuse locally until then
        self.lock = threading.Lock()  # held only for a few attribute reads and writes
        self.refilling = threading.Lock()  # one store round trip per key at a time
        self.inflight: asyncio.Task[None] | None = None  # the refill requests wait on
        self.waiting = 0  # requests waiting for it: the chunk covers them all
        self.left = 0.0  # tokens the store bucket held after the last chunk was taken
        self.taken_at = 0.0  # when (monotonic)


CHUNK_SECONDS = 0.05  # a chunk is this many seconds of the rate (at least one token)
CHUNK_TTL = 1.0  # seconds a process may hold a chunk before unspent tokens lapse

_keys: dict[str, _Entry] = {}
_stamp: tuple[int, bytes] | None = None
_buckets: dict[str, _Bucket] = {}
_lock = threading.Lock()


def fresh_stamp() -> bool:
    """Drop the key cache if access changed on this host; True when it was kept."""
    global _stamp
    now_stamp = revocation.current()
    if now_stamp != _stamp:
        _keys.clear()
        _stamp = now_stamp
        return False
    return True


def clear() -> None:
    global _stamp
    _keys.clear()
    _buckets.clear()
    _stamp = None


def _unauthorized(message: str = "bad app credentials") -> ApiError:
    return ApiError(401, "unauthorized", message, {"WWW-Authenticate": 'Basic realm="mno"'})


def _lookup(key_id: str, secret: str) -> _Entry | None:
    with session_scope(write=False) as s:
        found = keys.authenticate(s, key_id, secret)
        if found is None:
            return None
        app, key = found
        return _Entry(
            key.secret_hash,
            Caller(app.id, app.code, key.key_id, app.owner_id),
            key.expires_at,
            time.monotonic() + max(config.get().authorize_cache, 0),
        )


def _limited(retry_after: float) -> ApiError:
    wait = max(1, math.ceil(retry_after))
    cfg = config.get()
    context.set_rate(cfg.rate_burst, 0, cfg.rate_burst / cfg.rate_limit)
    return ApiError(
        429, "rate_limited", "too many requests for this key", {"Retry-After": str(wait)}
    )


def _bucket(key_id: str) -> _Bucket:
    bucket = _buckets.get(key_id)
    if bucket is None:
        with _lock:
            bucket = _buckets.setdefault(key_id, _Bucket())
    return bucket


def _spend(bucket: _Bucket, now: float) -> bool:
    """Spend a held token; True when one was there. Raises 429 while known empty."""
    with bucket.lock:
        if bucket.tokens > 0 and bucket.until > now:
            bucket.tokens -= 1
            return True
        if bucket.empty_until > now:
            raise _limited(bucket.empty_until - now)
    return False


def _refill(key_id: str, bucket: _Bucket) -> None:
    """Take a chunk of tokens from the key's store bucket (on a store thread)."""
    cfg = config.get()
    with bucket.refilling:
        now = time.monotonic()
        with bucket.lock:
            if (bucket.tokens > 0 and bucket.until > now) or bucket.empty_until > now:
                return  # another request refilled it meanwhile
        chunk = max(math.ceil(cfg.rate_limit * CHUNK_SECONDS), bucket.waiting)
        want = max(1, min(int(cfg.rate_burst), chunk))
        with session_scope() as s:
            taken = ratelimit.take(s, key_id, cfg.rate_limit, cfg.rate_burst, want)
        now = time.monotonic()
        with bucket.lock:
            bucket.tokens = taken.tokens
            bucket.left = taken.left
            bucket.taken_at = now
            bucket.until = now + CHUNK_TTL
            bucket.empty_until = now + taken.retry_after if taken.tokens == 0 else 0.0


def _report(bucket: _Bucket, now: float) -> None:
    """The key's bucket for the answer's ``RateLimit-*`` headers: the tokens this
    process holds plus what the store bucket held after the last chunk, refilled since
    (other processes' spending since then is not seen)."""
    cfg = config.get()
    held = bucket.tokens
    store = min(cfg.rate_burst - held, bucket.left + cfg.rate_limit * (now - bucket.taken_at))
    remaining = math.floor(max(0.0, store) + held)
    context.set_rate(cfg.rate_burst, remaining, (cfg.rate_burst - remaining) / cfg.rate_limit)


async def rate(key_id: str) -> None:
    """Spend one of the key's tokens, or raise 429 with ``Retry-After``.

    The bucket lives in the store (shared by every API process); this process spends
    the chunk it took locally and goes back to the store only when the chunk is gone."""
    bucket = _bucket(key_id)
    loop = asyncio.get_running_loop()
    for _ in range(100):  # each round takes tokens from the store or learns it is empty
        now = time.monotonic()
        if _spend(bucket, now):
            if context.current() is not None:
                _report(bucket, now)
            return
        task = bucket.inflight
        if task is None or task.done() or task.get_loop() is not loop:
            task = bucket.inflight = loop.create_task(threads.run(_refill, key_id, bucket))
        bucket.waiting += 1
        try:
            await asyncio.shield(task)
        finally:
            bucket.waiting -= 1
    raise _limited(1.0)


def parse_basic(header: str | None) -> tuple[str, str] | None:
    if not header or not header[:6].lower() == "basic ":
        return None
    try:
        raw = base64.b64decode(header[6:].strip(), validate=True).decode()
    except (ValueError, UnicodeDecodeError):
        return None
    key_id, sep, secret = raw.partition(":")
    return (key_id, secret) if sep and key_id and secret else None


async def app_caller(
    request: Request, _creds: HTTPBasicCredentials | None = Security(basic)
) -> Caller:
    """The dependency every API route uses: the calling app, or 401/429."""
    return await authenticate(request.headers.get("authorization"))


def cached_key(key_id: str) -> _Entry | None:
    return _keys.get(key_id)


async def authenticate(header: str | None) -> Caller:
    """The app behind an ``Authorization: Basic`` header (rate limited), or 401/429."""
    pair = parse_basic(header)
    if pair is None:
        raise _unauthorized("HTTP Basic credentials (app key id and secret) are required")
    key_id, secret = pair
    fresh_stamp()
    entry = _keys.get(key_id)
    if (
        entry is not None
        and entry.until > time.monotonic()
        and (entry.key_expires is None or entry.key_expires > clock.now())
    ):
        if not secrets.same(entry.secret_hash, secrets.digest(secret)):
            raise _unauthorized()
    else:
        stamp = revocation.current()
        entry = await threads.run(_lookup, key_id, secret)
        if entry is None:
            raise _unauthorized()
        if stamp == revocation.current():
            _keys[key_id] = entry
    await rate(key_id)
    return entry.caller
