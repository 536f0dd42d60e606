"""Tenants: the customers of the platform (MnoHub organisations, SourceLoop tenants).

A built-in ``system`` tenant is the root of the hierarchy. Every other tenant has a
parent, its managing client; at most ``MAX_MANAGING_LEVELS`` tenants sit above any tenant
(``system`` included), and cycles are refused.

Status machine::

    pending_provision → provisioning → active | provision_failed
    provision_failed → provisioning
    active ⇄ suspended
    active | suspended → offboarding → offboarded

``delete()`` imports the sync models itself: building their tables costs more than most
tenant commands, and only a deletion needs them.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import sqlalchemy as sa
from sqlalchemy.orm import aliased
from sqlmodel import col, select

from mno import clock, platform, validate
from mno.errors import BadInput, Conflict, InvalidTransition, NotFound
from mno.money import check_currency
from mno.store import audit, lookup, outbox, paging, plain
from mno.store.models.sync import SyncRecord
from mno.store.models.tenancy import Tenant, TenantContact, TenantDomain, TenantStatusChange
from mno.store.types import table_of

if TYPE_CHECKING:
    from sqlalchemy.engine import Row
    from sqlmodel import Session

SYSTEM_KEY = "system"
MAX_MANAGING_LEVELS = 4
STATUSES = (
    "pending_provision",
    "provisioning",
    "active",
    "provision_failed",
    "suspended",
    "offboarding",
    "offboarded",
)
TRANSITIONS: dict[str, tuple[str, ...]] = {
    "pending_provision": ("provisioning",),
    "provisioning": ("active", "provision_failed"),
    "provision_failed": ("provisioning",),
    "active": ("suspended", "offboarding"),
    "suspended": ("active", "offboarding"),
    "offboarding": ("offboarded",),
    "offboarded": (),
}
CONTACT_TYPES = ("admin", "billing", "technical", "other")
ADDRESS_FIELDS = ("address", "city", "zip", "region", "country")


@dataclass
class TenantView:
    """A tenant with what it links to, ready to render."""

    tenant: Tenant | Row[Any]  # list_tenants() passes plain rows with the same columns
    parent_key: str | None
    domains: list[str]

    def as_dict(self) -> dict[str, Any]:
        t = self.tenant
        return {
            "id": str(t.id),
            "key": t.key,
            "name": t.name,
            "tier": t.tier,
            "status": t.status,
            "status_reason": t.status_reason,
            "parent": self.parent_key,
            "domains": self.domains,
            "currency": t.currency,
            "timezone": t.timezone,
            "address": t.address,
            "city": t.city,
            "zip": t.zip,
            "region": t.region,
            "country": t.country,
            "in_arrears": t.in_arrears,
            "metadata": t.meta,
            "created_at": audit.jsonable(t.created_at),
            "updated_at": audit.jsonable(t.updated_at),
        }


def _event_payload(t: Tenant) -> dict[str, Any]:
    return {"id": str(t.id), "key": t.key, "name": t.name, "tier": t.tier, "status": t.status}


def check_tier(tier: str) -> str:
    """``tier`` when the platform YAML declares it (``pooled`` and ``silo`` always exist)."""
    names = platform.load().tier_names()
    if tier not in names:
        raise BadInput(
            f"unknown tier {tier!r}",
            f"declared tiers: {', '.join(names)}; declare it under tiers: in the platform YAML",
        )
    return tier


# -- lookups --------------------------------------------------------------------------


def ensure_system(session: Session) -> Tenant:
    """The root ``system`` tenant, created on first need."""
    system = session.exec(select(Tenant).where(Tenant.key == SYSTEM_KEY)).first()
    if system is None:
        system = Tenant(key=SYSTEM_KEY, name="System", tier="silo", status="active")
        session.add(system)
        session.flush()
        audit.record(
            session,
            "tenant.create",
            target_type="tenant",
            target_id=system.id,
            target=SYSTEM_KEY,
            after=audit.snapshot(system),
            tenant_id=system.id,
        )
        outbox.emit(session, "tenant.created", _event_payload(system), system.id)
    return system


def get(session: Session, key_or_id: str | uuid.UUID) -> Tenant:
    if isinstance(key_or_id, uuid.UUID):
        tenant = session.get(Tenant, key_or_id)
    else:
        tenant = session.exec(select(Tenant).where(Tenant.key == key_or_id)).first()
        if tenant is None:
            tenant = lookup.find(session, Tenant, key_or_id, "tenant")
    if tenant is None:
        raise NotFound(f"tenant {key_or_id!s} not found", "see `mno tenant list`")
    return tenant


def ancestors(session: Session, tenant: Tenant) -> list[Tenant]:
    """The managing chain above ``tenant``, nearest first."""
    chain: list[Tenant] = []
    seen = {tenant.id}
    parent_id = tenant.parent_id
    while parent_id is not None:
        parent = session.get(Tenant, parent_id)
        if parent is None or parent.id in seen:
            break
        chain.append(parent)
        seen.add(parent.id)
        parent_id = parent.parent_id
    return chain


def descendant_ids(session: Session, tenant_id: uuid.UUID) -> set[uuid.UUID]:
    """Every tenant managed by ``tenant_id``, directly or below (not itself)."""
    rows = session.execute(sa.select(col(Tenant.id), col(Tenant.parent_id))).all()
    children: dict[uuid.UUID, list[uuid.UUID]] = {}
    for tid, pid in rows:
        if pid is not None:
            children.setdefault(pid, []).append(tid)
    found: set[uuid.UUID] = set()
    stack = [tenant_id]
    while stack:
        for child in children.get(stack.pop(), []):
            if child not in found:
                found.add(child)
                stack.append(child)
    return found


def _subtree_height(session: Session, tenant_id: uuid.UUID) -> int:
    rows = session.execute(sa.select(col(Tenant.id), col(Tenant.parent_id))).all()
    children: dict[uuid.UUID, list[uuid.UUID]] = {}
    for tid, pid in rows:
        if pid is not None:
            children.setdefault(pid, []).append(tid)

    def height(node: uuid.UUID) -> int:
        kids = children.get(node, [])
        return 1 + max((height(k) for k in kids), default=0) if kids else 0

    return height(tenant_id)


def _check_parent(session: Session, tenant: Tenant | None, parent: Tenant) -> None:
    if tenant is not None:
        if parent.id == tenant.id or parent.id in descendant_ids(session, tenant.id):
            raise Conflict(f"{parent.key} is managed by {tenant.key}: that would make a cycle")
    levels_above = 1 + len(ancestors(session, parent))
    below = _subtree_height(session, tenant.id) if tenant is not None else 0
    if levels_above + below > MAX_MANAGING_LEVELS:
        raise Conflict(
            f"parent {parent.key} is too deep",
            f"at most {MAX_MANAGING_LEVELS} managing levels may sit above a tenant",
        )


def view(session: Session, tenant: Tenant) -> TenantView:
    parent_key = None
    if tenant.parent_id:
        parent = session.get(Tenant, tenant.parent_id)
        parent_key = parent.key if parent else None
    domains = session.exec(
        select(TenantDomain.domain)
        .where(TenantDomain.tenant_id == tenant.id)
        .order_by(TenantDomain.domain)
    ).all()
    return TenantView(tenant, parent_key, list(domains))


# -- create / update --------------------------------------------------------------------


def create(
    session: Session,
    key: str,
    *,
    name: str | None = None,
    tier: str = "pooled",
    parent: str | None = None,
    domains: Sequence[str] = (),
    currency: str = "USD",
    timezone: str = "UTC",
    address: str | None = None,
    city: str | None = None,
    zip: str | None = None,
    region: str | None = None,
    country: str | None = None,
    metadata: dict[str, Any] | None = None,
    status: str = "pending_provision",
    if_not_exists: bool = False,
) -> tuple[Tenant, bool]:
    """Create a tenant; returns (tenant, created). With ``if_not_exists`` an existing key
    is returned unchanged."""
    validate.tenant_key(key)
    if key == SYSTEM_KEY:
        raise Conflict("the key 'system' is reserved")
    existing = session.exec(select(Tenant).where(Tenant.key == key)).first()
    if existing is not None:
        if if_not_exists:
            return existing, False
        raise Conflict(f"tenant {key} already exists", "use --if-not-exists to accept that")
    check_tier(tier)
    validate.one_of(status, STATUSES, "status")
    clean_domains = _check_domains(session, domains, None)
    tenant = Tenant(
        key=key,
        name=(name or key).strip(),
        tier=tier,
        status=status,
        currency=check_currency(currency),
        timezone=validate.timezone(timezone),
        address=address,
        city=city,
        zip=zip,
        region=region,
        country=validate.country(country),
        meta=dict(metadata or {}),
    )
    if not tenant.name:
        raise BadInput("name must not be empty")
    parent_tenant = get(session, parent) if parent else ensure_system(session)
    _check_parent(session, None, parent_tenant)
    tenant.parent_id = parent_tenant.id
    session.add(tenant)
    session.flush()
    for d in clean_domains:
        session.add(TenantDomain(tenant_id=tenant.id, domain=d))
    after = audit.snapshot(tenant) | {"domains": clean_domains, "parent": parent_tenant.key}
    audit.record(
        session,
        "tenant.create",
        target_type="tenant",
        target_id=tenant.id,
        target=key,
        after=after,
        tenant_id=tenant.id,
    )
    outbox.emit(
        session,
        "tenant.created",
        _event_payload(tenant) | {"parent": parent_tenant.key, "domains": clean_domains},
        tenant.id,
    )
    session.flush()
    return tenant, True


def _check_domains(
    session: Session, domains: Sequence[str], tenant_id: uuid.UUID | None
) -> list[str]:
    clean = sorted({validate.domain(d) for d in domains})
    if clean:
        taken = session.exec(select(TenantDomain).where(col(TenantDomain.domain).in_(clean))).all()
        for row in taken:
            if row.tenant_id != tenant_id:
                raise Conflict(f"domain {row.domain} already belongs to another tenant")
    return clean


UPDATABLE = ("name", "tier", "currency", "timezone", *ADDRESS_FIELDS, "metadata", "in_arrears")


def update(
    session: Session,
    key: str,
    *,
    parent: str | None = None,
    domains: Sequence[str] | None = None,
    **fields: Any,
) -> Tenant:
    """Change a tenant's fields; ``domains`` replaces the whole set when given."""
    tenant = get(session, key)
    if tenant.key == SYSTEM_KEY:
        raise Conflict("the system tenant cannot be changed")
    unknown = set(fields) - set(UPDATABLE)
    if unknown:
        raise BadInput(f"unknown tenant field(s): {', '.join(sorted(unknown))}")
    before = audit.snapshot(tenant) | {"domains": view(session, tenant).domains}
    before_parent = tenant.parent_id
    for name, value in fields.items():
        if value is None:
            continue
        if name == "tier":
            value = check_tier(value)
        elif name == "currency":
            value = check_currency(value)
        elif name == "timezone":
            value = validate.timezone(value)
        elif name == "country":
            value = validate.country(value)
        elif name == "name":
            value = value.strip()
            if not value:
                raise BadInput("name must not be empty")
        if name == "metadata":
            tenant.meta = dict(value)
        else:
            setattr(tenant, name, value)
    if parent is not None:
        new_parent = get(session, parent)
        _check_parent(session, tenant, new_parent)
        tenant.parent_id = new_parent.id
    after_domains = before["domains"]
    if domains is not None:
        after_domains = _check_domains(session, domains, tenant.id)
        current = {
            d.domain: d
            for d in session.exec(select(TenantDomain).where(TenantDomain.tenant_id == tenant.id))
        }
        for d, row in current.items():
            if d not in after_domains:
                session.delete(row)
        for d in after_domains:
            if d not in current:
                session.add(TenantDomain(tenant_id=tenant.id, domain=d))
    after = audit.snapshot(tenant) | {"domains": after_domains}
    if after == before and before_parent == tenant.parent_id:
        return tenant
    tenant.touch()
    session.add(tenant)
    audit.record(
        session,
        "tenant.update",
        target_type="tenant",
        target_id=tenant.id,
        target=tenant.key,
        before=before,
        after=after,
        tenant_id=tenant.id,
    )
    changes = audit.diff(before, after)
    outbox.emit(session, "tenant.updated", _event_payload(tenant) | {"changes": changes}, tenant.id)
    session.flush()
    return tenant


