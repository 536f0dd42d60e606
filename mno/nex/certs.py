"""Operator-supplied TLS certificates for instance domains, for the HTTPS edge.

``mno instance domain cert set DOMAIN --cert F --key F`` keeps a certificate chain (PEM,
leaf first) and its private key for a domain, or for a wildcard (``*.example.com``) that
covers every name one label below. The key is sealed under the master key
(``mno.crypto``): the store, the audit trail, events and output only ever hold the
certificate's names, fingerprint and expiry. The edge (``mno.nex.edge``) opens the keys
to load them into Caddy; setting a domain's certificate again rotates it, and the next
edge sync serves the new one without restarting Caddy.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlmodel import Session, select

from mno import clock, crypto, validate
from mno.errors import BadInput, NotFound
from mno.store import audit, outbox
from mno.store.models.nex_edge import DomainCert


@dataclass(frozen=True)
class Parsed:
    cert_pem: str
    key_pem: str
    names: list[str]
    fingerprint: str
    not_after: datetime


@dataclass(frozen=True)
class Loaded:
    """A certificate with its opened key, for the edge proxy only."""

    domain: str
    names: list[str]
    cert_pem: str
    key_pem: str
    fingerprint: str


def check_domain(value: str) -> str:
    """A domain or a wildcard ``*.domain``, lower-cased."""
    value = (value or "").strip().lower()
    if value.startswith("*."):
        return "*." + validate.domain(value[2:])
    return validate.domain(value)


def covers(name: str, host: str) -> bool:
    """Whether a certificate name (maybe ``*.x``) covers ``host``: wildcards match one
    label, as TLS clients check them."""
    name, host = name.lower(), host.lower()
    if name == host:
        return True
    if name.startswith("*."):
        head, _, rest = host.partition(".")
        return bool(head) and rest == name[2:]
    return False


def parse(cert_text: str, key_text: str) -> Parsed:
    """Check a PEM chain and its unencrypted private key belong together."""
    from cryptography import x509
    from cryptography.exceptions import UnsupportedAlgorithm
    from cryptography.hazmat.primitives import serialization
    from cryptography.x509.oid import NameOID

    try:
        chain = x509.load_pem_x509_certificates(cert_text.encode())
    except ValueError:
        raise BadInput("the certificate file holds no PEM certificate") from None
    leaf = chain[0]
    try:
        key = serialization.load_pem_private_key(key_text.encode(), password=None)
    except TypeError:
        raise BadInput("the private key is passphrase-protected", "give it unencrypted") from None
    except (ValueError, UnsupportedAlgorithm):
        raise BadInput("the key file holds no PEM private key") from None
    spki = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    if key.public_key().public_bytes(*spki) != leaf.public_key().public_bytes(*spki):
        raise BadInput("the private key does not belong to the certificate")
    names: list[str] = []
    try:
        san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName)
        names = [str(n).lower() for n in san.value.get_values_for_type(x509.DNSName)]
    except x509.ExtensionNotFound:
        names = [
            str(a.value).lower() for a in leaf.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        ]
    not_after = leaf.not_valid_after_utc.astimezone(UTC)
    pem = "".join(c.public_bytes(serialization.Encoding.PEM).decode() for c in chain)
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()
    fingerprint = hashlib.sha256(leaf.public_bytes(serialization.Encoding.DER)).hexdigest()
    return Parsed(pem, key_pem, sorted(set(names)), fingerprint, not_after)


def _view(row: DomainCert) -> dict[str, Any]:
    return {
        "domain": row.domain,
        "names": list(row.names or []),
        "fingerprint": row.fingerprint,
        "not_after": audit.jsonable(row.not_after),
        "updated_at": audit.jsonable(row.updated_at),
    }


def set_cert(session: Session, domain: str, cert_text: str, key_text: str) -> dict[str, Any]:
    """Keep (or replace) the certificate served for ``domain``; the key is sealed."""
    domain = check_domain(domain)
    parsed = parse(cert_text, key_text)
    if not any(covers(n, domain) for n in parsed.names):
        raise BadInput(
            f"the certificate does not cover {domain}",
            f"its names: {', '.join(parsed.names) or 'none'}",
        )
    if parsed.not_after <= clock.now():
        raise BadInput(f"the certificate expired at {audit.jsonable(parsed.not_after)}")
    row = session.exec(select(DomainCert).where(DomainCert.domain == domain)).first()
    before = _view(row) if row is not None else None
    if row is None:
        row = DomainCert(
            domain=domain,
            names=parsed.names,
            cert_pem=parsed.cert_pem,
            key_enc=crypto.encrypt(parsed.key_pem),
            fingerprint=parsed.fingerprint,
            not_after=parsed.not_after,
        )
    else:
        row.names = parsed.names
        row.cert_pem = parsed.cert_pem
        row.key_enc = crypto.encrypt(parsed.key_pem)
        row.fingerprint = parsed.fingerprint
        row.not_after = parsed.not_after
        row.touch()
    session.add(row)
    session.flush()
    after = _view(row)
    audit.record(
        session,
        "domain_cert.set",
        target_type="domain_cert",
        target_id=row.id,
        target=domain,
        before=before,
        after=after,
    )
    outbox.emit(session, "certificate.set", after | {"rotated": before is not None})
    session.flush()
    return after


def remove(session: Session, domain: str) -> dict[str, Any]:
    """Forget a domain's certificate; the edge goes back to its ``tls`` mode for it."""
    domain = check_domain(domain)
    row = session.exec(select(DomainCert).where(DomainCert.domain == domain)).first()
    if row is None:
        raise NotFound(f"no certificate for {domain}", "see `mno instance domain cert list`")
    before = _view(row)
    session.delete(row)
    audit.record(
        session,
        "domain_cert.remove",
        target_type="domain_cert",
        target_id=row.id,
        target=domain,
        before=before,
    )
    outbox.emit(session, "certificate.removed", {"domain": domain})
    session.flush()
    return before


def list_certs(session: Session) -> list[dict[str, Any]]:
    rows = session.exec(select(DomainCert).order_by(DomainCert.domain)).all()
    return [_view(r) for r in rows]


def load_all(session: Session) -> list[Loaded]:
    """Every certificate with its key opened (never shown; for the edge proxy)."""
    rows = session.exec(select(DomainCert).order_by(DomainCert.domain)).all()
    return [
        Loaded(r.domain, list(r.names or []), r.cert_pem, crypto.decrypt(r.key_enc), r.fingerprint)
        for r in rows
    ]
