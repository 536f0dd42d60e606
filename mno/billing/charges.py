"""One-off charges (bills): submitted, then invoiced by a run or cancelled."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlmodel import Session, col, select

from mno.errors import BadInput, Conflict
from mno.money import check_currency, round_money, to_decimal, to_minor
from mno.store import audit, leases, lookup, outbox, paging
from mno.store.models.billing import Charge
from mno.tenancy import tenants


def _payload(c: Charge, tenant_key: str) -> dict[str, object]:
    return {
        "id": str(c.id),
        "tenant": tenant_key,
        "amount_minor": c.amount_minor,
        "currency": c.currency,
        "description": c.description,
        "status": c.status,
        "app": c.app_code,
    }


def add(
    session: Session,
    tenant_key: str,
    amount: Decimal,
    currency: str,
    description: str,
    *,
    idempotency_key: str | None = None,
    app_code: str | None = None,
) -> Charge:
    """Submit a one-off charge; a repeated idempotency key returns the first charge."""
    tenant = tenants.get(session, tenant_key)
    cur = check_currency(currency)
    value = to_decimal(amount)
    if value <= 0:
        raise BadInput("amount must be positive")
    if round_money(value, cur) != value:
        raise BadInput(f"{value} has more decimals than {cur} allows")
    if not (description or "").strip():
        raise BadInput("description is required")
    if idempotency_key:
        found = session.exec(
            select(Charge).where(
                Charge.tenant_id == tenant.id, Charge.idempotency_key == idempotency_key
            )
        ).first()
        if found is not None:
            return found
    charge = Charge(
        tenant_id=tenant.id,
        amount_minor=to_minor(value, cur),
        currency=cur,
        description=description.strip()[:500],
        app_code=app_code,
        idempotency_key=idempotency_key,
    )
    session.add(charge)
    session.flush()
    audit.record(
        session,
        "charge.create",
        target_type="charge",
        target_id=charge.id,
        target=tenant.key,
        after=audit.snapshot(charge),
        tenant_id=tenant.id,
    )
    outbox.emit(session, "charge.created", _payload(charge, tenant.key), tenant.id)
    return charge


def get(session: Session, charge_id: str | uuid.UUID) -> Charge:
    return lookup.by_id_or_prefix(session, Charge, charge_id, "charge", "see `mno charge list`")


def cancel(session: Session, charge_id: str | uuid.UUID) -> Charge:
    """Cancel a submitted charge; an invoiced one is refused (Conflict)."""
    charge = get(session, charge_id)
    if leases.lock_rows(session, sa.select(col(Charge.id)).where(col(Charge.id) == charge.id)):
        session.refresh(charge)
    if charge.status == "cancelled":
        return charge
    if charge.status == "invoiced":
        raise Conflict(
            f"charge {charge.id} is invoiced and cannot be cancelled", "void the invoice instead"
        )
    before = audit.snapshot(charge)
    charge.status = "cancelled"
    charge.touch()
    session.add(charge)
    tenant = tenants.get(session, charge.tenant_id)
    audit.record(
        session,
        "charge.cancel",
        target_type="charge",
        target_id=charge.id,
        target=tenant.key,
        before=before,
        after=audit.snapshot(charge),
        tenant_id=charge.tenant_id,
    )
    outbox.emit(session, "charge.cancelled", _payload(charge, tenant.key), charge.tenant_id)
    return charge


def _charges(session: Session, tenant_key: str | None, status: str | None) -> Any:
    q = select(Charge)
    if tenant_key:
        q = q.where(Charge.tenant_id == tenants.get(session, tenant_key).id)
    if status:
        q = q.where(Charge.status == status)
    return q


_CHARGE_ORDER = [col(Charge.created_at), col(Charge.id)]


def page_charges(
    session: Session,
    tenant_key: str | None = None,
    status: str | None = None,
    *,
    after: str | None = None,
    limit: int = paging.DEFAULT_LIMIT,
) -> paging.Page[Charge]:
    """One page of charges, newest first, after the cursor ``after``."""
    q = _charges(session, tenant_key, status)
    return paging.page_of(session, q, _CHARGE_ORDER, after, limit, descending=True)


def stream_charges(
    session: Session,
    tenant_key: str | None = None,
    status: str | None = None,
    *,
    after: str | None = None,
) -> Iterator[Charge]:
    """Every charge, newest first, read a chunk at a time."""
    q = _charges(session, tenant_key, status)
    return paging.each(session, q, _CHARGE_ORDER, after, descending=True)


def list_charges(
    session: Session, tenant_key: str | None = None, status: str | None = None, limit: int = 100
) -> list[Charge]:
    q = select(Charge).order_by(col(Charge.created_at).desc()).limit(limit)
    if tenant_key:
        q = q.where(Charge.tenant_id == tenants.get(session, tenant_key).id)
    if status:
        q = q.where(Charge.status == status)
    return list(session.exec(q))
