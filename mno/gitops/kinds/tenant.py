"""``kind: Tenant``: a tenant, its parent (managing client) and domains.

``metadata.name`` is the tenant key. The status is not declared: it belongs to the
provisioner. Deleting a tenant by prune offboards it first and needs ``--allow-offboard``.

Store models and domain modules are imported inside the methods that use them: the registry
imports every adapter, and a command that touches one kind should not build every area's
tables.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Annotated, Any, Literal

import sqlalchemy as sa
from pydantic import AfterValidator, Field, field_validator
from sqlmodel import col

from mno import platform, validate
from mno.errors import Conflict
from mno.gitops.kinds.base import Kind, Spec, blank_to_none, rule
from mno.money import check_currency
from mno.store.types import table_of

if TYPE_CHECKING:
    from sqlmodel import Session

TEXT_FIELDS = ("address", "city", "zip", "region", "country")
Domain = Annotated[str, AfterValidator(lambda v: rule(validate.domain, v))]


class ContactSpec(Spec):
    """A contact of the tenant."""

    name: str
    email: str
    type: Literal["admin", "billing", "technical", "other"] = "admin"
    primary: bool = False

    @field_validator("email")
    @classmethod
    def _email(cls, v: str) -> str:
        return rule(validate.email, v)

    @field_validator("name")
    @classmethod
    def _cname(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("contact name must not be empty")
        return v.strip()


class TenantSpec(Spec):
    """A tenant. Omitted fields are not managed by the document."""

    name: str | None = Field(default=None, description="Display name (default: the key).")
    tier: str = Field(
        default="pooled",
        pattern=platform.TIER_NAME,
        description="pooled, silo or a tier the platform YAML declares.",
    )
    parent: str | None = Field(
        default=None, description="Key of the managing tenant (default: system)."
    )
    domains: list[Domain] = Field(default_factory=list, description="Domains of the tenant.")
    currency: str = Field(default="USD", description="Billing currency (ISO 4217).")
    timezone: str = Field(default="UTC", description="IANA timezone.")
    address: str | None = None
    city: str | None = None
    zip: str | None = None
    region: str | None = None
    country: str | None = Field(default=None, description="ISO 3166-1 alpha-2 country.")
    metadata: dict[str, Any] = Field(default_factory=dict, description="Free-form metadata.")
    contacts: list[ContactSpec] = Field(default_factory=list, description="Contacts (by email).")

    @field_validator("tier")
    @classmethod
    def _tier(cls, v: str) -> str:
        names = platform.load().tier_names()  # the platform YAML in effect
        if v not in names:
            raise ValueError(f"unknown tier {v!r} (one of: {', '.join(names)})")
        return v

    @field_validator("contacts")
    @classmethod
    def _contacts(cls, v: list[ContactSpec]) -> list[ContactSpec]:
        emails = [c.email for c in v]
        if len(set(emails)) != len(emails):
            raise ValueError("a contact email is listed twice")
        if sum(c.primary for c in v) > 1:
            raise ValueError("at most one contact is primary")
        return sorted(v, key=lambda c: c.email)

    @field_validator("name")
    @classmethod
    def _name(cls, v: str | None) -> str | None:
        if v is not None and not v.strip():
            raise ValueError("name must not be empty")
        return v.strip() if v else v

    @field_validator("parent")
    @classmethod
    def _parent(cls, v: str | None) -> str | None:
        if v in (None, "system"):
            return None
        return rule(validate.tenant_key, v)

    @field_validator("domains")
    @classmethod
    def _domains(cls, v: list[str]) -> list[str]:
        if len(set(v)) != len(v):
            raise ValueError("a domain is listed twice")
        return sorted(v)

    @field_validator("currency")
    @classmethod
    def _currency(cls, v: str) -> str:
        return rule(check_currency, v)

    @field_validator("timezone")
    @classmethod
    def _timezone(cls, v: str) -> str:
        return rule(validate.timezone, v)

    @field_validator("country")
    @classmethod
    def _country(cls, v: str | None) -> str | None:
        return rule(validate.country, v)

    @field_validator("address", "city", "zip", "region")
    @classmethod
    def _blank(cls, v: str | None) -> str | None:
        return blank_to_none(v)


class TenantKind(Kind):
    kind = "Tenant"
    plural = "tenants"
    spec_model = TenantSpec
    description = "A tenant (customer) with its parent and domains; name = tenant key."
    delete_flag = "--allow-offboard"

    def check_name(self, name: str) -> None:
        validate.tenant_key(name)
        if name == "system":
            raise ValueError("the key 'system' is reserved")

    def refs(self, name: str, spec: dict[str, Any]) -> list[tuple[str, str]]:
        return [("Tenant", spec["parent"])] if spec.get("parent") else []

    def current(self, session: Session) -> dict[str, dict[str, Any]]:
        from mno.store.models.tenancy import Tenant, TenantContact, TenantDomain

        t = table_of(Tenant).c
        rows = session.execute(
            sa.select(
                t.id, t.key, t.name, t.tier, t.parent_id, t.currency, t.timezone, t.address,
                t.city, t.zip, t.region, t.country, t.metadata,
            )
        ).all()  # fmt: skip
        keys = {r.id: r.key for r in rows}
        domains: dict[Any, list[str]] = {}
        for tid, d in session.execute(
            sa.select(col(TenantDomain.tenant_id), col(TenantDomain.domain))
        ):
            domains.setdefault(tid, []).append(d)
        contacts: dict[Any, list[dict[str, Any]]] = {}
        for c in session.execute(sa.select(table_of(TenantContact))):
            contacts.setdefault(c.tenant_id, []).append(
                {"name": c.name, "email": c.email, "type": c.type, "primary": bool(c.primary)}
            )
        out = {}
        for r in rows:
            if r.key == "system":
                continue
            parent = keys.get(r.parent_id)
            out[r.key] = {
                "name": r.name,
                "tier": r.tier,
                "parent": None if parent in (None, "system") else parent,
                "domains": sorted(domains.get(r.id, [])),
                "currency": r.currency,
                "timezone": r.timezone,
                "address": r.address or None,
                "city": r.city or None,
                "zip": r.zip or None,
                "region": r.region or None,
                "country": r.country or None,
                "metadata": r.metadata or {},
                "contacts": sorted(contacts.get(r.id, []), key=lambda c: c["email"]),
            }
        return out

    def create(self, session: Session, name: str, spec: dict[str, Any]) -> None:
        self.create_many(session, [(name, spec)])

    def create_many(
        self, session: Session, items: Sequence[tuple[str, dict[str, Any]]]
    ) -> dict[str, str]:
        from mno.tenancy import tenants

        rows = [{k: v for k, v in spec.items() if k != "contacts"} for _, spec in items]
        tenants.create_many(
            session, [row | {"key": name} for row, (name, _) in zip(rows, items, strict=True)]
        )
        for name, spec in items:
            for c in spec.get("contacts") or []:
                tenants.add_contact(session, name, **c)
        return {}

    def update(
        self, session: Session, name: str, changes: dict[str, Any], spec: dict[str, Any]
    ) -> None:
        from mno.tenancy import tenants

        fields = dict(changes)
        parent = fields.pop("parent", None) if "parent" in fields else None
        parent_changed = "parent" in changes
        domains = fields.pop("domains", None)
        contacts = fields.pop("contacts", None)
        for key in TEXT_FIELDS:
            if key in fields and fields[key] is None:
                fields[key] = ""  # the domain skips None; "" clears the field
        if "name" in fields and fields["name"] is None:
            fields["name"] = name
        if fields or parent_changed or domains is not None:
            tenants.update(
                session,
                name,
                parent=(parent or "system") if parent_changed else None,
                domains=domains,
                **fields,
            )
        if contacts is not None:
            self._set_contacts(session, name, contacts)

    @staticmethod
    def _set_contacts(session: Session, name: str, wanted: list[dict[str, Any]]) -> None:
        from mno.tenancy import tenants

        have: dict[str, dict[str, Any]] = {
            c.email: {"name": c.name, "email": c.email, "type": c.type, "primary": c.primary}
            for c in tenants.list_contacts(session, name)
        }
        want = {c["email"]: c for c in wanted}
        for email, contact in have.items():
            if want.get(email) != contact:
                tenants.remove_contact(session, name, email)
        for email, contact in want.items():
            if have.get(email) != contact:
                tenants.add_contact(session, name, **contact)

    def delete(self, session: Session, name: str) -> None:
        from mno.tenancy import tenants

        tenant = tenants.get(session, name)
        if tenant.status in ("active", "suspended"):
            from mno.nex import provisioning

            provisioning.offboard(session, name)
            if tenant.status == "offboarding":
                raise Conflict(
                    f"tenant {name} is offboarding: its instances are being terminated",
                    "apply again once the provisioner has finished",
                )
        elif tenant.status not in ("pending_provision", "offboarded"):
            raise Conflict(
                f"tenant {name} is {tenant.status}", "wait for provisioning to finish first"
            )
        tenants.delete(session, name)
