"""Random credentials and their hashes.

Every credential is 32 random bytes (URL-safe) behind a short prefix that says what it
is; the store keeps only its SHA-256 hex digest, which is enough for values of that
entropy (no password stretching is needed, and lookups stay one indexed equality).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets as _secrets


def new_token(prefix: str) -> str:
    return f"{prefix}_{_secrets.token_urlsafe(32)}"


def digest(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def same(a: str, b: str) -> bool:
    return hmac.compare_digest(a, b)
