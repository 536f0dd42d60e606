"""Encryption of secrets that every agent host needs (e.g. webhook signing keys).

Values are sealed with Fernet (AES-128-CBC + HMAC-SHA256, authenticated) under a master
key. The master key comes from the secret ``master-key`` (keyring or the fallback file),
overridden by ``MNO_MASTER_KEY``. It is created the first time a value is sealed on a
host that has none, with a notice on stderr (``mno secret init-master-key`` creates it
ahead of time). Opening a value never creates one: a host without the key is told to copy
it (``mno secret export-master-key`` on a host that has it, ``mno secret
import-master-key`` here). Every agent host sharing a store must have the same key.

``cryptography`` is imported inside the functions that seal or open values, so that
commands which never touch a secret start without it.
"""

from __future__ import annotations

import json
import os
import sys
from typing import TYPE_CHECKING, Any

from mno import secrets, settings
from mno.errors import BadInput, Conflict, MnoError, NotFound

if TYPE_CHECKING:
    from cryptography.fernet import Fernet

MASTER_KEY_NAME = "master-key"
_cache: dict[str, Fernet] = {}


COPY_HINT = (
    "copy it from a host that has it: `mno secret export-master-key` there, then "
    f"`mno secret import-master-key` here (or set {settings.ENV_MASTER_KEY})"
)


def _fernet(create: bool = False) -> Fernet:
    from cryptography.fernet import Fernet

    key = current_key()
    if not key and create:
        key = init_master_key()
        sys.stderr.write(
            f"Created the master key that seals stored secrets ({secrets.backend_name()}). "
            "Other hosts sharing this store need the same key: run `mno secret "
            "export-master-key` here and `mno secret import-master-key` there.\n"
        )
    if not key:
        raise NotFound("no master key on this host: stored secrets cannot be opened", COPY_HINT)
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


def current_key() -> str | None:
    """The master key in force: ``MNO_MASTER_KEY``, else the stored one (None: none)."""
    return os.environ.get(settings.ENV_MASTER_KEY) or secrets.get(MASTER_KEY_NAME)


def encrypt(plaintext: str) -> str:
    """Seal ``plaintext``; a host without a master key creates one first."""
    return _fernet(create=True).encrypt(plaintext.encode()).decode()


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


def check_key(key: str) -> str:
    """``key`` if it is a usable master key (32 url-safe base64 bytes)."""
    from cryptography.fernet import Fernet

    key = key.strip()
    try:
        Fernet(key.encode())
    except (ValueError, TypeError):
        raise BadInput(
            "not a master key", "expected the 44-character key `export-master-key` prints"
        ) from None
    return key


def import_master_key(key: str, force: bool = False) -> bool:
    """Store a master key copied from another host. Returns False when this host already
    had that very key; refuses to replace another one unless forced."""
    key = check_key(key)
    existing = secrets.get(MASTER_KEY_NAME)
    if existing == key:
        return False
    if existing and not force:
        raise Conflict(
            "this host has another master key", "replacing it makes secrets sealed here unreadable"
        )
    secrets.set(MASTER_KEY_NAME, key)
    _cache.clear()
    return True


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