# -- status machine -------------------------------------------------------------------


def transition(session: Session, key: str | Tenant, to: str, reason: str | None = None) -> Tenant:
    """Move a tenant to status ``to``; any transition not in ``TRANSITIONS`` is refused."""
    tenant = key if isinstance(key, Tenant) else get(session, key)
    if tenant.key == SYSTEM_KEY:
        raise Conflict("the system tenant's status cannot change")
    allowed = TRANSITIONS.get(tenant.status, ())
    if to not in allowed:
        hint = (
            f"from {tenant.status} it may go to: {', '.join(allowed)}"
            if allowed
            else (f"{tenant.status} is final")
        )
        raise InvalidTransition(f"tenant {tenant.key} cannot go from {tenant.status} to {to}", hint)
    before = {"status": tenant.status, "status_reason": tenant.status_reason}
    previous = tenant.status
    tenant.status = to
    tenant.status_reason = reason
    tenant.touch()
    session.add(tenant)
    session.add(
        TenantStatusChange(
            tenant_id=tenant.id,
            from_status=previous,
            to_status=to,
            reason=reason,
            at=tenant.updated_at,
        )
    )
    audit.record(
        session,
        f"tenant.{to}",
        target_type="tenant",
        target_id=tenant.id,
        target=tenant.key,
        before=before,
        after={"status": to, "status_reason": reason},
        tenant_id=tenant.id,
    )
    outbox.emit(
        session,
        "tenant.status_changed",
        _event_payload(tenant) | {"from": previous, "to": to, "reason": reason},
        tenant.id,
    )
    session.flush()
    return tenant


