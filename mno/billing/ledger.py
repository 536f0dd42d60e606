"""The tenant ledger and prepaid credits.

The ledger is append-only per tenant and currency, each entry carrying the running balance
(positive: the tenant owes; negative: prepaid credit); the tenant row lock serialises
writers. Invoices post to it when issued, paid or voided (``invoices``). A credit grant is
drawn down by the invoices issued later in its currency, soonest expiry first, and what is
left at its expiry lapses (``expire_credits``, run by the biller).
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlmodel import Session, col, select

from mno import clock
from mno.billing.periods import utc_z
from mno.errors import BadInput
from mno.money import check_currency
from mno.store import audit, leases, outbox
from mno.store.models.billing import CreditGrant, LedgerEntry
from mno.store.models.tenancy import Tenant
from mno.store.types import table_of
from mno.tenancy import tenants

T_LED = table_of(LedgerEntry)


def ledger_add(
    session: Session,
    tenant_id: uuid.UUID,
    currency: str,
    type_: str,
    amount_minor: int,
    reference: str | None,
    invoice_id: uuid.UUID | None,
    expires_at: datetime | None = None,
    method: str | None = None,
) -> LedgerEntry:
    """Append with a running balance; the tenant row lock serialises writers."""
    leases.lock_rows(session, sa.select(col(Tenant.id)).where(col(Tenant.id) == tenant_id))
    last = session.execute(
        sa.select(T_LED.c.seq, T_LED.c.balance_minor)
        .where(T_LED.c.tenant_id == tenant_id, T_LED.c.currency == currency)
        .order_by(T_LED.c.seq.desc())
        .limit(1)
    ).first()
    seq, bal = (last[0], last[1]) if last else (0, 0)
    entry = LedgerEntry(
        tenant_id=tenant_id,
        currency=currency,
        seq=seq + 1,
        type=type_,
        amount_minor=amount_minor,
        balance_minor=bal + amount_minor,
        reference=reference,
        invoice_id=invoice_id,
        expires_at=expires_at,
        method=method,
    )
    session.add(entry)
    return entry


def balance(session: Session, tenant_id: uuid.UUID, currency: str, lock: bool = False) -> int:
    """The running balance (positive: the tenant owes; negative: prepaid credit)."""
    if lock:
        leases.lock_rows(session, sa.select(col(Tenant.id)).where(col(Tenant.id) == tenant_id))
    row = session.execute(
        sa.select(T_LED.c.balance_minor)
        .where(T_LED.c.tenant_id == tenant_id, T_LED.c.currency == currency)
        .order_by(T_LED.c.seq.desc())
        .limit(1)
    ).first()
    return int(row[0]) if row else 0


def entries(session: Session, tenant_key: str) -> list[LedgerEntry]:
    """The tenant's ledger entries, by currency and sequence."""
    t = tenants.get(session, tenant_key)
    return list(
        session.exec(
            select(LedgerEntry)
            .where(LedgerEntry.tenant_id == t.id)
            .order_by(col(LedgerEntry.currency), col(LedgerEntry.seq))
        )
    )


def add_credit(
    session: Session,
    tenant_key: str,
    amount_minor: int,
    currency: str,
    reference: str | None = None,
    expires_at: datetime | None = None,
) -> LedgerEntry:
    """Prepaid credit: used by the next invoices issued in that currency, after tax; the
    part still unused at ``expires_at`` expires."""
    if amount_minor <= 0:
        raise BadInput("credit amount must be positive")
    if expires_at is not None:
        if expires_at.tzinfo is None:
            raise BadInput("credit expiry needs a timezone", "e.g. 2027-01-01T00:00:00Z")
        if expires_at <= clock.now():
            raise BadInput("credit expiry is in the past", "give a later time")
    t = tenants.get(session, tenant_key)
    cur = check_currency(currency)
    grant = CreditGrant(
        tenant_id=t.id,
        currency=cur,
        amount_minor=amount_minor,
        remaining_minor=amount_minor,
        expires_at=expires_at,
        reference=reference or "credit",
    )
    session.add(grant)
    entry = ledger_add(
        session, t.id, cur, "credit", -amount_minor, reference or "credit", None, expires_at
    )
    session.flush()
    after = {
        "amount_minor": amount_minor,
        "currency": cur,
        "expires_at": expires_at.isoformat() if expires_at else None,
    }
    audit.record(
        session,
        "ledger.credit",
        target_type="tenant",
        target_id=t.id,
        target=t.key,
        after=after,
        tenant_id=t.id,
    )
    payload = {
        "tenant": t.key,
        "credit": str(grant.id),
        "amount_minor": amount_minor,
        "currency": cur,
        "expires_at": utc_z(expires_at) if expires_at else None,
        "reference": grant.reference,
    }
    outbox.emit(session, "credit.added", payload, t.id)
    return entry


