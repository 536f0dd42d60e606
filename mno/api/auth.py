"""App authentication (HTTP Basic with the app key id and secret) and rate limits.

Verified keys are cached in-process for the authorize-cache TTL; the cache is dropped
whenever the host's access stamp moves (a rotation, a revocation), so a retired key is
refused at once on this host. Each key has a token bucket; an empty bucket answers 429
with ``Retry-After``.
"""

from __future__ import annotations

import base64
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import datetime

from fastapi import Request, Security
from fastapi.security import HTTPBasic, HTTPBasicCredentials

from mno import clock
from mno.access import revocation, secrets
from mno.api import config, threads
from mno.api.errors import ApiError

basic = HTTPBasic(auto_error=False, description="App key id and secret")


@dataclass(frozen=True)
class Caller:
    app_id: uuid.UUID
    app_code: str
    key_id: str


@dataclass
class _Entry:
    secret_hash: str
    caller: Caller
    key_expires: datetime | None
    until: float


class _Bucket:
    __slots__ = ("tokens", "at")

    def __init__(self, tokens: float, at: float) -> None:
        self.tokens = tokens
        self.at = at


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
    from mno.access import keys
    from mno.store.db import session_scope

    with session_scope(write=False) as s:
        found = keys.authenticate(s, key_id, secret)
        if found is None:
            return None
        app, key = found
        return _Entry(
            key.secret_hash,
            Caller(app.id, app.code, key.key_id),
            key.expires_at,
            time.monotonic() + max(config.get().authorize_cache, 0),
        )


def _rate(key_id: str) -> None:
    cfg = config.get()
    now = time.monotonic()
    with _lock:
        bucket = _buckets.get(key_id)
        if bucket is None:
            bucket = _buckets[key_id] = _Bucket(cfg.rate_burst, now)
        bucket.tokens = min(cfg.rate_burst, bucket.tokens + (now - bucket.at) * cfg.rate_limit)
        bucket.at = now
        if bucket.tokens < 1:
            wait = max(1, int((1 - bucket.tokens) / cfg.rate_limit + 0.999))
            raise ApiError(
                429, "rate_limited", "too many requests for this key", {"Retry-After": str(wait)}
            )
        bucket.tokens -= 1


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
    _rate(key_id)
    return entry.caller