def provision(session: Session, key: str) -> Tenant:
    """Move the tenant through provisioning to active.

    Status only: hosted resources are created by the Nex provisioner, which replaces
    this step when it is configured for the tenant's tier.
    """
    tenant = transition(session, key, "provisioning")
    return transition(session, tenant, "active")


def suspend(session: Session, key: str, reason: str) -> Tenant:
    if not reason or not reason.strip():
        raise BadInput("suspend needs a reason", "e.g. --reason arrears")
    return transition(session, key, "suspended", reason.strip())


def resume(session: Session, key: str) -> Tenant:
    return transition(session, key, "active")


def offboard(session: Session, key: str) -> Tenant:
    tenant = transition(session, key, "offboarding")
    return transition(session, tenant, "offboarded")


def delete(session: Session, key: str) -> None:
    """Delete a tenant that is offboarded or was never provisioned."""
    tenant = get(session, key)
    if tenant.key == SYSTEM_KEY:
        raise Conflict("the system tenant cannot be deleted")
    if session.exec(select(Tenant.id).where(Tenant.parent_id == tenant.id)).first():
        raise Conflict(f"tenant {key} still manages other tenants", "move or delete them first")
    if tenant.status not in ("pending_provision", "offboarded"):
        raise InvalidTransition(
            f"tenant {key} is {tenant.status}", "offboard it before deleting it"
        )
    # synced records have no foreign key to their tenant (it costs a lookup per record)

    if session.exec(
        select(SyncRecord.id).where(SyncRecord.tenant_id == tenant.id).limit(1)
    ).first():
        raise Conflict(f"tenant {key} has synced records")
    before = audit.snapshot(tenant)
    for model in (TenantDomain, TenantContact, TenantStatusChange):
        for row in session.exec(select(model).where(model.tenant_id == tenant.id)):
            session.delete(row)
    session.flush()  # the tables have no ORM relationships: delete the children first
    session.delete(tenant)
    audit.record(
        session,
        "tenant.delete",
        target_type="tenant",
        target_id=tenant.id,
        target=tenant.key,
        before=before,
        tenant_id=tenant.id,
    )
    outbox.emit(session, "tenant.deleted", _event_payload(tenant), tenant.id)
    session.flush()


