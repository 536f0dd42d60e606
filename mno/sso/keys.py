"""Signing keys of the OpenID Connect provider (RS256 and ES256), built with joserfc.

One key of each algorithm is active and signs new tokens. ``rotate`` makes new active
keys; the old ones are retired but stay published in ``/jwks`` until every token they
signed has expired (``publish_until``), then ``prune`` removes them. The private part of
each key is sealed with the master key (``mno.crypto``); only the public JWK is in clear.
"""

from __future__ import annotations

import secrets as _secrets
import threading
import time
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from sqlmodel import col, delete, select

from mno import clock, crypto, settings
from mno.errors import BadInput
from mno.store import audit, outbox
from mno.store.models.oidc import OidcKey

if TYPE_CHECKING:
    from joserfc.jwk import ECKey, KeySet, RSAKey
    from sqlmodel import Session

ALGS = ("RS256", "ES256")
DEFAULTS = {"access_token_ttl": "10m", "id_token_ttl": "10m", "refresh_token_ttl": "30d"}
CACHE_SECONDS = 5.0


def lifetime(name: str) -> timedelta:
    """A token lifetime from the profile (``sso.<name>``), e.g. ``sso.access_token_ttl``."""
    period = settings.parse_duration(settings.profile_value(f"sso.{name}", DEFAULTS[name]))
    if period.total_seconds() <= 0:
        raise BadInput(f"sso.{name} must be positive")
    return period


def publish_after_retire() -> timedelta:
    """How long a retired key stays in JWKS: its last signed tokens' lifetime, plus a
    minute for clocks that differ."""
    return max(lifetime("access_token_ttl"), lifetime("id_token_ttl")) + timedelta(minutes=1)


@dataclass(frozen=True)
class Signer:
    kid: str
    alg: str
    key: RSAKey | ECKey


_lock = threading.Lock()
_private: dict[str, RSAKey | ECKey] = {}
# per store (its URL): (monotonic expiry, ...)
_active: dict[str, tuple[float, dict[str, Signer]]] = {}
_published: dict[str, tuple[float, KeySet, dict[str, Any]]] = {}


def clear_cache() -> None:
    with _lock:
        _active.clear()
        _published.clear()


def _store(session: Session) -> str:
    return str(session.get_bind().engine.url)


def _generate(alg: str) -> tuple[str, RSAKey | ECKey]:
    from joserfc.jwk import ECKey, RSAKey

    kid = f"{alg.lower()}-{clock.now():%Y%m%d}-{_secrets.token_hex(4)}"
    params: Any = {"kid": kid, "use": "sig", "alg": alg}
    if alg == "RS256":
        return kid, RSAKey.generate_key(2048, parameters=params, private=True)
    return kid, ECKey.generate_key("P-256", parameters=params, private=True)


def _create(session: Session, alg: str) -> OidcKey:
    kid, key = _generate(alg)
    pem = key.as_pem(private=True).decode()
    row = OidcKey(
        kid=kid,
        alg=alg,
        private_sealed=crypto.encrypt(pem),
        public_jwk=key.as_dict(private=False),
    )
    session.add(row)
    return row


def as_dict(row: OidcKey) -> dict[str, Any]:
    return {
        "kid": row.kid,
        "alg": row.alg,
        "status": row.status,
        "created_at": row.created_at,
        "retired_at": row.retired_at,
        "publish_until": row.publish_until,
    }


def ensure(session: Session) -> list[OidcKey]:
    """Make an active key for every algorithm that has none; returns the new ones."""
    have = set(session.exec(select(OidcKey.alg).where(OidcKey.status == "active")))
    made = [_create(session, alg) for alg in ALGS if alg not in have]
    for row in made:
        audit.record(
            session,
            "sso.key_created",
            target_type="oidc_key",
            target_id=row.id,
            target=row.kid,
            after={"alg": row.alg},
        )
    if made:
        clear_cache()
    return made


