"""App API keys: a public key id and a secret, of which only a SHA-256 hash is kept.

``rotate()`` issues a new pair and gives every older live key an expiry ``grace`` from
now (``access.key_grace`` in the profile, default 24h), so clients can switch over.
"""

from __future__ import annotations

import secrets as _random
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from sqlmodel import col, select

from mno import clock, settings
from mno.access import revocation, secrets
from mno.errors import BadInput
from mno.store import audit, outbox
from mno.store.models.access import AppKey
from mno.store.models.tenancy import App
from mno.tenancy import apps

if TYPE_CHECKING:
    from sqlmodel import Session

DEFAULT_GRACE = "24h"


def as_dict(key: AppKey, app: App) -> dict[str, Any]:
    now = clock.now()
    live = key.expires_at is None or key.expires_at > now
    return {
        "app": app.code,
        "key_id": key.key_id,
        "status": "active" if key.expires_at is None else ("retiring" if live else "expired"),
        "expires_at": audit.jsonable(key.expires_at),
        "created_at": audit.jsonable(key.created_at),
    }


@dataclass
class Issued:
    key: AppKey
    secret: str
    view: dict[str, Any]


def rotate(session: Session, code: str, *, grace: str | None = None) -> Issued:
    app = apps.get(session, code)
    period = settings.parse_duration(
        grace if grace is not None else settings.profile_value("access.key_grace", DEFAULT_GRACE)
    )
    if period < timedelta(0):
        raise BadInput("the grace period must not be negative")
    now = clock.now()
    until = now + period
    retiring = []
    for old in session.exec(select(AppKey).where(AppKey.app_id == app.id)):
        if old.expires_at is None or old.expires_at > until:
            old.expires_at = until
            old.touch()
            session.add(old)
            retiring.append(old.key_id)
    secret = secrets.new_token("mnosk")
    key = AppKey(
        app_id=app.id, key_id=f"mnoak_{_random.token_hex(10)}", secret_hash=secrets.digest(secret)
    )
    session.add(key)
    session.flush()
    audit.record(
        session,
        "app.keys.rotate",
        target_type="app",
        target_id=app.id,
        target=app.code,
        after={"key_id": key.key_id, "retiring": retiring},
    )
    outbox.emit(
        session,
        "app.key_rotated",
        {"app": app.code, "key_id": key.key_id, "retiring": retiring, "until": until},
    )
    revocation.bump(session)
    return Issued(key, secret, as_dict(key, app))


def list_keys(session: Session, code: str) -> list[dict[str, Any]]:
    app = apps.get(session, code)
    rows = session.exec(
        select(AppKey).where(AppKey.app_id == app.id).order_by(col(AppKey.created_at).desc())
    )
    return [as_dict(k, app) for k in rows]


def authenticate(session: Session, key_id: str, secret: str) -> tuple[App, AppKey] | None:
    """The app of a live key whose secret matches; None otherwise."""
    row = session.exec(
        select(AppKey, App).where(AppKey.key_id == key_id, AppKey.app_id == App.id)
    ).first()
    if row is None:
        return None
    key, app = row
    if key.expires_at is not None and key.expires_at <= clock.now():
        return None
    if not secrets.same(key.secret_hash, secrets.digest(secret)) or not app.enabled:
        return None
    return app, key
