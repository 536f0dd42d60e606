"""The quick start: a working platform on the embedded store in one command.

It creates the store, an example app, a lead that is verified and converted into a
tenant, applies the example platform in ``configs/`` (when run from the repository), and
provisions the example tenant. Every step is idempotent, so running it again only
reports what already exists.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypedDict

from sqlmodel import select

from mno.gitops.apply import apply_path
from mno.nex import provisioning
from mno.store.db import get_engine, redact, session_scope
from mno.store.models.tenancy import Lead, Tenant
from mno.tenancy import apps, leads, tenants


class _ExampleApp(TypedDict):
    name: str
    code: str
    stack: str
    access: str


class _ExampleLead(TypedDict):
    email: str
    first_name: str
    last_name: str
    company: str
    country: str


class _ExampleTenant(TypedDict):
    key: str
    domains: list[str]


EXAMPLE_APP: _ExampleApp = {
    "name": "Example CRM",
    "code": "example-crm",
    "stack": "cloud",
    "access": "any",
}
EXAMPLE_LEAD: _ExampleLead = {
    "email": "founder@example-co.com",
    "first_name": "Ada",
    "last_name": "Founder",
    "company": "Example Co",
    "country": "FR",
}
EXAMPLE_TENANT: _ExampleTenant = {"key": "example-co", "domains": ["example-co.com"]}


@dataclass
class Step:
    name: str
    done: bool
    detail: str


@dataclass
class QuickstartResult:
    store: str
    steps: list[Step] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "store": self.store,
            "steps": [{"step": s.name, "changed": s.done, "detail": s.detail} for s in self.steps],
        }


def run(configs: Path | None = None) -> QuickstartResult:
    result = QuickstartResult(store=redact(str(get_engine().url)))
    with session_scope() as s:
        fresh = s.exec(select(Tenant.id).where(Tenant.key == tenants.SYSTEM_KEY)).first() is None
        tenants.ensure_system(s)
    result.steps.append(Step("store", fresh, f"ready at {result.store}"))

    with session_scope() as s:
        app, created = apps.create(s, **EXAMPLE_APP, if_not_exists=True)
    result.steps.append(Step("app", created, f"{app.code} ({app.stack}, access {app.access})"))

    with session_scope() as s:
        existing = s.exec(
            select(Lead).where(Lead.email == EXAMPLE_LEAD["email"], Lead.status == "converted")
        ).first()
    if existing is not None:
        result.steps.append(Step("lead", False, f"{existing.email} already converted"))
    else:
        with session_scope() as s:
            created_lead = leads.create(s, **EXAMPLE_LEAD, send_email=False)
            lead_id, code = str(created_lead.lead.id), created_lead.verification_code
        assert code is not None
        with session_scope() as s:
            leads.verify(s, lead_id, code)
        with session_scope() as s:
            tenant = leads.convert(
                s,
                lead_id,
                key=EXAMPLE_TENANT["key"],
                domains=EXAMPLE_TENANT["domains"],
                currency="EUR",
                timezone="Europe/Paris",
            )
        result.steps.append(
            Step("lead", True, f"{EXAMPLE_LEAD['email']} verified and converted into {tenant.key}")
        )

    configs = configs if configs is not None else Path("configs")
    if configs.is_dir():
        with session_scope() as s:
            changes = apply_path(s, configs, source="quickstart").summary()
        changed = any(changes.values())
        detail = ", ".join(f"{n} {k}d" for k, n in changes.items() if n) or "no changes"
        result.steps.append(Step("configs", changed, f"applied {configs}/: {detail}"))
    else:
        result.steps.append(
            Step("configs", False, f"no {configs}/ here (run from the repository to apply it)")
        )

    with session_scope() as s:
        tenant = tenants.get(s, EXAMPLE_TENANT["key"])
        if tenant.status in ("pending_provision", "provision_failed"):
            provisioning.provision(s, tenant.key)
            result.steps.append(Step("tenant", True, f"{tenant.key} provisioned: {tenant.status}"))
        else:
            result.steps.append(Step("tenant", False, f"{tenant.key} is {tenant.status}"))
        allowed, reason = apps.check_access(s, EXAMPLE_APP["code"], tenant)
    result.steps.append(Step("access", False, reason))
    return result


NEXT_STEPS = [
    "mno tenant list",
    "mno diff -f configs --source quickstart",
    "mno tenant show example-co -o json",
    "mno app access example-crm example-co",
    "mno audit list --target example-co",
    "mno events list",
]