def list_credits(session: Session, tenant_key: str) -> list[CreditGrant]:
    t = tenants.get(session, tenant_key)
    return list(
        session.exec(
            select(CreditGrant)
            .where(CreditGrant.tenant_id == t.id)
            .order_by(col(CreditGrant.created_at))
        )
    )


def _grants(session: Session, where: Any, order: Any) -> list[CreditGrant]:
    q = leases.for_update(session, select(CreditGrant).where(where).order_by(*order))
    return list(session.exec(q))


def expire_credits(
    session: Session,
    *,
    tenant_id: uuid.UUID | None = None,
    currency: str | None = None,
    now: datetime | None = None,
) -> int:
    """Write what is left of every credit past its expiry to the ledger as an expiry (the
    balance owed goes up by it); an expired credit is never applied. Returns the count."""
    now = now or clock.now()
    g = table_of(CreditGrant).c
    cond = sa.and_(g.status == "open", g.remaining_minor > 0, g.expires_at <= now)
    if tenant_id is not None:
        cond = sa.and_(cond, g.tenant_id == tenant_id)
    if currency is not None:
        cond = sa.and_(cond, g.currency == currency)
    grants = _grants(session, cond, [g.expires_at, g.created_at])
    for grant in grants:
        lapsed = grant.remaining_minor
        ledger_add(
            session,
            grant.tenant_id,
            grant.currency,
            "expiry",
            lapsed,
            f"expired: {grant.reference or grant.id}"[:200],
            None,
        )
        grant.remaining_minor, grant.status = 0, "expired"
        grant.touch()
        session.add(grant)
        t = tenants.get(session, grant.tenant_id)
        payload = {
            "tenant": t.key,
            "credit": str(grant.id),
            "currency": grant.currency,
            "expired_minor": lapsed,
            "expires_at": audit.utc_text(grant.expires_at) if grant.expires_at else None,
        }
        audit.record(
            session,
            "ledger.credit_expired",
            target_type="tenant",
            target_id=t.id,
            target=t.key,
            after=payload,
            tenant_id=t.id,
        )
        outbox.emit(session, "credit.expired", payload, t.id)
    return len(grants)


def apply_credits(
    session: Session, tenant_id: uuid.UUID, currency: str, due_minor: int, now: datetime
) -> int:
    """Draw up to ``due_minor`` from live credits, soonest expiry first; returns the amount
    applied. What is not needed stays as credit."""
    if due_minor <= 0:
        return 0
    g = table_of(CreditGrant).c
    cond = sa.and_(
        g.tenant_id == tenant_id,
        g.currency == currency,
        g.status == "open",
        g.remaining_minor > 0,
        sa.or_(g.expires_at.is_(None), g.expires_at > now),
    )
    applied = 0
    for grant in _grants(session, cond, [sa.nulls_last(g.expires_at.asc()), g.created_at]):
        take = min(grant.remaining_minor, due_minor - applied)
        grant.remaining_minor -= take
        if grant.remaining_minor == 0:
            grant.status = "used"
        grant.touch()
        session.add(grant)
        applied += take
        if applied == due_minor:
            break
    return applied