# -- listing ------------------------------------------------------------------------


def _list_stmt(
    session: Session, status: str | None, tier: str | None, parent: str | None, include_system: bool
) -> Any:
    # Plain rows, not ORM instances: building 10,000 models costs more than the query.
    # The parent's key comes from an outer self-join, so a page needs no map of all keys.
    columns = [name for name in Tenant.model_fields if name != "resources"]
    up = aliased(Tenant)
    stmt = select(  # type: ignore[call-overload]
        *(col(getattr(Tenant, name)).label(name) for name in columns),
        col(up.key).label("parent_key"),
    ).outerjoin(up, col(up.id) == col(Tenant.parent_id))
    return _filtered(session, stmt, status, tier, parent, include_system)


def _filtered(
    session: Session,
    stmt: Any,
    status: str | None,
    tier: str | None,
    parent: str | None,
    include_system: bool,
) -> Any:
    if status:
        stmt = stmt.where(Tenant.status == validate.one_of(status, STATUSES, "status"))
    if tier:
        stmt = stmt.where(Tenant.tier == check_tier(tier))
    if parent:
        stmt = stmt.where(Tenant.parent_id == get(session, parent).id)
    if not include_system:
        stmt = stmt.where(Tenant.key != SYSTEM_KEY)
    return stmt


