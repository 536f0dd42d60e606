"""Bundles: several plans and/or apps sold as one product at one price.

A bundle is catalogue (declared like a plan, in YAML or by flags): a currency, an interval
and either a fixed ``price`` per interval or a ``percent_off`` the sum of its plans' fixed
charges. Its parts are plan codes (at least one: the plans carry the periods) and app
codes. Every part plan bills in the bundle's currency and interval, has no trial, and bills
its fixed charges (and bucket fees) in advance, so that a period's parts are billed
together. Archiving a bundle stops new subscriptions; those running carry on. A change of
price applies to the periods billed after it; a change of parts to the subscriptions made
after it.

Subscribing a tenant to a bundle (``subscribe``) writes a bundle subscription, one
subscription per part plan (pinned to the plan's current version, linked to the bundle
subscription) and a grant on each part app the tenant had none on. Rating bills ONE
``bundle`` line per bundle subscription and period in place of the parts' fixed charges
(``mno.billing.bundle_rating``); the parts' usage, time and bucket overage and setup fees
are billed as the part plans say, on lines of their own.

A bundle is cancelled and changed as one: ``cancel`` ends every part with it (the unused
part of a bundle line already billed becomes a prepaid credit, like a fixed charge's) and
revokes the grants it made once it has ended (at once, or by ``end_due``, which the biller
calls, for a cancellation set for later); ``change`` ends it and starts a subscription
to another bundle from the same instant. A part cannot be cancelled or changed alone.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import datetime
from typing import Any

from sqlmodel import Session, col, select

from mno import clock
from mno.billing import subscriptions
from mno.billing.bundle_spec import CODE, BundleSpec, parse_documents, parse_spec
from mno.billing.ledger import add_credit
from mno.billing.periods import local_days
from mno.billing.tenant_rating import fixed_fields
from mno.errors import BadInput, Conflict, InvalidTransition, NotFound
from mno.money import to_decimal
from mno.store import audit, lookup, outbox, paging
from mno.store.models.billing import (
    Bundle,
    BundleSubscription,
    Invoice,
    InvoiceLine,
    Plan,
    Subscription,
)
from mno.store.models.tenancy import App, AppGrant
from mno.tenancy import apps, tenants

__all__ = [
    "BundleSpec",
    "apply",
    "archive",
    "cancel",
    "change",
    "end_due",
    "parse_documents",
    "parse_spec",
    "subscribe",
]


def _check_parts(session: Session, code: str, spec: BundleSpec) -> None:
    """Every part exists and fits the bundle; BadInput naming the first that does not."""
    unit, every = spec.interval.unit, spec.interval.every
    for p_code in spec.plans:
        plan = session.exec(
            select(Plan).where(Plan.code == p_code, Plan.current == True)  # noqa: E712
        ).first()
        if plan is None:
            raise BadInput(f"bundle {code}: plan {p_code!r} not found", "create the plan first")
        if plan.currency != spec.currency:
            raise BadInput(
                f"bundle {code}: plan {p_code} bills in {plan.currency}, "
                f"the bundle in {spec.currency}"
            )
        if (plan.interval_unit, plan.interval_every) != (unit, every):
            raise BadInput(
                f"bundle {code}: plan {p_code} bills every {plan.interval_every} "
                f"{plan.interval_unit}, the bundle every {every} {unit}"
            )
        if plan.trial_days:
            raise BadInput(f"bundle {code}: plan {p_code} has a trial; a bundle's plans cannot")
        for i, ch in enumerate(plan.charges or []):
            recurring = ch.get("kind") == "fixed" or (
                ch.get("kind") == "bucket" and to_decimal(str(ch.get("amount") or "0")) > 0
            )
            if recurring and ch.get("timing", "advance") != "advance":
                raise BadInput(
                    f"bundle {code}: plan {p_code} charge {i} is billed in arrears",
                    "a bundle's plans bill their fixed charges in advance",
                )
    for a_code in spec.apps:
        if session.exec(select(App).where(App.code == a_code)).first() is None:
            raise BadInput(f"bundle {code}: app {a_code!r} not found", "create the app first")


def _values(name: str, spec: BundleSpec) -> dict[str, Any]:
    return {
        "name": spec.name or name,
        "currency": spec.currency,
        "price": None if spec.price is None else str(spec.price),
        "percent_off": None if spec.percent_off is None else str(spec.percent_off),
        "interval_unit": spec.interval.unit,
        "interval_every": spec.interval.every,
        "plans": list(spec.plans),
        "apps": list(spec.apps),
    }


def spec_of(b: Bundle) -> dict[str, Any]:
    """The bundle as its document spec (JSON values)."""
    raw = {
        "name": "" if b.name == b.code else b.name,
        "currency": b.currency,
        "interval": {"unit": b.interval_unit, "every": b.interval_every},
        "price": b.price,
        "percent_off": b.percent_off,
        "plans": list(b.plans or []),
        "apps": list(b.apps or []),
    }
    return BundleSpec.model_validate(raw).model_dump(mode="json")


def _event(b: Bundle) -> dict[str, Any]:
    return {
        "code": b.code,
        "currency": b.currency,
        "price": b.price,
        "percent_off": b.percent_off,
        "plans": list(b.plans or []),
        "apps": list(b.apps or []),
    }


def apply(session: Session, code: str, spec: BundleSpec) -> tuple[str, Bundle]:
    """Create or update the bundle ``code``: ("created"|"updated"|"unchanged", bundle).

    Writes its audit row and its ``bundle.created``/``bundle.updated`` event."""
    if not re.match(CODE, code):
        raise BadInput(f"invalid bundle code {code!r}", "a-z, 0-9, '_', '.', '-'")
    _check_parts(session, code, spec)
    values = _values(code, spec)
    b = session.exec(select(Bundle).where(Bundle.code == code)).first()
    if b is None:
        b = Bundle(code=code, **values)
        session.add(b)
        session.flush()
        audit.record(
            session,
            "bundle.create",
            target_type="bundle",
            target_id=b.id,
            target=code,
            after=audit.snapshot(b),
        )
        outbox.emit(session, "bundle.created", _event(b))
        return "created", b
    if b.archived_at is None and all(getattr(b, k) == v for k, v in values.items()):
        return "unchanged", b
    before = audit.snapshot(b)
    for k, v in values.items():
        setattr(b, k, v)
    b.archived_at = None  # declared again: back on sale
    b.touch()
    session.add(b)
    session.flush()
    audit.record(
        session,
        "bundle.update",
        target_type="bundle",
        target_id=b.id,
        target=code,
        before=before,
        after=audit.snapshot(b),
    )
    outbox.emit(session, "bundle.updated", _event(b))
    return "updated", b


def get(session: Session, code: str) -> Bundle:
    b = session.exec(select(Bundle).where(Bundle.code == code)).first()
    if b is None:
        raise NotFound(f"bundle {code!r} not found", "see `mno bundle list`")
    return b


def list_bundles(
    session: Session, *, archived: bool = False, limit: int | None = None
) -> list[Bundle]:
    """Bundles by code (at most ``limit``); archived ones only with ``archived``."""
    q = _bundles(archived).order_by(col(Bundle.code))
    if limit is not None:
        q = q.limit(limit)
    return list(session.exec(q))


def _bundles(archived: bool) -> Any:
    q = select(Bundle)
    if not archived:
        q = q.where(col(Bundle.archived_at).is_(None))
    return q


def page_bundles(
    session: Session,
    *,
    archived: bool = False,
    after: str | None = None,
    limit: int = paging.DEFAULT_LIMIT,
) -> paging.Page[Bundle]:
    """One page of bundles by code, after the cursor ``after`` (a code)."""
    return paging.page_of(session, _bundles(archived), [col(Bundle.code)], after, limit)


def stream_bundles(
    session: Session, *, archived: bool = False, after: str | None = None
) -> Iterator[Bundle]:
    """Every bundle by code, read a chunk at a time."""
    return paging.each(session, _bundles(archived), [col(Bundle.code)], after)


def archive(session: Session, code: str) -> Bundle:
    """Stop selling the bundle: no new subscriptions; those running carry on."""
    b = get(session, code)
    if b.archived_at is not None:
        raise InvalidTransition(f"bundle {code} is already archived")
    before = audit.snapshot(b)
    b.archived_at = clock.now()
    b.touch()
    session.add(b)
    session.flush()
    audit.record(
        session,
        "bundle.archive",
        target_type="bundle",
        target_id=b.id,
        target=code,
        before=before,
        after=audit.snapshot(b),
    )
    outbox.emit(session, "bundle.archived", {"code": code})
    return b


def view(b: Bundle) -> dict[str, Any]:
    """The bundle as plain data (the CLI's and the API's)."""
    return {
        "code": b.code,
        "name": b.name,
        "currency": b.currency,
        "pricing": "price" if b.price is not None else "percent_off",
        "price": b.price,
        "percent_off": b.percent_off,
        "interval_unit": b.interval_unit,
        "interval_every": b.interval_every,
        "plans": list(b.plans or []),
        "apps": list(b.apps or []),
        "archived_at": b.archived_at,
        "created_at": b.created_at,
    }


# Bundle subscriptions -----------------------------------------------------------------


def _sub_payload(bs: BundleSubscription, key: str) -> dict[str, Any]:
    return {"id": str(bs.id), "tenant": key, "bundle": bs.bundle_code, "status": bs.status}


def parts(session: Session, bs: BundleSubscription) -> list[Subscription]:
    """The part subscriptions of a bundle subscription, by plan code."""
    return list(
        session.exec(
            select(Subscription)
            .where(Subscription.bundle_subscription_id == bs.id)
            .order_by(col(Subscription.plan_code))
        )
    )


def subscribe(
    session: Session, tenant_key: str, code: str, *, start: datetime | None = None
) -> BundleSubscription:
    """Subscribe ``tenant_key`` to the bundle ``code``: the bundle subscription, one
    subscription per part plan and a grant on each part app the tenant had none on."""
    t = tenants.get(session, tenant_key)
    b = get(session, code)
    if b.archived_at is not None:
        raise Conflict(f"bundle {code} is archived", "subscribe to a bundle still on sale")
    if start is not None and start.tzinfo is None:
        raise BadInput("--start needs a timezone")
    _check_parts(session, code, parse_spec(spec_of(b)))
    at = start or clock.now()
    bs = BundleSubscription(tenant_id=t.id, bundle_id=b.id, bundle_code=b.code, started_at=at)
    session.add(bs)
    session.flush()
    for p_code in b.plans:
        subscriptions.create(session, t.key, p_code, start=at, bundle_subscription_id=bs.id)
    granted = []
    for a_code in b.apps or []:
        app = apps.get(session, a_code)
        had = session.exec(
            select(AppGrant).where(AppGrant.app_id == app.id, AppGrant.tenant_id == t.id)
        ).first()
        if had is None:
            apps.grant(session, a_code, t.key)
            granted.append(a_code)
    bs.granted_apps = granted
    session.add(bs)
    session.flush()
    audit.record(
        session,
        "bundle_subscription.create",
        target_type="bundle_subscription",
        target_id=bs.id,
        target=t.key,
        after=audit.snapshot(bs),
        tenant_id=t.id,
    )
    outbox.emit(session, "bundle_subscription.created", _sub_payload(bs, t.key), t.id)
    return bs


def find_subscription(session: Session, sub_id: str) -> BundleSubscription | None:
    """The bundle subscription ``sub_id``, or None when it is no bundle subscription's."""
    if not lookup.looks_like_id(sub_id):
        raise BadInput(f"invalid subscription id {sub_id!r}", lookup.PREFIX_HINT)
    return lookup.find(session, BundleSubscription, sub_id, "bundle subscription")


