"""Client authentication with a signed assertion: ``private_key_jwt`` (RFC 7523 section
2.2, OpenID Connect Core section 9).

A client registers its public keys (a JWKS document, or a ``jwks_uri`` the hub fetches
through the webhooks' SSRF guard) and, instead of a secret, posts
``client_assertion_type=urn:ietf:params:oauth:client-assertion-type:jwt-bearer`` and a
``client_assertion`` JWT signed with one of its keys. The assertion must have
``iss`` = ``sub`` = the client id, an ``aud`` that is the token endpoint (or the endpoint
it was posted to, or the issuer), an ``exp`` in the future and at most ``MAX_LIFETIME``
away, and a ``jti`` that is accepted once: it is remembered until the assertion expires.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterable
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlmodel import col, delete, select

from mno import clock
from mno.errors import BadInput
from mno.store.models.oidc import OidcAssertion, OidcClient

if TYPE_CHECKING:
    from joserfc.jwk import KeySet
    from sqlmodel import Session

ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
ALGS = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512")
MAX_LIFETIME = timedelta(minutes=61)  # common clients sign for an hour
MAX_JWKS_BYTES = 64 * 1024
JWKS_TTL_S = 300.0
REFETCH_AFTER_S = 30.0  # an unknown kid fetches the keys again, at most this often
_PRIVATE = ("d", "p", "q", "dp", "dq", "qi", "k")

_lock = threading.Lock()
# jwks_uri -> (monotonic time fetched, key set)
_fetched: dict[str, tuple[float, KeySet]] = {}


def clear_cache() -> None:
    with _lock:
        _fetched.clear()


def check_jwks(doc: Any) -> dict[str, Any]:
    """A client's JWKS document with public keys only; ``BadInput`` otherwise."""
    from joserfc.errors import JoseError
    from joserfc.jwk import KeySet

    keys = doc.get("keys") if isinstance(doc, dict) else None
    if not isinstance(keys, list) or not keys or len(keys) > 20:
        raise BadInput("the JWKS must be an object with 1 to 20 keys")
    for key in keys:
        if not isinstance(key, dict) or key.get("kty") not in ("RSA", "EC", "OKP"):
            raise BadInput("every JWKS key needs kty RSA, EC or OKP")
        if any(name in key for name in _PRIVATE):
            raise BadInput("the JWKS holds a private key", "register the public keys only")
    try:
        KeySet.import_key_set({"keys": keys})
    except (JoseError, ValueError, TypeError) as exc:
        raise BadInput(f"the JWKS cannot be read: {exc}") from exc
    return {"keys": keys}


def fetch_jwks(uri: str, timeout_s: float = 5.0) -> dict[str, Any]:
    """GET a client's ``jwks_uri`` through the SSRF guard (internal addresses refused
    unless in ``webhooks.allow_networks``); raises ``BadInput``."""
    import httpcore

    from mno.webhooks import http_sender, ssrf

    sender = http_sender.sender(1)
    try:
        route = sender.route(uri, {"accept": "application/json"}, timeout_s)
    except ssrf.Refused as exc:
        raise BadInput(f"jwks_uri refused: {exc}") from exc
    try:
        with httpcore.ConnectionPool(ssl_context=sender._ssl_context()) as pool:
            resp = pool.request(
                "GET", route.url, headers=route.headers, extensions=route.extensions
            )
    except httpcore.TimeoutException as exc:
        raise BadInput(f"jwks_uri {uri} timed out") from exc
    except Exception as exc:  # noqa: BLE001 - network, TLS, protocol: one line to the caller
        raise BadInput(f"jwks_uri {uri} cannot be fetched: {exc}") from exc
    if resp.status != 200:
        raise BadInput(f"jwks_uri {uri} answered HTTP {resp.status}")
    if len(resp.content) > MAX_JWKS_BYTES:
        raise BadInput(f"jwks_uri {uri} answered more than {MAX_JWKS_BYTES} bytes")
    try:
        doc = json.loads(resp.content)
    except ValueError as exc:
        raise BadInput(f"jwks_uri {uri} did not answer JSON") from exc
    return check_jwks(doc)


def _keyset(client: OidcClient, kid: str | None) -> KeySet | None:
    from joserfc.jwk import KeySet

    if client.jwks:
        return KeySet.import_key_set(client.jwks)  # type: ignore[arg-type]
    uri = client.jwks_uri
    if not uri:
        return None
    now = time.monotonic()
    hit = _fetched.get(uri)
    stale = hit is None or hit[0] + JWKS_TTL_S <= now
    unknown = hit is not None and kid is not None and all(k.kid != kid for k in hit[1].keys)
    if stale or (unknown and hit is not None and hit[0] + REFETCH_AFTER_S <= now):
        keyset = KeySet.import_key_set(fetch_jwks(uri))  # type: ignore[arg-type]
        with _lock:
            _fetched[uri] = (now, keyset)
        return keyset
    return hit[1] if hit is not None else None


