"""Standard Webhooks signing and verification; a SourceLoop-style HMAC check.

Standard Webhooks (v1): the signed content is ``{id}.{timestamp}.{body}``; the key is the
base64 part after ``whsec_``; the signature header is ``v1,<base64 HMAC-SHA256>``, several
signatures separated by spaces (key rotation). Receivers reject timestamps more than
5 minutes off and compare in constant time.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets as _secrets
import time
from collections.abc import Iterable, Mapping

from mno.errors import BadInput

PREFIX = "whsec_"
TOLERANCE_S = 5 * 60


class VerificationError(Exception):
    """The signature, id or timestamp did not check out."""


def new_secret() -> str:
    """``whsec_`` + base64 of 32 random bytes."""
    return PREFIX + base64.b64encode(_secrets.token_bytes(32)).decode()


def secret_key(secret: str) -> bytes:
    raw = secret[len(PREFIX) :] if secret.startswith(PREFIX) else secret
    try:
        return base64.b64decode(raw, validate=True)
    except (ValueError, TypeError) as exc:
        raise BadInput("malformed webhook secret", "expected whsec_ followed by base64") from exc


def sign(secret: str | bytes, msg_id: str, timestamp: int, body: bytes | str) -> str:
    """The ``v1,<base64>`` signature of one message."""
    if "." in msg_id or "." in str(timestamp):
        raise BadInput("webhook id and timestamp must not contain '.'")
    key = secret if isinstance(secret, bytes) else secret_key(secret)
    data = body.encode() if isinstance(body, str) else body
    mac = hmac.new(key, f"{msg_id}.{timestamp}.".encode() + data, hashlib.sha256).digest()
    return "v1," + base64.b64encode(mac).decode()


def signature_header(
    secrets: Iterable[str | bytes], msg_id: str, timestamp: int, body: bytes | str
) -> str:
    """Space-separated signatures, one per active secret (rotation grace)."""
    return " ".join(sign(s, msg_id, timestamp, body) for s in secrets)


def headers(
    secrets: Iterable[str | bytes], msg_id: str, timestamp: int, body: bytes | str
) -> dict[str, str]:
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": signature_header(secrets, msg_id, timestamp, body),
    }


def verify(
    secret: str,
    msg_id: str,
    timestamp: str | int,
    signature: str,
    body: bytes | str,
    *,
    tolerance_s: int = TOLERANCE_S,
    now: float | None = None,
) -> None:
    """Raise VerificationError unless one ``v1`` signature matches and the time is fresh."""
    try:
        ts = int(timestamp)
    except (TypeError, ValueError) as exc:
        raise VerificationError("invalid webhook-timestamp") from exc
    current = time.time() if now is None else now
    if ts < current - tolerance_s:
        raise VerificationError("message timestamp too old")
    if ts > current + tolerance_s:
        raise VerificationError("message timestamp too new")
    expected = sign(secret, msg_id, ts, body).split(",", 1)[1]
    for candidate in signature.split():
        version, _, value = candidate.partition(",")
        if version == "v1" and hmac.compare_digest(value.encode(), expected.encode()):
            return
    raise VerificationError("no matching signature")


def verify_headers(
    secret: str,
    hdrs: Mapping[str, str],
    body: bytes | str,
    *,
    tolerance_s: int = TOLERANCE_S,
    now: float | None = None,
) -> str:
    """Verify from a header mapping (case-insensitive); returns the webhook-id."""
    lower = {k.lower(): v for k, v in hdrs.items()}
    try:
        msg_id, ts, sig = (
            lower["webhook-id"],
            lower["webhook-timestamp"],
            lower["webhook-signature"],
        )
    except KeyError as exc:
        raise VerificationError(f"missing header {exc.args[0]}") from exc
    verify(secret, msg_id, ts, sig, body, tolerance_s=tolerance_s, now=now)
    return msg_id


def verify_hmac_hex(
    secret: str,
    body: bytes | str,
    context_id: str | None,
    timestamp_ms: int | str,
    signature: str,
    *,
    tolerance_ms: int | None = 20_000,
    now_ms: int | None = None,
) -> bool:
    """SourceLoop-style check: lowercase hex HMAC-SHA256 keyed by the secret string over
    ``body ‖ context_id ‖ timestamp_ms`` (no separators; no context for the callback
    variant), timestamp in Unix milliseconds within ``tolerance_ms`` of now."""
    try:
        ts = int(timestamp_ms)
    except (TypeError, ValueError):
        return False
    if tolerance_ms is not None:
        current = int(time.time() * 1000) if now_ms is None else now_ms
        if abs(current - ts) > tolerance_ms:
            return False
    data = body.encode() if isinstance(body, str) else body
    msg = data + (context_id or "").encode() + str(ts).encode()
    expected = hmac.new(secret.encode(), msg, hashlib.sha256).hexdigest()
    return hmac.compare_digest(expected.encode(), signature.strip().lower().encode())