def get_subscription(session: Session, sub_id: str) -> BundleSubscription:
    bs = find_subscription(session, sub_id)
    if bs is None:
        raise NotFound(f"bundle subscription {sub_id} not found")
    return bs


def subscription_view(session: Session, bs: BundleSubscription) -> dict[str, Any]:
    return {
        "id": str(bs.id),
        "tenant": tenants.get(session, bs.tenant_id).key,
        "bundle": bs.bundle_code,
        "status": bs.status,
        "started_at": bs.started_at,
        "cancel_at": bs.cancel_at,
        "parts": [
            {"id": str(p.id), "plan": p.plan_code, "status": p.status} for p in parts(session, bs)
        ],
        "apps_granted": list(bs.granted_apps or []),
    }


def _credit_unused(
    session: Session, bs: BundleSubscription, tz: str, when: datetime, before: datetime | None
) -> int:
    """Credit the part after ``when`` of the bundle lines already billed, by local day:
    each line keeps what a line prorated up to ``when`` would have cost (``before``: a
    cancellation set earlier, already credited down to it). The credit in minor units."""
    rows = session.exec(
        select(InvoiceLine, Invoice.currency)
        .join(Invoice, col(Invoice.id) == col(InvoiceLine.invoice_id))
        .where(
            InvoiceLine.kind == "bundle",
            InvoiceLine.charge_ref == str(bs.id),
            col(InvoiceLine.period_end) > when,
            Invoice.status != "void",
            Invoice.kind != "credit_note",
        )
    ).all()
    credit = 0
    currency = None
    for ln, cur in rows:
        assert ln.period_start is not None and ln.period_end is not None
        full = str((ln.detail or {}).get("full_amount", ln.unit_price))
        days = local_days(ln.period_start, ln.period_end, tz)
        begin = max(ln.period_start, bs.started_at)

        kept = ln.amount_minor
        if before is not None:
            kept = min(kept, _prorated(full, cur, begin, before, days, tz))
        credit += max(kept - _prorated(full, cur, begin, when, days, tz), 0)
        currency = cur
    if credit and currency is not None:
        add_credit(
            session,
            tenants.get(session, bs.tenant_id).key,
            credit,
            currency,
            reference=f"proration bundle {bs.id}",
        )
    return credit