def _unverified(assertion: str) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """The header and claims of a compact JWS, not yet verified (to find the client)."""
    from joserfc import jws
    from joserfc.errors import JoseError

    try:
        obj = jws.extract_compact(assertion.encode())
        claims = json.loads(obj.payload)
    except (JoseError, ValueError, TypeError):
        return None
    if not isinstance(claims, dict):
        return None
    return dict(obj.protected), claims


def _epoch_ok(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def authenticate(
    session: Session, assertion: str, client_id: str | None, audiences: Iterable[str]
) -> tuple[OidcClient | None, str]:
    """The client that signed ``assertion`` (and, when given, whose id is ``client_id``),
    or (None, why). A valid assertion's ``jti`` is recorded in the caller's transaction."""
    from joserfc import jwt
    from joserfc.errors import JoseError

    if not assertion or len(assertion) > 8192 or assertion.count(".") != 2:
        return None, "client_assertion is not a compact JWT"
    parsed = _unverified(assertion)
    if parsed is None:
        return None, "client_assertion is not a compact JWT"
    header, claims = parsed
    sub = claims.get("sub")
    if not isinstance(sub, str) or (client_id is not None and client_id != sub):
        return None, "client_assertion sub is not the client id"
    client = (
        session.exec(select(OidcClient).where(OidcClient.client_id == sub)).first()
        if 0 < len(sub) <= 80
        else None
    )
    if client is None or not client.enabled or (not client.jwks and not client.jwks_uri):
        return None, "the client has no registered keys (private_key_jwt)"
    if header.get("alg") not in ALGS:
        return None, f"client_assertion alg must be one of {', '.join(ALGS)}"
    try:
        keyset = _keyset(client, header.get("kid"))
    except BadInput as exc:
        return None, str(exc)
    if keyset is None:
        return None, "the client has no registered keys (private_key_jwt)"
    try:
        jwt.decode(assertion, keyset, algorithms=list(ALGS))
    except (JoseError, ValueError) as exc:
        return None, f"client_assertion signature is not valid: {type(exc).__name__}"
    if claims.get("iss") != client.client_id:
        return None, "client_assertion iss must be the client id"
    aud = claims.get("aud")
    auds = [aud] if isinstance(aud, str) else aud if isinstance(aud, list) else []
    if not {a.rstrip("/") for a in auds if isinstance(a, str)} & {a.rstrip("/") for a in audiences}:
        return None, "client_assertion aud is not this token endpoint or issuer"
    now = clock.now()
    exp = claims.get("exp")
    if not isinstance(exp, int | float) or isinstance(exp, bool):
        return None, "client_assertion needs exp"
    expires = datetime.fromtimestamp(float(exp), UTC)
    if expires <= now:
        return None, "client_assertion has expired"
    if expires > now + MAX_LIFETIME:
        return None, f"client_assertion may live {int(MAX_LIFETIME.total_seconds())} s at most"
    nbf = claims.get("nbf")
    if nbf is not None and (not _epoch_ok(nbf) or float(nbf) > now.timestamp() + 30):
        return None, "client_assertion is not valid yet"
    jti = claims.get("jti")
    if not isinstance(jti, str) or not jti or len(jti) > 200:
        return None, "client_assertion needs a jti (at most 200 characters)"
    if not _remember(session, client, jti, expires):
        return None, "client_assertion was already used (jti)"
    return client, ""


def _remember(session: Session, client: OidcClient, jti: str, expires: datetime) -> bool:
    """Record a used ``jti``; False when the client used it already (and it is live)."""
    from sqlalchemy.exc import IntegrityError

    now = clock.now()
    row = session.exec(
        select(OidcAssertion).where(OidcAssertion.client_id == client.id, OidcAssertion.jti == jti)
    ).first()
    if row is not None:
        if row.expires_at > now:
            return False
        session.delete(row)
        session.flush()
    try:
        with session.begin_nested():
            session.add(OidcAssertion(client_id=client.id, jti=jti, expires_at=expires))
    except IntegrityError:  # the same jti, at the same moment, on another connection
        return False
    return True


def prune(session: Session, limit: int = 1000) -> int:
    """Forget expired assertions' jti (they are refused by their exp anyway)."""
    ids = list(
        session.exec(
            select(OidcAssertion.id)
            .where(col(OidcAssertion.expires_at) <= clock.now())
            .limit(limit)
        )
    )
    if ids:
        session.exec(delete(OidcAssertion).where(col(OidcAssertion.id).in_(ids)))
    return len(ids)
