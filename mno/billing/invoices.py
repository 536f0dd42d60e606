"""Invoice lifecycle once a run (``run``, rated by ``tenant_rating``) wrote the drafts:
issue (gapless number per issuer and year), pay, void (credit note), flag overdue; and the
tenant's ledger and prepaid credits they post to."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta
from typing import Any

import sqlalchemy as sa
from sqlmodel import Session, select

from mno import clock
from mno.errors import BadInput, InvalidTransition, NotFound
from mno.store import audit, outbox
from mno.store.models.billing import (
    CreditGrant,
    Invoice,
    InvoiceCounter,
    InvoiceLine,
    LedgerEntry,
)
from mno.tenancy import tenants

T_CNT = InvoiceCounter.__table__  # type: ignore[attr-defined]
T_LED = LedgerEntry.__table__  # type: ignore[attr-defined]
DUE_DAYS = 30


def get(session: Session, invoice_id: str | uuid.UUID, lock: bool = False) -> Invoice:
    try:
        iid = invoice_id if isinstance(invoice_id, uuid.UUID) else uuid.UUID(str(invoice_id))
    except ValueError:
        inv = session.exec(select(Invoice).where(Invoice.number == str(invoice_id))).first()
        if inv is None:
            raise NotFound(f"invoice {invoice_id} not found") from None
        iid = inv.id
    q = select(Invoice).where(Invoice.id == iid)
    if lock and session.get_bind().dialect.name == "postgresql":
        q = q.with_for_update()
    inv = session.exec(q).first()
    if inv is None:
        raise NotFound(f"invoice {invoice_id} not found")
    return inv


def lines(session: Session, inv: Invoice) -> list[InvoiceLine]:
    return list(
        session.exec(
            select(InvoiceLine)
            .where(InvoiceLine.invoice_id == inv.id)
            .order_by(InvoiceLine.line_key)
        )
    )


def list_invoices(
    session: Session,
    tenant_key: str | None = None,
    status: str | None = None,
    period: str | None = None,
    limit: int = 100,
) -> list[Invoice]:
    q = select(Invoice).order_by(Invoice.created_at.desc()).limit(limit)  # type: ignore[attr-defined]
    if tenant_key:
        q = q.where(Invoice.tenant_id == tenants.get(session, tenant_key).id)
    if status:
        q = q.where(Invoice.status == status)
    if period:
        q = q.where(Invoice.period == period)
    return list(session.exec(q))


def next_number(session: Session, issuer: str, year: int) -> str:
    """Bump the counter row under its row lock, inside the issuing transaction: the number
    is used iff the transaction commits, so numbers never gap and never stall."""
    for _ in range(2):
        row = session.execute(
            sa.update(T_CNT)
            .where(T_CNT.c.issuer == issuer, T_CNT.c.year == year)
            .values(last=T_CNT.c.last + 1, updated_at=clock.now())
            .returning(T_CNT.c.last)
        ).first()
        if row is not None:
            return f"INV-{year}-{row[0]:06d}"
        from sqlalchemy.exc import IntegrityError

        try:
            with session.begin_nested():
                session.add(InvoiceCounter(issuer=issuer, year=year, last=0))
                session.flush()
        except IntegrityError:
            pass
    raise RuntimeError("invoice counter unavailable")


def ledger_add(
    session: Session,
    tenant_id: uuid.UUID,
    currency: str,
    type_: str,
    amount_minor: int,
    reference: str | None,
    invoice_id: uuid.UUID | None,
    expires_at: datetime | None = None,
) -> None:
    """Append with a running balance; the tenant row lock serialises writers."""
    from mno.store.models.tenancy import Tenant

    if session.get_bind().dialect.name == "postgresql":
        session.execute(sa.select(Tenant.id).where(Tenant.id == tenant_id).with_for_update())
    last = session.execute(
        sa.select(T_LED.c.seq, T_LED.c.balance_minor)
        .where(T_LED.c.tenant_id == tenant_id, T_LED.c.currency == currency)
        .order_by(T_LED.c.seq.desc())
        .limit(1)
    ).first()
    seq, bal = (last[0], last[1]) if last else (0, 0)
    session.add(
        LedgerEntry(
            tenant_id=tenant_id,
            currency=currency,
            seq=seq + 1,
            type=type_,
            amount_minor=amount_minor,
            balance_minor=bal + amount_minor,
            reference=reference,
            invoice_id=invoice_id,
            expires_at=expires_at,
        )
    )


def balance(session: Session, tenant_id: uuid.UUID, currency: str, lock: bool = False) -> int:
    """The running balance (positive: the tenant owes; negative: prepaid credit)."""
    from mno.store.models.tenancy import Tenant

    if lock and session.get_bind().dialect.name == "postgresql":
        session.execute(sa.select(Tenant.id).where(Tenant.id == tenant_id).with_for_update())
    row = session.execute(
        sa.select(T_LED.c.balance_minor)
        .where(T_LED.c.tenant_id == tenant_id, T_LED.c.currency == currency)
        .order_by(T_LED.c.seq.desc())
        .limit(1)
    ).first()
    return int(row[0]) if row else 0


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
    from mno.money import check_currency

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
    ledger_add(session, t.id, cur, "credit", -amount_minor, reference or "credit", None, expires_at)
    session.flush()
    audit.record(
        session,
        "ledger.credit",
        target_type="tenant",
        target_id=t.id,
        target=t.key,
        after={
            "amount_minor": amount_minor,
            "currency": cur,
            "expires_at": expires_at.isoformat() if expires_at else None,
        },
        tenant_id=t.id,
    )
    return ledger(session, t.key)[-1]


def list_credits(session: Session, tenant_key: str) -> list[CreditGrant]:
    t = tenants.get(session, tenant_key)
    return list(
        session.exec(
            select(CreditGrant)
            .where(CreditGrant.tenant_id == t.id)
            .order_by(CreditGrant.created_at)  # type: ignore[arg-type]
        )
    )


def _grants(session: Session, where: Any, order: Any) -> list[CreditGrant]:
    q = select(CreditGrant).where(where).order_by(*order)
    if session.get_bind().dialect.name == "postgresql":
        q = q.with_for_update()
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
    g = CreditGrant.__table__.c  # type: ignore[attr-defined]
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
            "expires_at": grant.expires_at.isoformat() if grant.expires_at else None,
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
    g = CreditGrant.__table__.c  # type: ignore[attr-defined]
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


def _payload(inv: Invoice, key: str) -> dict[str, Any]:
    return {
        "id": str(inv.id),
        "tenant": key,
        "number": inv.number,
        "status": inv.status,
        "currency": inv.currency,
        "total_minor": inv.total_minor,
        "period": inv.period,
    }


def issue(session: Session, invoice_id: str, due_days: int = DUE_DAYS) -> Invoice:
    inv = get(session, invoice_id, lock=True)
    if inv.status != "draft":
        raise InvalidTransition(f"invoice {inv.number or inv.id} is {inv.status}, not draft")
    before = audit.snapshot(inv)
    now = clock.now()
    inv.number = next_number(session, inv.issuer, now.year)
    inv.status = "issued"
    inv.issued_at = now
    inv.due_at = now + timedelta(days=due_days)
    # credits last (after tax): live prepaid credit pays what it can; expired credit first
    # goes to the ledger as an expiry and is not applied
    expire_credits(session, tenant_id=inv.tenant_id, currency=inv.currency, now=now)
    applied = apply_credits(session, inv.tenant_id, inv.currency, inv.total_minor, now)
    inv.credit_minor, inv.total_minor = applied, inv.total_minor - applied
    if inv.total_minor == 0:
        inv.status, inv.paid_at = "paid", now
    inv.touch()
    session.add(inv)
    ledger_add(
        session,
        inv.tenant_id,
        inv.currency,
        "invoice",
        inv.total_minor + applied,
        inv.number,
        inv.id,
    )
    t = tenants.get(session, inv.tenant_id)
    audit.record(
        session,
        "invoice.issue",
        target_type="invoice",
        target_id=inv.id,
        target=inv.number or "",
        before=before,
        after=audit.snapshot(inv),
        tenant_id=inv.tenant_id,
    )
    outbox.emit(session, "invoice.issued", _payload(inv, t.key), inv.tenant_id)
    return inv


def pay(
    session: Session, invoice_id: str, amount_minor: int | None = None, reference: str | None = None
) -> Invoice:
    inv = get(session, invoice_id, lock=True)
    if inv.status != "issued":
        raise InvalidTransition(f"invoice {inv.number or inv.id} is {inv.status}, not issued")
    due = inv.total_minor - inv.paid_minor
    amount = due if amount_minor is None else amount_minor
    if amount <= 0 or amount > due:
        raise BadInput(f"amount must be between 1 and {due} minor units")
    before = audit.snapshot(inv)
    inv.paid_minor += amount
    if inv.paid_minor == inv.total_minor:
        inv.status = "paid"
        inv.paid_at = clock.now()
    inv.touch()
    session.add(inv)
    ledger_add(
        session, inv.tenant_id, inv.currency, "payment", -amount, reference or inv.number, inv.id
    )
    t = tenants.get(session, inv.tenant_id)
    audit.record(
        session,
        "invoice.pay",
        target_type="invoice",
        target_id=inv.id,
        target=inv.number or "",
        before=before,
        after=audit.snapshot(inv),
        tenant_id=inv.tenant_id,
    )
    if inv.status == "paid":
        outbox.emit(session, "invoice.paid", _payload(inv, t.key), inv.tenant_id)
    return inv


def void(session: Session, invoice_id: str, reason: str | None = None) -> Invoice:
    """Void a draft, or an issued unpaid invoice (which books a credit note)."""
    inv = get(session, invoice_id, lock=True)
    if inv.status not in ("draft", "issued") or inv.paid_minor:
        raise InvalidTransition(f"invoice {inv.number or inv.id} is {inv.status}; cannot void")
    before = audit.snapshot(inv)
    was_issued = inv.status == "issued"
    inv.status = "void"
    inv.voided_at = clock.now()
    inv.void_reason = reason
    session.add(inv)
    if was_issued:
        note = Invoice(
            tenant_id=inv.tenant_id,
            period=f"cn-{inv.id.hex[:12]}",
            kind="credit_note",
            issuer=inv.issuer,
            status="issued",
            currency=inv.currency,
            subtotal_minor=-inv.subtotal_minor,
            tax_minor=-inv.tax_minor,
            total_minor=-inv.total_minor,
            credit_note_for=inv.id,
            issued_at=clock.now(),
        )
        note.number = next_number(session, inv.issuer, clock.now().year)
        session.add(note)
        ledger_add(
            session,
            inv.tenant_id,
            inv.currency,
            "credit",
            -(inv.total_minor + inv.credit_minor),
            note.number,
            note.id,
        )
        if inv.credit_minor:
            # the prepaid credit this invoice used is given back
            session.add(
                CreditGrant(
                    tenant_id=inv.tenant_id,
                    currency=inv.currency,
                    amount_minor=inv.credit_minor,
                    remaining_minor=inv.credit_minor,
                    reference=f"given back by {note.number}",
                )
            )
    else:
        # a voided draft frees its lines so the period can be billed again
        session.execute(
            sa.delete(InvoiceLine.__table__).where(  # type: ignore[attr-defined]
                InvoiceLine.__table__.c.invoice_id == inv.id
            )
        )  # type: ignore[attr-defined]
        inv.period = f"void-{inv.id.hex[:12]}"
    t = tenants.get(session, inv.tenant_id)
    audit.record(
        session,
        "invoice.void",
        target_type="invoice",
        target_id=inv.id,
        target=inv.number or str(inv.id),
        before=before,
        after=audit.snapshot(inv),
        tenant_id=inv.tenant_id,
    )
    outbox.emit(session, "invoice.voided", _payload(inv, t.key), inv.tenant_id)
    return inv


def ledger(session: Session, tenant_key: str) -> list[LedgerEntry]:
    t = tenants.get(session, tenant_key)
    return list(
        session.exec(
            select(LedgerEntry)
            .where(LedgerEntry.tenant_id == t.id)
            .order_by(LedgerEntry.currency, LedgerEntry.seq)
        )
    )


def flag_overdue(session: Session, grace_days: int = 0, suspend: bool = False) -> int:
    """Issued invoices unpaid past due + grace: tenant.in_arrears, optionally suspend."""
    from mno.store.models.tenancy import Tenant

    cutoff = clock.now() - timedelta(days=grace_days)
    rows = session.exec(
        select(Invoice).where(
            Invoice.status == "issued",
            Invoice.due_at < cutoff,  # type: ignore[operator]
            Invoice.kind == "period",
        )
    ).all()
    flagged = 0
    for inv in rows:
        t = session.get(Tenant, inv.tenant_id)
        if t is None or t.in_arrears:
            continue
        t.in_arrears = True
        session.add(t)
        outbox.emit(session, "invoice.overdue", _payload(inv, t.key), t.id)
        audit.record(
            session,
            "tenant.in_arrears",
            target_type="tenant",
            target_id=t.id,
            target=t.key,
            after={"in_arrears": True},
            tenant_id=t.id,
        )
        if suspend and t.status == "active":
            tenants.suspend(session, t.key, f"invoice {inv.number} overdue")
        flagged += 1
    return flagged
