"""Encryption of secrets that every agent host needs (e.g. webhook signing keys).

Values are sealed with Fernet (AES-128-CBC + HMAC-SHA256, authenticated) under a master
key. The master key comes from the secret ``master-key`` (keyring or the fallback file),
overridden by ``MNO_MASTER_KEY``; ``mno secret init-master-key`` creates it. Every agent
host sharing a store must have the same master key.

``cryptography`` is imported inside the functions that seal or open values, so that
commands which never touch a secret start without it.
"""

from __future__ import annotations

import json
import os
from typing import TYPE_CHECKING, Any

from mno import secrets, settings
from mno.errors import Conflict, MnoError, NotFound

if TYPE_CHECKING:
    from cryptography.fernet import Fernet

MASTER_KEY_NAME = "master-key"
_cache: dict[str, Fernet] = {}


def _fernet() -> Fernet:
    from cryptography.fernet import Fernet

    key = os.environ.get(settings.ENV_MASTER_KEY) or secrets.get(MASTER_KEY_NAME)
    if not key:
        raise NotFound(
            "no master key", f"run `mno secret init-master-key` or set {settings.ENV_MASTER_KEY}"
        )
    cached = _cache.get(key)
    if cached is None:
        try:
            cached = Fernet(key.encode())
        except (ValueError, TypeError) as exc:
            raise MnoError(
                "the master key is malformed", "expected 32 url-safe base64 bytes"
            ) from exc
        _cache.clear()
        _cache[key] = cached
    return cached


def encrypt(plaintext: str) -> str:
    return _fernet().encrypt(plaintext.encode()).decode()


def decrypt(token: str) -> str:
    from cryptography.fernet import InvalidToken

    try:
        return _fernet().decrypt(token.encode()).decode()
    except InvalidToken as exc:
        raise MnoError(
            "cannot decrypt a stored secret", "is this host using the same master key?"
        ) from exc


def generate_key() -> str:
    from cryptography.fernet import Fernet

    return Fernet.generate_key().decode()


def init_master_key(force: bool = False) -> str:
    """Create the master key in the secret store; refuses to replace one unless forced."""
    if secrets.get(MASTER_KEY_NAME) and not force:
        raise Conflict(
            "a master key already exists", "replacing it makes stored secrets unreadable"
        )
    key = generate_key()
    secrets.set(MASTER_KEY_NAME, key)
    return key


def ensure_master_key() -> None:
    """Create a master key if none is configured (used by quickstart on a fresh host)."""
    if not (os.environ.get(settings.ENV_MASTER_KEY) or secrets.get(MASTER_KEY_NAME)):
        init_master_key()


ENCRYPTED_KEY = "$encrypted"


def sealed(plaintext: str) -> dict[str, str]:
    """A JSON value that carries ``plaintext`` encrypted: ``{"$encrypted": token}``.

    Event payloads use it for values only the final receiver may read (a one-time
    callback secret): the store and ``mno events list`` keep the token, and the webhook
    dispatcher reveals it in the body it signs and sends (``reveal_json``)."""
    return {ENCRYPTED_KEY: encrypt(plaintext)}


def reveal_json(text: str) -> str:
    """``text`` with every ``{"$encrypted": token}`` value decrypted (unchanged if none)."""
    if f'"{ENCRYPTED_KEY}"' not in text:
        return text

    def walk(value: Any) -> Any:
        if isinstance(value, dict):
            if set(value) == {ENCRYPTED_KEY} and isinstance(value[ENCRYPTED_KEY], str):
                return decrypt(value[ENCRYPTED_KEY])
            return {k: walk(v) for k, v in value.items()}
        if isinstance(value, list):
            return [walk(v) for v in value]
        return value

    return json.dumps(walk(json.loads(text)), separators=(",", ":"), ensure_ascii=False)
