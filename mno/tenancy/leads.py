"""Leads: SourceLoop-style sign-ups, verified by email before they become tenants.

Done safer than the original: the verification code carries 128 bits of randomness, only
its SHA-256 hash is stored, it expires (24 h by default, ``leads.code_ttl`` in the
profile), it works once, and five wrong attempts lock the lead.

With SMTP configured in the profile the code is emailed: ``create()`` queues a direct
email through the mail port (``mno.mail.queue_direct``, template ``lead_verification``)
that the dispatcher sends with retries; the code travels sealed under the master key and
never enters the outbox.
Otherwise it is returned once by ``create()`` so the operator can pass it on.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets as pysecrets
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlmodel import col, select

from mno import clock, mail, settings, validate
from mno.errors import BadInput, Conflict, InvalidTransition, NotFound
from mno.store import audit, lookup, outbox, paging
from mno.store.models.tenancy import Lead, Tenant
from mno.tenancy import tenants

if TYPE_CHECKING:
    from sqlmodel import Session

MAX_ATTEMPTS = 5
DEFAULT_CODE_TTL = "24h"


@dataclass
class CreatedLead:
    lead: Lead
    verification_code: str | None  # only when it was not emailed
    emailed: bool


def _hash(code: str) -> str:
    return hashlib.sha256(code.encode()).hexdigest()


def new_code() -> str:
    """A verification code with 128 bits of randomness."""
    return pysecrets.token_urlsafe(16)


def view(lead: Lead) -> dict[str, Any]:
    return {
        "id": str(lead.id),
        "email": lead.email,
        "first_name": lead.first_name,
        "last_name": lead.last_name,
        "company": lead.company,
        "country": lead.country,
        "city": lead.city,
        "zip": lead.zip,
        "address": lead.address,
        "status": lead.status,
        "failed_attempts": lead.failed_attempts,
        "code_expires_at": audit.jsonable(lead.code_expires_at),
        "verified_at": audit.jsonable(lead.verified_at),
        "converted_at": audit.jsonable(lead.converted_at),
        "tenant_id": str(lead.tenant_id) if lead.tenant_id else None,
        "created_at": audit.jsonable(lead.created_at),
    }


def _payload(lead: Lead) -> dict[str, Any]:
    return {"id": str(lead.id), "email": lead.email, "company": lead.company}


def get(session: Session, lead_id: str | uuid.UUID, *, for_update: bool = False) -> Lead:
    """The lead ``lead_id``; with ``for_update`` its row stays locked until the
    transaction ends (``SELECT … FOR UPDATE`` on PostgreSQL, read afresh; SQLite's writing
    transaction already holds the database lock)."""
    key = lookup.resolve_id(session, Lead, lead_id, "lead", "see `mno lead list`")
    lead = session.get(Lead, key, with_for_update=for_update, populate_existing=for_update)
    if lead is None:
        raise NotFound(f"lead {lead_id} not found", "see `mno lead list`")
    return lead


def create(
    session: Session,
    *,
    email: str,
    first_name: str,
    last_name: str,
    company: str,
    country: str | None = None,
    city: str | None = None,
    zip: str | None = None,
    address: str | None = None,
    send_email: bool = True,
    sender: str | None = None,
    brand: dict[str, Any] | None = None,
) -> CreatedLead:
    """Record a lead and issue its verification code (queued for email when SMTP is
    configured, else returned once). ``sender`` and ``brand`` (name, logo_url) are a
    frontend's branding for the email."""
    email = validate.email(email)
    for label, value in (
        ("first name", first_name),
        ("last name", last_name),
        ("company", company),
    ):
        if not (value or "").strip():
            raise BadInput(f"{label} must not be empty")
    taken = session.exec(
        select(Lead).where(Lead.email == email, col(Lead.status).in_(["verified", "converted"]))
    ).first()
    if taken is not None:
        raise Conflict(f"a validated lead with {email} already exists", f"lead {taken.id}")
    code = new_code()
    ttl = settings.parse_duration(settings.profile_value("leads.code_ttl", DEFAULT_CODE_TTL))
    lead = Lead(
        email=email,
        first_name=first_name.strip(),
        last_name=last_name.strip(),
        company=company.strip(),
        country=validate.country(country),
        city=city,
        zip=zip,
        address=address,
        code_hash=_hash(code),
        code_expires_at=clock.now() + ttl,
    )
    session.add(lead)
    session.flush()
    audit.record(
        session,
        "lead.create",
        target_type="lead",
        target_id=lead.id,
        target=email,
        after={k: v for k, v in audit.snapshot(lead).items() if k != "code_hash"},
    )
    event = outbox.emit(session, "lead.created", _payload(lead))
    if send_email and mail.config() is not None:
        mail.queue_direct(
            session,
            event,
            target_id=lead.id,
            to=email,
            template="lead_verification",
            context={
                "data": _payload(lead) | {"first_name": lead.first_name},
                "ttl_hours": int(ttl.total_seconds() // 3600),
                "brand": brand or {},
            },
            sealed={"code": code},
            sender=sender,
        )
        return CreatedLead(lead, None, True)
    return CreatedLead(lead, code, False)


def _audit_attempt(session: Session, lead: Lead, action: str, before: dict[str, Any]) -> None:
    audit.record(
        session,
        action,
        target_type="lead",
        target_id=lead.id,
        target=lead.email,
        before=before,
        after={"status": lead.status, "failed_attempts": lead.failed_attempts},
    )


def verify(session: Session, lead_id: str, code: str) -> Lead:
    """Check a verification code. A wrong code counts; the fifth locks the lead.

    A wrong attempt is itself a committed change (the counter), so callers should commit
    even when this raises: use ``verify_attempt()`` which returns the outcome instead.
    """
    lead, error = verify_attempt(session, lead_id, code)
    if error is not None:
        raise error
    return lead


def verify_attempt(session: Session, lead_id: str, code: str) -> tuple[Lead, Exception | None]:
    """Check a code and return the lead with the refusal, if any (see ``verify``). The
    lead's row is locked first, so concurrent guesses are counted one after another and
    the lockout holds however many arrive at once."""
    lead = get(session, lead_id, for_update=True)
    if lead.status == "locked":
        return lead, InvalidTransition(f"lead {lead.id} is locked", "too many wrong codes")
    if lead.status != "pending":
        return lead, InvalidTransition(f"lead {lead.id} is already {lead.status}")
    before = {"status": lead.status, "failed_attempts": lead.failed_attempts}
    if lead.code_hash is None or lead.code_expires_at is None:
        return lead, InvalidTransition(f"lead {lead.id} has no code to verify")
    if clock.now() >= lead.code_expires_at:
        return lead, InvalidTransition(
            f"the code for lead {lead.id} expired", "create the lead again for a new code"
        )
    if not hmac.compare_digest(lead.code_hash, _hash(code or "")):
        lead.failed_attempts += 1
        if lead.failed_attempts >= MAX_ATTEMPTS:
            lead.status = "locked"
            lead.code_hash = None
        lead.touch()
        session.add(lead)
        _audit_attempt(session, lead, "lead.verify_failed", before)
        if lead.status == "locked":
            outbox.emit(session, "lead.locked", _payload(lead))
            return lead, InvalidTransition(f"wrong code; lead {lead.id} is now locked")
        left = MAX_ATTEMPTS - lead.failed_attempts
        return lead, BadInput(f"wrong code for lead {lead.id}", f"{left} attempt(s) left")
    lead.status = "verified"
    lead.code_hash = None  # single use
    lead.verified_at = clock.now()
    lead.touch()
    session.add(lead)
    _audit_attempt(session, lead, "lead.verify", before)
    outbox.emit(session, "lead.verified", _payload(lead))
    return lead, None


def convert(
    session: Session,
    lead_id: str,
    *,
    key: str,
    domains: Sequence[str],
    name: str | None = None,
    tier: str = "pooled",
    skip_domain_check: bool = False,
    currency: str = "USD",
    timezone: str = "UTC",
) -> Tenant:
    """Turn a verified lead into a tenant in pending_provision, the lead as primary admin."""
    lead = get(session, lead_id)
    if lead.status == "converted":
        raise InvalidTransition(f"lead {lead.id} was already converted")
    if lead.status != "verified":
        raise InvalidTransition(f"lead {lead.id} is {lead.status}", "verify it first")
    clean = [validate.domain(d) for d in domains]
    if not clean:
        raise BadInput("convert needs at least one --domain")
    email_domain = validate.email_domain(lead.email)
    if not skip_domain_check and email_domain not in clean:
        raise BadInput(
            f"the lead's email domain {email_domain} is not among the tenant's domains",
            "add it with --domain or pass --skip-domain-check",
        )
    tenant, _ = tenants.create(
        session,
        key,
        name=name or lead.company,
        tier=tier,
        domains=clean,
        currency=currency,
        timezone=timezone,
        address=lead.address,
        city=lead.city,
        zip=lead.zip,
        country=lead.country,
    )
    tenants.add_contact(
        session,
        tenant.key,
        name=f"{lead.first_name} {lead.last_name}",
        email=lead.email,
        type="admin",
        primary=True,
    )
    lead.status = "converted"
    lead.converted_at = clock.now()
    lead.tenant_id = tenant.id
    lead.touch()
    session.add(lead)
    audit.record(
        session,
        "lead.convert",
        target_type="lead",
        target_id=lead.id,
        target=lead.email,
        before={"status": "verified"},
        after={"status": "converted", "tenant": tenant.key},
        tenant_id=tenant.id,
    )
    outbox.emit(session, "lead.converted", _payload(lead) | {"tenant": tenant.key}, tenant.id)
    session.flush()
    return tenant


def list_leads(
    session: Session, *, status: str | None = None, limit: int | None = None
) -> list[Lead]:
    stmt = _leads(status).order_by(col(Lead.created_at).desc())
    if limit:
        stmt = stmt.limit(limit)
    return list(session.exec(stmt))


_LEAD_ORDER = [col(Lead.created_at), col(Lead.id)]


def _leads(status: str | None) -> Any:
    stmt = select(Lead)
    if status:
        stmt = stmt.where(Lead.status == status)
    return stmt


def page_leads(
    session: Session,
    *,
    status: str | None = None,
    after: str | None = None,
    limit: int = paging.DEFAULT_LIMIT,
) -> paging.Page[Lead]:
    """One page of leads, newest first, after the cursor ``after``."""
    return paging.page_of(session, _leads(status), _LEAD_ORDER, after, limit, descending=True)


def stream_leads(
    session: Session, *, status: str | None = None, after: str | None = None
) -> Iterator[Lead]:
    """Every lead, newest first, read a chunk at a time."""
    return paging.each(session, _leads(status), _LEAD_ORDER, after, descending=True)