def _prorated(full: str, cur: str, begin: datetime, end: datetime, days: int, tz: str) -> int:
    """A period's amount ``full`` for the local days from ``begin`` to ``end``."""
    used = local_days(begin, max(end, begin), tz)
    return int(fixed_fields(full, cur, min(used, days), days)["amount_minor"])


def cancel(
    session: Session,
    sub_id: str,
    *,
    at: datetime | None = None,
    at_period_end: bool = False,
    credit: bool = True,
) -> BundleSubscription:
    """Cancel the bundle subscription and every part with it: now, at ``at`` or at the
    end of the current period. The unused part of a bundle line billed in advance becomes
    a prepaid credit (unless ``credit`` is off); the app grants the bundle made are
    revoked when it ends: here when that is now, else by ``end_due``."""
    bs = get_subscription(session, sub_id)
    if bs.status in ("canceled", "expired"):
        raise InvalidTransition(f"bundle subscription {bs.id} is already {bs.status}")
    if at is not None and at_period_end:
        raise BadInput("give either --at or --at-period-end", "not both")
    t = tenants.get(session, bs.tenant_id)
    before = audit.snapshot(bs)
    before_at = bs.cancel_at
    live = [p for p in parts(session, bs) if p.status not in ("canceled", "expired")]
    for p in live:
        subscriptions.cancel(
            session, str(p.id), at=at, at_period_end=at_period_end, credit=credit, bundle=True
        )
    now = clock.now()
    when = live[0].cancel_at if live and live[0].cancel_at is not None else (at or now)
    if before_at is not None and when > before_at:
        raise InvalidTransition(
            f"bundle subscription {bs.id} already ends at {before_at.isoformat()}",
            "a cancellation can only be brought forward",
        )
    bs.cancel_at = when
    if when <= now:
        bs.status = "canceled"
        bs.ended_at = when
        for a_code in bs.granted_apps or []:
            _revoke(session, a_code, t.key)
    bs.touch()
    session.add(bs)
    session.flush()
    if credit:
        _credit_unused(session, bs, t.timezone or "UTC", when, before_at)
    audit.record(
        session,
        "bundle_subscription.cancel",
        target_type="bundle_subscription",
        target_id=bs.id,
        target=t.key,
        before=before,
        after=audit.snapshot(bs),
        tenant_id=t.id,
    )
    outbox.emit(session, "bundle_subscription.canceled", _sub_payload(bs, t.key), t.id)
    return bs


