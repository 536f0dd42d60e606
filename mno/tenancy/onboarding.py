"""Onboarding over the API: leads signed up by a client (a frontend or an app), verified
by the emailed code, and converted into tenants, SourceLoop-style.

- ``create_lead`` records the lead with its onboarding row (who signed it up) and queues
  the verification email, branded by the frontend; the code is never returned. Without
  SMTP nothing is written (the code could not reach the lead).
- ``verify`` checks the code under the lead's row lock (``leads.verify_attempt``), so
  concurrent wrong guesses are counted one after another and never exceed the allowed
  attempts; success issues a *lead token* (``mnolt_…``, stored as a hash, valid
  ``onboarding.token_ttl``, default 15m) that authorizes the conversion, once.
- ``convert`` turns the lead into a tenant (the API starts its provisioning in the same
  transaction).
- Visibility: a client sees only the leads it signed up. An isolated frontend sees only
  the tenants it signed up; a shared frontend sees every tenant but an isolated one's;
  an app sees the tenants it signed up. Anything else is "not found".
"""

from __future__ import annotations

import hashlib
import hmac
import secrets as _secrets
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlmodel import col, select

from mno import clock, mail, settings
from mno.errors import Forbidden, MnoError, NotFound, Unavailable
from mno.store import audit
from mno.store.models.nex import ProvisioningRequest
from mno.store.models.onboarding import Frontend, OnboardingLead
from mno.store.models.tenancy import Lead, Tenant
from mno.tenancy import leads


def _new_token(prefix: str) -> str:
    return f"{prefix}_{_secrets.token_urlsafe(32)}"


