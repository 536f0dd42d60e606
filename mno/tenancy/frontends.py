"""Frontends: the sites (marketplaces, resellers' portals) through which customers sign
up, each a first-class object with its own API credentials, allowed browser origins and
branding.

- ``customers``: ``shared`` (its sign-ups join the platform's shared customer base) or
  ``isolated`` (it sees only the leads and tenants it signed up itself);
- credentials: a key id (``mnofk_…``) and a secret (``mnofs_…``) sent as HTTP Basic;
  the secret is shown once by ``create()`` and only its SHA-256 hash is stored;
- ``origins``: the browser origins (``https://host[:port]``) allowed to call the API with
  its credentials (CORS);
- branding: a name, a from-address and a logo URL used in the verification email.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets as _random
import secrets as _secrets
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from sqlmodel import col, func, select

from mno import validate
from mno.errors import BadInput, Conflict, NotFound
from mno.store import audit, outbox
from mno.store.models.onboarding import Frontend, OnboardingLead


def _new_token(prefix: str) -> str:
    return f"{prefix}_{_secrets.token_urlsafe(32)}"


def _digest(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


if TYPE_CHECKING:
    from sqlmodel import Session

CUSTOMERS = ("shared", "isolated")
KEY_PREFIX = "mnofk_"
_NAME = re.compile(r"^[a-z0-9][a-z0-9-]{0,39}$")
_LOOPBACK = ("localhost", "127.0.0.1", "[::1]")


@dataclass
class Issued:
    frontend: Frontend
    secret: str


def origin(value: str) -> str:
    """A browser origin ``scheme://host[:port]`` (https, or http on loopback), lowercased."""
    raw = (value or "").strip()
    parts = urlsplit(raw)
    host = (parts.hostname or "").lower()
    if (
        parts.scheme not in ("https", "http")
        or not host
        or parts.path not in ("", "/")
        or parts.query
        or parts.fragment
        or parts.username
        or parts.password
    ):
        raise BadInput(f"invalid origin {value!r}", "e.g. https://shop.example.com[:port]")
    if parts.scheme == "http" and parts.netloc.lower().split(":")[0] not in _LOOPBACK:
        raise BadInput(f"origin {value!r} must use https", "http only for localhost")
    try:
        port = parts.port
    except ValueError as exc:
        raise BadInput(f"invalid origin {value!r}", "bad port") from exc
    if port == {"https": 443, "http": 80}[parts.scheme]:
        port = None  # browsers leave the default port out of Origin
    netloc = f"[{host}]" if ":" in host else host
    return f"{parts.scheme}://{netloc}" + (f":{port}" if port else "")


def view(frontend: Frontend) -> dict[str, Any]:
    return {
        "id": str(frontend.id),
        "name": frontend.name,
        "customers": frontend.customers,
        "origins": list(frontend.origins),
        "brand_name": frontend.brand_name,
        "from_address": frontend.from_address,
        "logo_url": frontend.logo_url,
        "key_id": frontend.key_id,
        "created_at": audit.jsonable(frontend.created_at),
    }


def _logo(value: str | None) -> str | None:
    if not value:
        return None
    parts = urlsplit(value)
    if parts.scheme != "https" or not parts.hostname:
        raise BadInput(f"invalid logo URL {value!r}", "an https URL")
    return value


def _from_address(value: str | None) -> str | None:
    if not value:
        return None
    text = value.strip()
    if any(c in text for c in "\r\n"):
        raise BadInput("the from-address must be one line")
    match = re.search(r"<([^<>]+)>\s*$", text)
    validate.email(match.group(1) if match else text)
    return text[:300]


def create(
    session: Session,
    name: str,
    *,
    customers: str = "shared",
    origins: list[str] | None = None,
    brand_name: str | None = None,
    from_address: str | None = None,
    logo_url: str | None = None,
) -> Issued:
    """Record a frontend and issue its credentials (the secret is returned only here)."""
    if not _NAME.match(name or ""):
        raise BadInput(f"invalid frontend name {name!r}", "a-z, 0-9 and '-', up to 40 chars")
    validate.one_of(customers, CUSTOMERS, "customer base")
    clean = list(dict.fromkeys(origin(o) for o in origins or []))
    if session.exec(select(Frontend).where(Frontend.name == name)).first() is not None:
        raise Conflict(f"frontend {name} already exists", "see `mno frontend list`")
    secret = _new_token("mnofs")
    frontend = Frontend(
        name=name,
        customers=customers,
        origins=clean,
        brand_name=validate.text(brand_name, "brand name", 200),
        from_address=_from_address(from_address),
        logo_url=_logo(logo_url),
        key_id=f"{KEY_PREFIX}{_random.token_hex(10)}",
        secret_hash=_digest(secret),
    )
    session.add(frontend)
    session.flush()
    audit.record(
        session,
        "frontend.create",
        target_type="frontend",
        target_id=frontend.id,
        target=name,
        after=view(frontend),
    )
    outbox.emit(
        session,
        "frontend.created",
        {"id": str(frontend.id), "name": name, "customers": customers},
    )
    return Issued(frontend, secret)


def get(session: Session, name: str) -> Frontend:
    frontend = session.exec(select(Frontend).where(Frontend.name == name)).first()
    if frontend is None:
        raise NotFound(f"frontend {name} not found", "see `mno frontend list`")
    return frontend


def list_frontends(session: Session) -> list[Frontend]:
    return list(session.exec(select(Frontend).order_by(col(Frontend.name))))


def signups(session: Session, frontend: Frontend) -> int:
    return int(
        session.exec(select(func.count()).where(OnboardingLead.frontend_id == frontend.id)).one()
    )


def delete(session: Session, name: str) -> Frontend:
    """Delete a frontend that signed nobody up (its credentials stop working at once)."""
    frontend = get(session, name)
    count = signups(session, frontend)
    if count:
        raise Conflict(
            f"frontend {name} signed up {count} lead(s)",
            "a frontend with sign-ups is kept so that its customers stay its own",
        )
    before = view(frontend)
    session.delete(frontend)
    audit.record(
        session,
        "frontend.delete",
        target_type="frontend",
        target_id=frontend.id,
        target=name,
        before=before,
    )
    outbox.emit(session, "frontend.deleted", {"id": str(frontend.id), "name": name})
    session.flush()
    return frontend


def authenticate(session: Session, key_id: str, secret: str) -> Frontend | None:
    """The frontend whose credentials these are, or None."""
    if not key_id.startswith(KEY_PREFIX):
        return None
    frontend = session.exec(select(Frontend).where(Frontend.key_id == key_id)).first()
    if frontend is None or not hmac.compare_digest(frontend.secret_hash, _digest(secret)):
        return None
    return frontend


def allowed_origins(session: Session) -> set[str]:
    """Every origin some frontend allows."""
    found: set[str] = set()
    for origins in session.exec(select(Frontend.origins)):
        found.update(origins or [])
    return found