def _views(session: Session, rows: Sequence[Row[Any]]) -> list[TenantView]:
    """Views of one page or chunk of rows: their domains in one more query."""
    domains: dict[uuid.UUID, list[str]] = {}
    if rows:
        # the domains of the tenants whose keys span the rows' (an index range, not a
        # thousand bound ids); those of tenants left out by a filter are not looked up
        keys = [r.key for r in rows]
        for tid, d in session.execute(
            sa.select(col(TenantDomain.tenant_id), col(TenantDomain.domain))
            .join(Tenant, col(Tenant.id) == col(TenantDomain.tenant_id))
            .where(col(Tenant.key).between(min(keys), max(keys)))
            .order_by(TenantDomain.domain)
        ):
            domains.setdefault(tid, []).append(d)
    return [TenantView(r, r.parent_key, domains.get(r.id, [])) for r in rows]


def page_tenants(
    session: Session,
    *,
    status: str | None = None,
    tier: str | None = None,
    parent: str | None = None,
    after: str | None = None,
    limit: int = paging.DEFAULT_LIMIT,
    include_system: bool = False,
) -> paging.Page[TenantView]:
    """One page of tenants by key, after the cursor ``after`` (a tenant key), in two
    queries whatever the count; ``next`` is the cursor of the following page."""
    stmt = _list_stmt(session, status, tier, parent, include_system)
    rows, next_cursor = paging.page(session, stmt, [col(Tenant.key)], after, limit)
    return paging.Page(_views(session, rows), next_cursor)


def stream_tenants(
    session: Session,
    *,
    status: str | None = None,
    tier: str | None = None,
    parent: str | None = None,
    after: str | None = None,
    include_system: bool = False,
    chunk: int = paging.CHUNK,
) -> Iterator[TenantView]:
    """Every tenant by key, read ``chunk`` at a time (constant memory)."""
    stmt = _list_stmt(session, status, tier, parent, include_system)
    for rows in paging.stream(session, stmt, [col(Tenant.key)], after, chunk):
        yield from _views(session, rows)


_PLAIN_COLUMNS = (
    "id",
    "key",
    "name",
    "tier",
    "status",
    "status_reason",
    "currency",
    "timezone",
    "address",
    "city",
    "zip",
    "region",
    "country",
    "in_arrears",
    "meta",
    "created_at",
    "updated_at",
)


def _plain_stmt(
    session: Session, status: str | None, tier: str | None, parent: str | None, include_system: bool
) -> Any:
    """``_list_stmt`` with the columns ``TenantView.as_dict`` shows, read raw."""
    up = aliased(Tenant)
    raw_columns = ("id", "in_arrears", "meta", "created_at", "updated_at")
    stmt = sa.select(
        *(
            plain.raw(col(getattr(Tenant, n)), n)
            if n in raw_columns
            else col(getattr(Tenant, n)).label(n)
            for n in _PLAIN_COLUMNS
        ),
        col(up.key).label("parent_key"),
    ).outerjoin(up, col(up.id) == col(Tenant.parent_id))
    return _filtered(session, stmt, status, tier, parent, include_system)


