"""Subscriptions: create (pinned to the plan's current version), cancel, change plan."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from sqlmodel import Session, col, select

from mno import clock
from mno.billing import invoice_rows
from mno.billing.ledger import add_credit
from mno.billing.periods import local_days, local_midnight, schedule, unit_index
from mno.billing.tenant_rating import (
    coupon_applies,
    fee_key,
    fixed_fields,
    line_key,
    load_catalog,
    rate_tenant,
    setup_key,
    slots,
)
from mno.errors import BadInput, Conflict, InvalidTransition, NotFound
from mno.nex import provisioning
from mno.store import audit, lookup, outbox, paging
from mno.store.models.billing import (
    Coupon,
    Invoice,
    InvoiceLine,
    Plan,
    Subscription,
    TaxTreatment,
)
from mno.store.models.tenancy import Tenant
from mno.store.types import new_id, table_of
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
    coupon_periods_used: int = 0,
    bundle_subscription_id: uuid.UUID | None = None,
    nex: bool = True,
) -> Subscription:
    """Subscribe; with ``invoice_now`` the first period's in-advance charges are billed at
    once on a draft invoice (the run that covers the start then skips those lines).

    A subscription to a Nex app of a provisioned tenant gets its instance in the same
    transaction (``mno.nex.provisioning.subscription_changed``; ``nex`` off skips that)."""
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
        coupon_periods_used=coupon_periods_used if coupon else 0,
        bundle_subscription_id=bundle_subscription_id,
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
        invoice_first_period(session, sub, t)
    if nex:
        provisioning.subscription_changed(session, t.id, app_code)
    return sub


def invoice_first_period(session: Session, sub: Subscription, tenant: Tenant) -> Invoice | None:
    """Bill the first period's in-advance charges of ``sub`` now, in the caller's
    transaction. The lines carry the keys a later run would use, so that run skips them."""
    if sub.trial_ends_at is not None and sub.trial_ends_at > clock.now():
        return None  # nothing is due during a trial: the run after it bills the first period
    plan = session.get(Plan, sub.plan_id)
    assert plan is not None
    cat = load_catalog(session)
    tz = tenant.timezone or "UTC"
    first = slots(sub, plan, tz, 2000, 1, first_only=True)
    keys = [line_key(sub.id, i, x.start, x.end) for x in first for i in range(len(plan.charges))]
    keys += [fee_key(sub.id, i, x.start, x.end) for x in first for i in range(len(plan.charges))]
    keys.append(setup_key(sub.id))
    t_taxt = table_of(TaxTreatment)
    treatments = {
        (r.country, r.region or ""): r
        for r in session.execute(sa.select(t_taxt).where(t_taxt.c.tenant_id == tenant.id))
    }
    invs = rate_tenant(
        tenant,
        [sub],
        {},
        [],
        0,
        0,
        cat,
        billed=invoice_rows.existing_lines(session, keys),
        slots_of={sub.id: first},
        treatments=treatments,
    )
    if not invs:
        return None
    now = clock.now()
    (currency, (lines, totals)) = next(iter(invs.items()))
    inv_id = new_id()
    period = f"sub-{sub.id.hex[:16]}"
    row = invoice_rows.invoice_row(
        inv_id, tenant.id, None, period, "subscription", currency, totals, now
    )
    for ln in lines:
        ln.update(id=new_id(), invoice_id=inv_id, created_at=now, updated_at=now)
    session.flush()
    invoice_rows.write(session, [row], lines, [], set(), now)
    sub.periods_billed += 1
    session.add(sub)
    inv = session.get(Invoice, inv_id)
    assert inv is not None
    return inv


def first_invoice(session: Session, sub: Subscription) -> Invoice | None:
    """The invoice ``--invoice-now`` made for the subscription, if any."""
    return session.exec(
        select(Invoice).where(
            Invoice.kind == "subscription", Invoice.period == f"sub-{sub.id.hex[:16]}"
        )
    ).first()


def get(session: Session, sub_id: str) -> Subscription:
    return lookup.by_id_or_prefix(
        session, Subscription, sub_id, "subscription", "see `mno subscription list`"
    )


def period_at(sub: Subscription, plan: Plan, tz: str, at: datetime) -> tuple[datetime, datetime]:
    """The bounds (aware UTC) of the period of ``sub`` that contains ``at``, in ``tz``."""
    unit, every = plan.interval_unit or "month", plan.interval_every or 1
    zone = ZoneInfo(tz or "UTC")
    begin = sub.trial_ends_at or sub.started_at
    anchor = unit_index(begin.astimezone(zone).date(), unit)
    d = max(at, begin).astimezone(zone).date()
    (_, a, b) = schedule(anchor, unit, every, d, d + timedelta(days=1))[0]
    return local_midnight(a, tz or "UTC"), local_midnight(b, tz or "UTC")


def credit_unused(
    session: Session, sub: Subscription, tz: str, when: datetime, before: datetime | None = None
) -> int:
    """Credit the part after ``when`` of the fixed charges of ``sub`` already billed, by
    day in ``tz``: each line keeps what a line prorated up to ``when`` would have cost.
    ``before`` is a cancellation set earlier (already credited down to it). Returns the
    credit in minor units (0 when nothing was billed beyond ``when``)."""
    plan = session.get(Plan, sub.plan_id)
    assert plan is not None
    rows = session.exec(
        select(InvoiceLine)
        .join(Invoice, col(Invoice.id) == col(InvoiceLine.invoice_id))
        .where(
            InvoiceLine.subscription_id == sub.id,
            InvoiceLine.kind == "fixed",
            col(InvoiceLine.period_end) > when,
            Invoice.status != "void",
        )
    ).all()
    credit = 0
    for ln in rows:
        assert ln.period_start is not None and ln.period_end is not None
        amount = str(plan.charges[int(ln.charge_ref)]["amount"])
        days = local_days(ln.period_start, ln.period_end, tz)
        begin = max(ln.period_start, sub.trial_ends_at or sub.started_at)
        cur = plan.currency
        kept = ln.amount_minor
        if before is not None:
            kept = min(kept, _prorated(amount, cur, ln.period_start, begin, before, days, tz))
        unused = max(kept - _prorated(amount, cur, ln.period_start, begin, when, days, tz), 0)
        # what a coupon took off the line was never paid: only the rest is credited
        share = Decimal(str((ln.detail or {}).get("discount_share", "0")))
        credit += int((unused * (1 - share)).quantize(Decimal(1), rounding=ROUND_HALF_UP))
    if credit:
        add_credit(
            session,
            tenants.get(session, sub.tenant_id).key,
            credit,
            plan.currency,
            reference=f"proration {sub.id}",
        )
    return credit


def _prorated(
    amount: str,
    cur: str,
    period_start: datetime,
    begin: datetime,
    end: datetime,
    days: int,
    tz: str,
) -> int:
    """A fixed charge for the local days from ``begin`` to ``end`` of the ``days``-day
    period that starts at ``period_start``, as the run bills that part of it."""
    used = local_days(begin, max(end, begin), tz)
    before = local_days(period_start, begin, tz)
    return int(fixed_fields(amount, cur, min(used, days), days, before)["amount_minor"])


def scheduled_changes(
    session: Session, sub: Subscription, ends_at: datetime | None, now: datetime
) -> list[Subscription]:
    """The plan changes scheduled on ``sub`` that have not started yet: the subscriptions
    of the same tenant and app that ``change_plan(at_period_end=True)`` (or ``at=``)
    started at its end, ``ends_at``."""
    if ends_at is None or ends_at <= now:
        return []
    return list(
        session.exec(
            select(Subscription).where(
                Subscription.tenant_id == sub.tenant_id,
                Subscription.id != sub.id,
                Subscription.started_at == ends_at,
                Subscription.app_code == sub.app_code,
                col(Subscription.status).in_(["active", "trialing"]),
                # a bundle's parts are scheduled and dropped with their bundle only
                col(Subscription.bundle_subscription_id).is_(None),
            )
        )
    )


def _drop_scheduled(
    session: Session, sub: Subscription, t: Tenant, now: datetime, credit: bool
) -> None:
    """Cancel a scheduled subscription that has not started: it ends where it starts, so
    no run bills it; what was billed ahead for it (``--invoice-now``) is credited in full
    unless ``credit`` is off. Its own scheduled changes go with it."""
    before = audit.snapshot(sub)
    ends_at = sub.cancel_at
    sub.cancel_at = sub.ended_at = sub.started_at
    sub.status = "canceled"
    sub.touch()
    session.add(sub)
    session.flush()
    if credit:
        credit_unused(session, sub, t.timezone or "UTC", sub.started_at)
    _record_cancel(session, sub, t, before)
    for nxt in scheduled_changes(session, sub, ends_at, now):
        _drop_scheduled(session, nxt, t, now, credit)


def _not_a_part(sub: Subscription, verb: str) -> None:
    """Refuse to act on a bundle's part alone: the bundle is cancelled or changed as one."""
    if sub.bundle_subscription_id is not None:
        raise Conflict(
            f"subscription {sub.id} is part of bundle subscription {sub.bundle_subscription_id}",
            f"{verb} the bundle subscription instead",
        )


