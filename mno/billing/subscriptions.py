"""Subscriptions: create (pinned to the plan's current version), cancel, change plan."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

from sqlmodel import Session, select

from mno import clock
from mno.errors import BadInput, InvalidTransition, NotFound
from mno.store import audit, outbox
from mno.store.models.billing import Coupon, Invoice, Plan, Subscription
from mno.tenancy import tenants


def plan_current(session: Session, code: str) -> Plan:
    p = session.exec(select(Plan).where(Plan.code == code, Plan.current == True)).first()  # noqa: E712
    if p is None:
        raise NotFound(f"plan {code!r} not found")
    return p


def _payload(sub: Subscription, key: str) -> dict[str, object]:
    return {"id": str(sub.id), "tenant": key, "plan": sub.plan_code, "status": sub.status}


def create(
    session: Session,
    tenant_key: str,
    plan_code: str,
    *,
    start: datetime | None = None,
    app_code: str | None = None,
    coupon: str | None = None,
    cycle_limit: int | None = None,
    invoice_now: bool = False,
) -> Subscription:
    """Subscribe; with ``invoice_now`` the first period's in-advance charges are billed at
    once on a draft invoice (the run that covers the start then skips those lines)."""
    t = tenants.get(session, tenant_key)
    plan = plan_current(session, plan_code)
    if coupon and session.exec(select(Coupon).where(Coupon.code == coupon)).first() is None:
        raise NotFound(f"coupon {coupon!r} not found")
    if start is not None and start.tzinfo is None:
        raise BadInput("--start needs a timezone")
    if cycle_limit is not None and cycle_limit < 1:
        raise BadInput("cycle limit must be at least 1")
    at = start or clock.now()
    sub = Subscription(
        tenant_id=t.id,
        plan_id=plan.id,
        plan_code=plan.code,
        app_code=app_code,
        coupon_code=coupon,
        started_at=at,
        cycle_limit=cycle_limit,
        status="trialing" if plan.trial_days else "active",
        trial_ends_at=at + timedelta(days=plan.trial_days) if plan.trial_days else None,
    )
    session.add(sub)
    session.flush()
    audit.record(
        session,
        "subscription.create",
        target_type="subscription",
        target_id=sub.id,
        target=t.key,
        after=audit.snapshot(sub),
        tenant_id=t.id,
    )
    outbox.emit(session, "subscription.created", _payload(sub, t.key), t.id)
    if invoice_now:
        from mno.billing.run import invoice_first_period

        invoice_first_period(session, sub, t)
    return sub


def first_invoice(session: Session, sub: Subscription) -> Invoice | None:
    """The invoice ``--invoice-now`` made for the subscription, if any."""
    return session.exec(
        select(Invoice).where(
            Invoice.kind == "subscription", Invoice.period == f"sub-{sub.id.hex[:16]}"
        )
    ).first()


def get(session: Session, sub_id: str) -> Subscription:
    try:
        sub = session.get(Subscription, uuid.UUID(str(sub_id)))
    except ValueError as exc:
        raise BadInput(f"not a subscription id: {sub_id!r}") from exc
    if sub is None:
        raise NotFound(f"subscription {sub_id} not found")
    return sub


def cancel(session: Session, sub_id: str, *, at: datetime | None = None) -> Subscription:
    """Cancel at ``at`` (now by default); fixed charges are prorated by day up to it."""
    sub = get(session, sub_id)
    if sub.status in ("canceled", "expired"):
        raise InvalidTransition(f"subscription {sub.id} is already {sub.status}")
    before = audit.snapshot(sub)
    when = at or clock.now()
    sub.cancel_at = when
    if when <= clock.now():
        sub.status = "canceled"
        sub.ended_at = when
    sub.touch()
    session.add(sub)
    t = tenants.get(session, sub.tenant_id)
    audit.record(
        session,
        "subscription.cancel",
        target_type="subscription",
        target_id=sub.id,
        target=t.key,
        before=before,
        after=audit.snapshot(sub),
        tenant_id=t.id,
    )
    outbox.emit(session, "subscription.canceled", _payload(sub, t.key), t.id)
    return sub


def change_plan(
    session: Session, sub_id: str, new_plan: str, *, at: datetime | None = None
) -> Subscription:
    """End this subscription at ``at`` and start one on the new plan from the same instant:
    each side's fixed charges are prorated by day in the tenant's timezone."""
    old = get(session, sub_id)
    when = at or clock.now()
    t = tenants.get(session, old.tenant_id)
    cancel(session, sub_id, at=when)
    new = create(
        session, t.key, new_plan, start=when, app_code=old.app_code, coupon=old.coupon_code
    )
    outbox.emit(
        session,
        "subscription.plan_changed",
        {"from": str(old.id), "to": str(new.id), "plan": new_plan, "tenant": t.key},
        t.id,
    )
    return new


def list_subscriptions(
    session: Session, tenant_key: str | None = None, status: str | None = None
) -> list[Subscription]:
    q = select(Subscription).order_by(Subscription.created_at)  # type: ignore[arg-type]
    if tenant_key:
        q = q.where(Subscription.tenant_id == tenants.get(session, tenant_key).id)
    if status:
        q = q.where(Subscription.status == status)
    return list(session.exec(q))