def end_due(session: Session, now: datetime) -> int:
    """End the bundle subscriptions whose cancellation has come (set for later by
    ``cancel``): ``canceled``, and the app grants they made revoked. How many."""
    due = session.exec(
        select(BundleSubscription).where(
            col(BundleSubscription.status).not_in(("canceled", "expired")),
            col(BundleSubscription.cancel_at) <= now,
        )
    ).all()
    for bs in due:
        assert bs.cancel_at is not None
        t = tenants.get(session, bs.tenant_id)
        before = audit.snapshot(bs)
        bs.status, bs.ended_at = "canceled", bs.cancel_at
        for a_code in bs.granted_apps or []:
            _revoke(session, a_code, t.key)
        bs.touch()
        session.add(bs)
        session.flush()
        audit.record(
            session,
            "bundle_subscription.end",
            target_type="bundle_subscription",
            target_id=bs.id,
            target=t.key,
            before=before,
            after=audit.snapshot(bs),
            tenant_id=t.id,
        )
        outbox.emit(session, "bundle_subscription.ended", _sub_payload(bs, t.key), t.id)
    return len(due)


def _revoke(session: Session, app_code: str, tenant_key: str) -> None:
    try:
        apps.revoke(session, app_code, tenant_key)
    except NotFound:
        pass  # revoked already by hand (or the app is gone): nothing left to take back


def change(
    session: Session,
    sub_id: str,
    new_code: str,
    *,
    at: datetime | None = None,
    at_period_end: bool = False,
) -> BundleSubscription:
    """End the bundle subscription (with its parts) and subscribe the tenant to the bundle
    ``new_code`` from the same instant: now (the unused part becomes a credit), at ``at``
    or at the end of the current period."""
    old = get_subscription(session, sub_id)
    new_bundle = get(session, new_code)
    if new_bundle.archived_at is not None:
        raise Conflict(f"bundle {new_code} is archived", "change to a bundle still on sale")
    t = tenants.get(session, old.tenant_id)
    cancel(session, sub_id, at=at, at_period_end=at_period_end)
    assert old.cancel_at is not None
    new = subscribe(session, t.key, new_code, start=old.cancel_at)
    outbox.emit(
        session,
        "bundle_subscription.changed",
        {"from": str(old.id), "to": str(new.id), "bundle": new_code, "tenant": t.key},
        t.id,
    )
    return new