def rotate(session: Session) -> list[OidcKey]:
    """New active RS256 and ES256 keys; the previous ones are retired and stay published
    until their tokens can have expired."""
    now = clock.now()
    until = now + publish_after_retire()
    retired = list(session.exec(select(OidcKey).where(OidcKey.status == "active")))
    for row in retired:
        row.status = "retired"
        row.retired_at = now
        row.publish_until = until
        row.touch()
        session.add(row)
    made = [_create(session, alg) for alg in ALGS]
    session.flush()
    audit.record(
        session,
        "sso.keys_rotated",
        target_type="oidc_key",
        target_id=made[0].id,
        target=",".join(r.kid for r in made),
        before={"active": [r.kid for r in retired]},
        after={"active": [r.kid for r in made], "publish_until": until.isoformat()},
    )
    outbox.emit(
        session,
        "sso.keys_rotated",
        {"active": [r.kid for r in made], "retired": [r.kid for r in retired]},
    )
    clear_cache()
    return made


def prune(session: Session) -> int:
    """Delete retired keys whose tokens have all expired; returns how many."""
    now = clock.now()
    gone = list(
        session.exec(
            select(OidcKey.kid).where(
                OidcKey.status == "retired",
                col(OidcKey.publish_until).is_not(None),
                col(OidcKey.publish_until) <= now,
            )
        )
    )
    if not gone:
        return 0
    session.exec(delete(OidcKey).where(col(OidcKey.kid).in_(gone)))
    audit.record(
        session,
        "sso.keys_pruned",
        target_type="oidc_key",
        target_id=None,
        target=",".join(gone),
        before={"kids": gone},
    )
    clear_cache()
    return len(gone)


def list_keys(session: Session) -> list[dict[str, Any]]:
    rows = session.exec(select(OidcKey).order_by(col(OidcKey.created_at), col(OidcKey.kid)))
    return [as_dict(r) for r in rows]


def _open(row: OidcKey) -> RSAKey | ECKey:
    from joserfc.jwk import ECKey, RSAKey

    key = _private.get(row.kid)
    if key is None:
        pem = crypto.decrypt(row.private_sealed)
        params: Any = {"kid": row.kid, "use": "sig", "alg": row.alg}
        cls = RSAKey if row.alg == "RS256" else ECKey
        key = cls.import_key(pem, parameters=params)
        _private[row.kid] = key
    return key


def signer(session: Session, alg: str = "RS256") -> Signer:
    """The active key that signs with ``alg`` (created on first use)."""
    if alg not in ALGS:
        raise BadInput(f"unsupported signing algorithm {alg!r}", f"one of: {', '.join(ALGS)}")
    store = _store(session)
    cached = _active.get(store)
    if cached is None or cached[0] <= time.monotonic() or alg not in cached[1]:
        rows = list(session.exec(select(OidcKey).where(OidcKey.status == "active")))
        if {r.alg for r in rows} != set(ALGS):
            rows = [*rows, *ensure(session)]
        signers = {r.alg: Signer(r.kid, r.alg, _open(r)) for r in rows}
        cached = (time.monotonic() + CACHE_SECONDS, signers)
        with _lock:
            _active[store] = cached
    return cached[1][alg]


def published(session: Session) -> tuple[KeySet, dict[str, Any]]:
    """The keys that verify tokens (active and retired until pruned) as a joserfc
    ``KeySet`` of public keys, and as the JWKS document."""
    from joserfc.jwk import KeySet

    store = _store(session)
    cached = _published.get(store)
    if cached is not None and cached[0] > time.monotonic():
        return cached[1], cached[2]
    rows = list(session.exec(select(OidcKey).order_by(col(OidcKey.created_at).desc())))
    now = clock.now()
    jwks = {
        "keys": [
            r.public_jwk
            for r in rows
            if r.status == "active" or r.publish_until is None or r.publish_until > now
        ]
    }
    # no key yet (none made before the first token): a key set that verifies nothing
    keyset = KeySet.import_key_set(jwks) if jwks["keys"] else KeySet([])  # type: ignore[arg-type]
    with _lock:
        _published[store] = (time.monotonic() + CACHE_SECONDS, keyset, jwks)
    return keyset, jwks