def _plain_dicts(session: Session, rows: Sequence[Any]) -> list[dict[str, Any]]:
    """``TenantView.as_dict`` of each row, built from raw values; domains as ``_views``."""
    domains: dict[Any, list[str]] = {}
    if rows:
        keys = [r.key for r in rows]
        for tid, d in session.execute(
            sa.select(plain.raw(col(TenantDomain.tenant_id)), col(TenantDomain.domain))
            .join(Tenant, col(Tenant.id) == col(TenantDomain.tenant_id))
            .where(col(Tenant.key).between(min(keys), max(keys)))
            .order_by(TenantDomain.domain)
        ):
            domains.setdefault(tid, []).append(d)
    uuid_text, time_text, document = plain.uuid_text, plain.time_text, plain.document
    # rows unpacked in _PLAIN_COLUMNS order (a Row's attributes cost more than its items)
    return [
        {
            "id": uuid_text(tid),
            "key": key,
            "name": name,
            "tier": tier,
            "status": status,
            "status_reason": reason,
            "parent": parent_key,
            "domains": domains.get(tid, []),
            "currency": currency,
            "timezone": timezone,
            "address": address,
            "city": city,
            "zip": zip_code,
            "region": region,
            "country": country,
            "in_arrears": bool(arrears),
            "metadata": document(meta),
            "created_at": time_text(created),
            "updated_at": time_text(updated),
        }
        for (
            tid,
            key,
            name,
            tier,
            status,
            reason,
            currency,
            timezone,
            address,
            city,
            zip_code,
            region,
            country,
            arrears,
            meta,
            created,
            updated,
            parent_key,
        ) in rows
    ]


def stream_tenant_dicts(
    session: Session,
    *,
    status: str | None = None,
    tier: str | None = None,
    parent: str | None = None,
    after: str | None = None,
    include_system: bool = False,
    chunk: int = paging.CHUNK,
) -> Iterator[dict[str, Any]]:
    """``stream_tenants`` as ``TenantView.as_dict()`` of each: the same values, read from
    raw columns (no ORM type conversion), for long lists streamed as JSON."""
    stmt = _plain_stmt(session, status, tier, parent, include_system)
    for rows in paging.stream(session, stmt, [col(Tenant.key)], after, chunk):
        yield from _plain_dicts(session, rows)


def list_tenants(
    session: Session,
    *,
    status: str | None = None,
    tier: str | None = None,
    parent: str | None = None,
    limit: int | None = None,
    include_system: bool = False,
) -> list[TenantView]:
    """Tenants by key (all of them without ``limit``)."""
    if limit is not None:
        return page_tenants(
            session,
            status=status,
            tier=tier,
            parent=parent,
            limit=limit,
            include_system=include_system,
        ).rows
    return list(
        stream_tenants(
            session, status=status, tier=tier, parent=parent, include_system=include_system
        )
    )


# -- contacts -------------------------------------------------------------------------


def add_contact(
    session: Session,
    key: str,
    *,
    name: str,
    email: str,
    type: str = "admin",
    primary: bool = False,
) -> TenantContact:
    tenant = get(session, key)
    email = validate.email(email)
    validate.one_of(type, CONTACT_TYPES, "contact type")
    if not name.strip():
        raise BadInput("contact name must not be empty")
    existing = session.exec(
        select(TenantContact).where(
            TenantContact.tenant_id == tenant.id, TenantContact.email == email
        )
    ).first()
    if existing:
        raise Conflict(f"{email} is already a contact of {key}")
    if primary:
        for other in session.exec(
            select(TenantContact).where(
                TenantContact.tenant_id == tenant.id,
                TenantContact.primary == True,  # noqa: E712
            )
        ):
            other.primary = False
            session.add(other)
    contact = TenantContact(
        tenant_id=tenant.id, name=name.strip(), email=email, type=type, primary=primary
    )
    session.add(contact)
    session.flush()
    audit.record(
        session,
        "tenant.contact_add",
        target_type="tenant",
        target_id=tenant.id,
        target=tenant.key,
        after={"contact": audit.snapshot(contact)},
        tenant_id=tenant.id,
    )
    outbox.emit(
        session,
        "tenant.contact_added",
        {
            "tenant": tenant.key,
            "email": email,
            "name": contact.name,
            "type": type,
            "primary": primary,
        },
        tenant.id,
    )
    return contact


def list_contacts(session: Session, key: str) -> list[TenantContact]:
    tenant = get(session, key)
    return list(
        session.exec(
            select(TenantContact)
            .where(TenantContact.tenant_id == tenant.id)
            .order_by(col(TenantContact.primary).desc(), col(TenantContact.email))
        )
    )