def _record_cancel(session: Session, sub: Subscription, t: Tenant, before: dict[str, Any]) -> None:
    """The audit row and the ``subscription.canceled`` event of a cancellation."""
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


def cancel(
    session: Session,
    sub_id: str,
    *,
    at: datetime | None = None,
    at_period_end: bool = False,
    credit: bool = True,
    bundle: bool = False,
    nex: bool = True,
) -> Subscription:
    """Cancel now, at ``at`` or at the end of the current period (no proration then).

    Fixed charges not billed yet are prorated by day up to the cancellation by the run;
    the unused part of those already billed (prepaid, in advance) becomes a prepaid
    credit at once, drawn down by the tenant's next invoice, unless ``credit`` is off.
    The plan changes scheduled to start at the subscription's end are cancelled with it
    (also when cancelling at that same end), so nothing of it bills again. A bundle's
    part is cancelled with its bundle only (``bundle``: by ``bundles.cancel``).

    Ended now, a subscription to a Nex app stops the tenant's instances of the app (in the
    same transaction) unless another subscription or the tier keeps the app; their data
    stays until the operator terminates them. ``nex`` off skips that."""
    sub = get(session, sub_id)
    if not bundle:
        _not_a_part(sub, "cancel")
    if sub.status in ("canceled", "expired"):
        raise InvalidTransition(f"subscription {sub.id} is already {sub.status}")
    if at is not None and at_period_end:
        raise BadInput("give either --at or --at-period-end", "not both")
    before = audit.snapshot(sub)
    t = tenants.get(session, sub.tenant_id)
    tz = t.timezone or "UTC"
    now = clock.now()
    if at_period_end:
        plan = session.get(Plan, sub.plan_id)
        assert plan is not None
        if sub.trial_ends_at is not None and now < sub.trial_ends_at:
            when = sub.trial_ends_at  # the trial's end: nothing was billed
        else:
            when = period_at(sub, plan, tz, now)[1]
    else:
        when = at or now
    before_at = sub.cancel_at
    scheduled = scheduled_changes(session, sub, before_at, now)
    if before_at is not None and (when > before_at or (when == before_at and not scheduled)):
        raise InvalidTransition(
            f"subscription {sub.id} already ends at {before_at.isoformat()}",
            "a cancellation can only be brought forward",
        )
    sub.cancel_at = when
    if when <= now:
        sub.status = "canceled"
        sub.ended_at = when
    sub.touch()
    session.add(sub)
    session.flush()
    if credit:
        credit_unused(session, sub, tz, when, before_at)
    for nxt in scheduled:
        _drop_scheduled(session, nxt, t, now, credit)
    _record_cancel(session, sub, t, before)
    if nex and sub.status == "canceled":
        provisioning.subscription_changed(session, t.id, sub.app_code)
    return sub