def _digest(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


if TYPE_CHECKING:
    from collections.abc import Sequence

    from sqlmodel import Session

DEFAULT_TOKEN_TTL = "15m"
TOKEN_PREFIX = "mnolt"

# SourceLoop's numeric TenantStatus for each of mno's statuses
SOURCELOOP_STATUS = {
    "active": 0,
    "pending_provision": 1,
    "provisioning": 2,
    "provision_failed": 3,
    "offboarding": 4,
    "offboarded": 5,
    "suspended": 5,
}


@dataclass(frozen=True)
class Client:
    """Who calls: a frontend (with its customer base and branding) or an app."""

    kind: str  # "frontend" | "app"
    id: uuid.UUID
    name: str
    isolated: bool = False
    brand_name: str | None = None
    from_address: str | None = None
    logo_url: str | None = None

    @classmethod
    def of_frontend(cls, frontend: Frontend) -> Client:
        return cls(
            "frontend",
            frontend.id,
            frontend.name,
            frontend.customers == "isolated",
            frontend.brand_name,
            frontend.from_address,
            frontend.logo_url,
        )

    @property
    def actor(self) -> str:
        return f"{self.kind}:{self.name}"


def _uuid(value: str | uuid.UUID, what: str) -> uuid.UUID:
    try:
        return value if isinstance(value, uuid.UUID) else uuid.UUID(str(value))
    except ValueError as exc:
        raise NotFound(f"{what} {value} not found") from exc


def _owns(client: Client, row: OnboardingLead) -> bool:
    if client.kind == "frontend":
        return row.frontend_id == client.id
    return row.app_id == client.id


def create_lead(session: Session, client: Client, **fields: Any) -> Lead:
    """Record a lead signed up by ``client`` and queue its branded verification email."""
    if mail.config() is None:
        raise MnoError(
            "leads cannot sign up: email is not configured", "add an smtp section to the profile"
        )
    brand = {"name": client.brand_name, "logo_url": client.logo_url}
    created = leads.create(
        session,
        **fields,
        sender=client.from_address,
        brand=brand if client.brand_name else None,
    )
    if not created.emailed:  # pragma: no cover - guarded by the smtp check above
        raise Unavailable("the verification code could not be queued for email")
    row = OnboardingLead(
        lead_id=created.lead.id,
        frontend_id=client.id if client.kind == "frontend" else None,
        app_id=client.id if client.kind == "app" else None,
        isolated=client.isolated,
    )
    session.add(row)
    session.flush()
    audit.record(
        session,
        "onboarding.lead",
        target_type="lead",
        target_id=created.lead.id,
        target=created.lead.email,
        after={"client": client.actor, "isolated": client.isolated},
        actor=client.actor,
    )
    return created.lead


def lead_for(session: Session, client: Client, lead_id: str | uuid.UUID) -> OnboardingLead:
    """The onboarding row of a lead ``client`` signed up, or NotFound."""
    key = _uuid(lead_id, "lead")
    row = session.exec(select(OnboardingLead).where(OnboardingLead.lead_id == key)).first()
    if row is None or not _owns(client, row):
        raise NotFound(f"lead {lead_id} not found")
    return row


def verify(
    session: Session, client: Client, lead_id: str, code: str
) -> tuple[Lead, str | None, Exception | None]:
    """Check the code (see the module doc); returns (lead, lead token, refusal). A wrong
    code is a change to commit, so the refusal is returned rather than raised."""
    row = lead_for(session, client, lead_id)
    lead, error = leads.verify_attempt(session, str(row.lead_id), code)
    if error is not None:
        return lead, None, error
    token = _new_token(TOKEN_PREFIX)
    ttl = settings.parse_duration(settings.profile_value("onboarding.token_ttl", DEFAULT_TOKEN_TTL))
    row.token_hash = _digest(token)
    row.token_expires_at = clock.now() + ttl
    row.touch()
    session.add(row)
    return lead, token, None


def convert(
    session: Session,
    client: Client,
    lead_id: str,
    token: str | None,
    *,
    key: str,
    domains: Sequence[str],
    name: str | None = None,
    tier: str = "pooled",
) -> Tenant:
    """Turn the lead into a tenant in the caller's transaction (the caller starts its
    provisioning in the same one); the lead token from ``verify`` is required and used
    up."""
    row = lead_for(session, client, lead_id)
    lead = leads.get(session, row.lead_id, for_update=True)  # one conversion at a time
    session.refresh(row)
    if (
        not token
        or row.token_hash is None
        or row.token_expires_at is None
        or row.token_expires_at <= clock.now()
        or not hmac.compare_digest(row.token_hash, _digest(token))
    ):
        raise Forbidden(
            f"the lead token for lead {lead.id} is missing, wrong, used or expired",
            "verify the lead to get one",
        )
    tenant = leads.convert(session, str(lead.id), key=key, domains=domains, name=name, tier=tier)
    row.tenant_id = tenant.id
    row.token_hash = None  # single use
    row.token_expires_at = None
    row.touch()
    session.add(row)
    session.flush()
    return tenant


def visible_tenant(session: Session, client: Client, tenant_id: str | uuid.UUID) -> Tenant:
    """The tenant, when ``client`` may see it (see the module doc), else NotFound."""
    key = _uuid(tenant_id, "tenant")
    missing = NotFound(f"tenant {tenant_id} not found")
    tenant = session.get(Tenant, key)
    if tenant is None:
        raise missing
    row = session.exec(select(OnboardingLead).where(OnboardingLead.tenant_id == key)).first()
    if client.kind == "frontend" and not client.isolated:
        if row is not None and row.isolated:
            raise missing
        return tenant
    if row is None or not _owns(client, row):
        raise missing
    return tenant


def provisioning_status(
    session: Session, client: Client, tenant_id: str | uuid.UUID
) -> dict[str, Any]:
    """The tenant's provisioning state, with SourceLoop's numeric status."""
    tenant = visible_tenant(session, client, tenant_id)
    request = session.exec(
        select(ProvisioningRequest)
        .where(ProvisioningRequest.tenant_id == tenant.id)
        .order_by(col(ProvisioningRequest.created_at).desc())
    ).first()
    resources = tenant.resources or {}
    return {
        "id": str(tenant.id),
        "key": tenant.key,
        "name": tenant.name,
        "status": tenant.status,
        "statusCode": SOURCELOOP_STATUS.get(tenant.status),
        "reason": tenant.status_reason,
        "appPlaneUrl": resources.get("appPlaneUrl") if isinstance(resources, dict) else None,
        "request": None
        if request is None
        else {
            "contextId": request.context_id,
            "requestedAt": audit.jsonable(request.created_at),
            "expiresAt": audit.jsonable(request.expires_at),
            "answeredAt": audit.jsonable(request.used_at),
            "outcome": request.outcome,
        },
    }