def primary_contact(session: Session, tenant: Tenant) -> TenantContact | None:
    contacts = list_contacts(session, tenant.key)
    return contacts[0] if contacts else None


def remove_contact(session: Session, key: str, email: str) -> None:
    tenant = get(session, key)
    email = validate.email(email)
    contact = session.exec(
        select(TenantContact).where(
            TenantContact.tenant_id == tenant.id, TenantContact.email == email
        )
    ).first()
    if contact is None:
        raise NotFound(f"{email} is not a contact of {key}")
    before = audit.snapshot(contact)
    session.delete(contact)
    audit.record(
        session,
        "tenant.contact_remove",
        target_type="tenant",
        target_id=tenant.id,
        target=tenant.key,
        before={"contact": before},
        tenant_id=tenant.id,
    )
    outbox.emit(
        session, "tenant.contact_removed", {"tenant": tenant.key, "email": email}, tenant.id
    )


# -- batched creation -------------------------------------------------------------------


def create_many(session: Session, items: Sequence[dict[str, Any]]) -> list[uuid.UUID]:
    """Create many tenants at once, with the same rules, audit rows and events as ``create``.

    Each item holds ``create()``'s keywords (``key`` required). A parent may be an existing
    tenant or another item (parents are inserted first, whatever the order given). The
    store is read a fixed number of times and written with one statement per table, so
    the cost does not grow with a query per tenant. Returns the new ids in item order.
    """
    if not items:
        return []
    existing = dict(session.execute(sa.select(col(Tenant.key), col(Tenant.id))).all())
    parent_of = dict(session.execute(sa.select(col(Tenant.id), col(Tenant.parent_id))).all())
    system_id = existing.get(SYSTEM_KEY) or ensure_system(session).id
    existing[SYSTEM_KEY] = system_id
    parent_of.setdefault(system_id, None)
    by_key, all_domains = _checked_items(items, existing)
    _check_domains_free(session, all_domains)
    ordered = _parents_first(by_key, existing)
    rows, domain_rows, audits, events = _import_rows(ordered, existing, parent_of)
    session.flush()
    conn = session.connection()
    for row in rows:
        row["metadata"] = row.pop("meta")
    conn.execute(table_of(Tenant).insert(), rows)
    if domain_rows:
        conn.execute(table_of(TenantDomain).insert(), domain_rows)
    audit.record_many(session, audits)
    outbox.emit_many(session, events)
    return [by_key[item["key"]]["id"] for item in items]


def _checked_items(
    items: Sequence[dict[str, Any]], existing: dict[str, uuid.UUID]
) -> tuple[dict[str, dict[str, Any]], list[str]]:
    """The items validated into tenant rows by key (``_parent`` and ``_domains`` still to
    resolve), and every domain they claim."""
    by_key: dict[str, dict[str, Any]] = {}
    all_domains: list[str] = []
    for item in items:
        key = validate.tenant_key(item["key"])
        if key == SYSTEM_KEY:
            raise Conflict("the key 'system' is reserved")
        if key in existing or key in by_key:
            raise Conflict(f"tenant {key} already exists")
        name = (item.get("name") or key).strip()
        if not name:
            raise BadInput(f"tenant {key}: name must not be empty")
        domains = sorted({validate.domain(d) for d in item.get("domains") or ()})
        all_domains.extend(domains)
        by_key[key] = {
            "id": uuid.uuid4(),
            "key": key,
            "name": name,
            "tier": check_tier(item.get("tier") or "pooled"),
            "status": validate.one_of(
                item.get("status") or "pending_provision", STATUSES, "status"
            ),
            "currency": check_currency(item.get("currency") or "USD"),
            "timezone": validate.timezone(item.get("timezone") or "UTC"),
            "address": item.get("address"),
            "city": item.get("city"),
            "zip": item.get("zip"),
            "region": item.get("region"),
            "country": validate.country(item.get("country")),
            "meta": dict(item.get("metadata") or {}),
            "_parent": item.get("parent") or SYSTEM_KEY,
            "_domains": domains,
        }
    if len(set(all_domains)) != len(all_domains):
        dup = sorted({d for d in all_domains if all_domains.count(d) > 1})[0]
        raise Conflict(f"domain {dup} is given to two tenants")
    return by_key, all_domains