def change_plan(
    session: Session,
    sub_id: str,
    new_plan: str,
    *,
    at: datetime | None = None,
    at_period_end: bool = False,
) -> Subscription:
    """End this subscription and start one on the new plan from the same instant.

    Now (the default): the unused part of the old plan's fixed charges already billed
    becomes a credit, and the new plan's in-advance charges for the rest of the period
    are billed at once on a draft invoice, both prorated by day in the tenant's timezone.
    ``at_period_end``: the change takes effect when the current period ends, with no
    proration. ``at``: from that instant, prorated by day."""
    old = get(session, sub_id)
    _not_a_part(old, "change-plan")
    plan_current(session, new_plan)
    t = tenants.get(session, old.tenant_id)
    cancel(session, sub_id, at=at, at_period_end=at_period_end, nex=False)
    assert old.cancel_at is not None
    when = old.cancel_at
    # the coupon goes on with what is left of it: a once coupon already used stays used
    used = old.periods_billed + (old.coupon_periods_used or 0)
    coupon = None
    if old.coupon_code:
        found = session.exec(select(Coupon).where(Coupon.code == old.coupon_code)).first()
        if found is not None and coupon_applies(found, used):
            coupon = old.coupon_code
    new = create(
        session,
        t.key,
        new_plan,
        start=when,
        app_code=old.app_code,
        coupon=coupon,
        coupon_periods_used=used,
        invoice_now=at is None and not at_period_end,
        nex=False,
    )
    provisioning.subscription_changed(session, t.id, old.app_code)  # the app stays wanted
    outbox.emit(
        session,
        "subscription.plan_changed",
        {"from": str(old.id), "to": str(new.id), "plan": new_plan, "tenant": t.key},
        t.id,
    )
    return new


def end_trials(session: Session, now: datetime) -> int:
    """Move subscriptions whose trial has ended to ``active``; returns how many."""
    subs = session.exec(
        select(Subscription).where(
            Subscription.status == "trialing",
            col(Subscription.trial_ends_at) <= now,
        )
    ).all()
    for sub in subs:
        before = audit.snapshot(sub)
        sub.status = "active"
        sub.touch()
        session.add(sub)
        t = tenants.get(session, sub.tenant_id)
        audit.record(
            session,
            "subscription.trial_end",
            target_type="subscription",
            target_id=sub.id,
            target=t.key,
            before=before,
            after=audit.snapshot(sub),
            tenant_id=t.id,
        )
        outbox.emit(session, "subscription.activated", _payload(sub, t.key), t.id)
    return len(subs)


def _subscriptions(session: Session, tenant_key: str | None, status: str | None) -> Any:
    q = select(Subscription)
    if tenant_key:
        q = q.where(Subscription.tenant_id == tenants.get(session, tenant_key).id)
    if status:
        q = q.where(Subscription.status == status)
    return q


_SUBSCRIPTION_ORDER = [col(Subscription.created_at), col(Subscription.id)]


def page_subscriptions(
    session: Session,
    tenant_key: str | None = None,
    status: str | None = None,
    *,
    after: str | None = None,
    limit: int = paging.DEFAULT_LIMIT,
) -> paging.Page[Subscription]:
    """One page of subscriptions, oldest first, after the cursor ``after``."""
    q = _subscriptions(session, tenant_key, status)
    return paging.page_of(session, q, _SUBSCRIPTION_ORDER, after, limit)


def stream_subscriptions(
    session: Session,
    tenant_key: str | None = None,
    status: str | None = None,
    *,
    after: str | None = None,
) -> Iterator[Subscription]:
    """Every subscription, oldest first, read a chunk at a time."""
    q = _subscriptions(session, tenant_key, status)
    return paging.each(session, q, _SUBSCRIPTION_ORDER, after)


def list_subscriptions(
    session: Session, tenant_key: str | None = None, status: str | None = None
) -> list[Subscription]:
    q = select(Subscription).order_by(col(Subscription.created_at))
    if tenant_key:
        q = q.where(Subscription.tenant_id == tenants.get(session, tenant_key).id)
    if status:
        q = q.where(Subscription.status == status)
    return list(session.exec(q))