def _check_domains_free(session: Session, all_domains: list[str]) -> None:
    """Refuse domains that already belong to a tenant (nothing to check in a store without
    domains)."""
    any_domain = session.execute(sa.select(col(TenantDomain.domain)).limit(1)).first()
    for start in range(0, len(all_domains) if any_domain else 0, 5000):  # bounded IN lists
        chunk = all_domains[start : start + 5000]
        taken = session.execute(
            sa.select(col(TenantDomain.domain)).where(col(TenantDomain.domain).in_(chunk))
        ).first()
        if taken:
            raise Conflict(f"domain {taken[0]} already belongs to another tenant")


def _parents_first(
    by_key: dict[str, dict[str, Any]], existing: dict[str, uuid.UUID]
) -> list[dict[str, Any]]:
    """The rows with each parent before its children; refuses cycles and unknown parents."""
    ordered: list[dict[str, Any]] = []
    state: dict[str, int] = {}

    def visit(key: str, path: tuple[str, ...]) -> None:
        if state.get(key) == 2:
            return
        if state.get(key) == 1:
            raise Conflict(f"tenants {' -> '.join((*path, key))} would make a cycle")
        state[key] = 1
        parent = by_key[key]["_parent"]
        if parent in by_key:
            visit(parent, (*path, key))
        elif parent not in existing:
            raise NotFound(f"parent tenant {parent} of {key} not found")
        state[key] = 2
        ordered.append(by_key[key])

    for key in by_key:
        visit(key, ())
    return ordered


def _import_rows(
    ordered: list[dict[str, Any]],
    existing: dict[str, uuid.UUID],
    parent_of: dict[uuid.UUID, uuid.UUID | None],
) -> tuple[
    list[dict[str, Any]],
    list[dict[str, Any]],
    list[dict[str, Any]],
    list[tuple[str, dict[str, Any], uuid.UUID | None]],
]:
    """The tenant, domain, audit and event rows of the ordered items, with the depth of
    the combined hierarchy checked."""
    ids = dict(existing)
    depth: dict[uuid.UUID, int] = {}

    def levels_above(tid: uuid.UUID) -> int:
        if tid not in depth:
            pid = parent_of.get(tid)
            depth[tid] = 0 if pid is None else 1 + levels_above(pid)
        return depth[tid]

    now = clock.now()
    rows: list[dict[str, Any]] = []
    domain_rows: list[dict[str, Any]] = []
    audits: list[dict[str, Any]] = []
    events: list[tuple[str, dict[str, Any], uuid.UUID | None]] = []
    for row in ordered:
        ids[row["key"]] = row["id"]
        parent_id = ids[row["_parent"]]
        parent_of[row["id"]] = parent_id
        if levels_above(row["id"]) > MAX_MANAGING_LEVELS:
            raise Conflict(
                f"parent {row['_parent']} of {row['key']} is too deep",
                f"at most {MAX_MANAGING_LEVELS} managing levels may sit above a tenant",
            )
        domains = row.pop("_domains")
        parent_key = row.pop("_parent")
        record = row | {
            "parent_id": parent_id,
            "status_reason": None,
            "in_arrears": False,
            "resources": {},
            "created_at": now,
            "updated_at": now,
        }
        rows.append(record)
        domain_rows.extend(
            {
                "id": uuid.uuid4(),
                "tenant_id": row["id"],
                "domain": d,
                "created_at": now,
                "updated_at": now,
            }
            for d in domains
        )
        snap = {
            k: audit.jsonable(v) for k, v in record.items() if k not in ("created_at", "updated_at")
        }
        audits.append(
            {
                "action": "tenant.create",
                "target_type": "tenant",
                "target_id": row["id"],
                "target": row["key"],
                "after": snap | {"domains": domains, "parent": parent_key},
                "tenant_id": row["id"],
            }
        )
        payload = {"id": str(row["id"]), "key": row["key"], "name": row["name"]}
        payload |= {"tier": row["tier"], "status": row["status"]}
        events.append(
            ("tenant.created", payload | {"parent": parent_key, "domains": domains}, row["id"])
        )
    return rows, domain_rows, audits, events
