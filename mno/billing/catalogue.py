"""The billing catalogue (metrics, plans, coupons, tax rates): list, get and delete.

Creating and updating go through ``documents.apply`` (YAML documents, shared with
GitOps). Lists and gets see a plan's current version only.

A delete writes its audit row and its ``<kind>.deleted`` event in the caller's
transaction. An object something still refers to is not deleted: the refusal names who
uses it, so the operator can change those first.

- a **plan** (every version) while any subscription, even an ended one, points at it, or
  a bundle on sale sells it;
- a **metric** while a plan version charges for it or usage of it is recorded;
- a **coupon** while a subscription that is not canceled or expired carries it;
- a **tax rate** has no references (invoices keep their own tax detail).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import sqlalchemy as sa
from sqlmodel import Session, col

from mno.errors import Conflict, NotFound
from mno.store import audit, outbox, paging
from mno.store.models.billing import (
    BillingMetric,
    Bundle,
    Coupon,
    Plan,
    Subscription,
    TaxRate,
    UsageEvent,
)
from mno.store.models.tenancy import Tenant

KINDS = ("Metric", "Plan", "Coupon", "TaxRate")
_NOUN = {"Metric": "metric", "Plan": "plan", "Coupon": "coupon", "TaxRate": "tax_rate"}
SHOWN = 5  # names listed in a refusal before "and N more"


def model_of(kind: str) -> Any:
    """The table class of a catalogue kind (Metric, Plan, Coupon, TaxRate)."""
    return {"Metric": BillingMetric, "Plan": Plan, "Coupon": Coupon, "TaxRate": TaxRate}[kind]


def list_objects(session: Session, kind: str) -> list[Any]:
    """Every object of ``kind`` by code (plans: their current version)."""
    model = model_of(kind)
    q = sa.select(model).order_by(model.code)
    if kind == "Plan":
        q = q.where(model.current == True)  # noqa: E712
    return list(session.execute(q).scalars())


def _objects(kind: str) -> tuple[Any, list[Any]]:
    model = model_of(kind)
    q = sa.select(model)
    if kind == "Plan":
        q = q.where(model.current == True)  # noqa: E712
    return q, [model.code]


def page_objects(
    session: Session, kind: str, *, after: str | None = None, limit: int = paging.DEFAULT_LIMIT
) -> paging.Page[Any]:
    """One page of ``kind`` by code after the cursor ``after`` (plans: current versions)."""
    q, order = _objects(kind)
    return paging.page_of(session, q, order, after, limit)


def stream_objects(session: Session, kind: str, *, after: str | None = None) -> Iterator[Any]:
    """Every object of ``kind`` by code, read a chunk at a time."""
    q, order = _objects(kind)
    return paging.each(session, q, order, after)


def get(session: Session, kind: str, code: str) -> Any:
    """The object ``code`` of ``kind`` (a plan: its current version); ``NotFound``."""
    model = model_of(kind)
    q = sa.select(model).where(model.code == code)
    if kind == "Plan":
        q = q.where(model.current == True)  # noqa: E712
    obj = session.execute(q).scalars().first()
    if obj is None:
        raise NotFound(f"{kind.lower()} {code!r} not found")
    return obj


def _names(values: list[str]) -> str:
    unique = sorted(set(values))
    more = f" and {len(unique) - SHOWN} more" if len(unique) > SHOWN else ""
    return ", ".join(unique[:SHOWN]) + more


def _tenant_keys(session: Session, tenant_ids: set[Any]) -> list[str]:
    if not tenant_ids:
        return []
    rows = session.execute(sa.select(col(Tenant.key)).where(col(Tenant.id).in_(tenant_ids)))
    return list(rows.scalars())


def _refusal(kind: str, code: str, session: Session) -> str | None:
    """Who still uses the object, as the refusal message; None when nothing does."""
    if kind == "Plan":
        ids = set(
            session.execute(
                sa.select(col(Subscription.tenant_id)).where(col(Subscription.plan_code) == code)
            ).scalars()
        )
        if ids:
            keys = _tenant_keys(session, ids)
            return f"plan {code} has subscriptions of {len(keys)} tenant(s): {_names(keys)}"
        bundles = [
            b_code
            for b_code, plans in session.execute(
                sa.select(col(Bundle.code), col(Bundle.plans)).where(
                    col(Bundle.archived_at).is_(None)
                )
            )
            if code in (plans or [])
        ]
        if bundles:
            return f"plan {code} is a part of bundle(s) {_names(bundles)}"
    elif kind == "Metric":
        plans = [
            p_code
            for p_code, charges in session.execute(sa.select(col(Plan.code), col(Plan.charges)))
            if any((c or {}).get("metric") == code for c in charges or [])
        ]
        if plans:
            return f"metric {code} is charged by plan(s) {_names(plans)}"
        ids = set(
            session.execute(
                sa.select(col(UsageEvent.tenant_id))
                .where(col(UsageEvent.metric_code) == code)
                .distinct()
            ).scalars()
        )
        if ids:
            keys = _tenant_keys(session, ids)
            return f"metric {code} has usage recorded for {len(keys)} tenant(s): {_names(keys)}"
    elif kind == "Coupon":
        ids = set(
            session.execute(
                sa.select(col(Subscription.tenant_id)).where(
                    col(Subscription.coupon_code) == code,
                    col(Subscription.status).not_in(("canceled", "expired")),
                )
            ).scalars()
        )
        if ids:
            keys = _tenant_keys(session, ids)
            return f"coupon {code} is on subscriptions of {len(keys)} tenant(s): {_names(keys)}"
    return None


def delete(session: Session, kind: str, code: str) -> dict[str, Any]:
    """Delete the catalogue object ``code`` of ``kind`` (Metric, Plan, Coupon, TaxRate);
    returns what was deleted. ``Conflict`` when something still refers to it."""
    model = model_of(kind)
    noun = _NOUN[kind]
    rows = list(session.execute(sa.select(model).where(model.code == code)).scalars())
    if not rows:
        raise NotFound(f"{noun.replace('_', ' ')} {code} not found", f"see `mno {_cli(kind)} list`")
    reason = _refusal(kind, code, session)
    if reason:
        raise Conflict(reason, "change or remove those first")
    before = [audit.snapshot(r) for r in sorted(rows, key=lambda r: getattr(r, "version", 0))]
    session.execute(sa.delete(model).where(model.code == code))
    current = before[-1]
    audit.record(
        session,
        f"{noun}.delete",
        target_type=noun,
        target_id=current["id"],
        target=code,
        before=current | ({"versions": len(before)} if kind == "Plan" else {}),
    )
    payload: dict[str, Any] = {"code": code}
    if kind == "Plan":
        payload["versions"] = len(before)
    outbox.emit(session, f"{noun}.deleted", payload)
    return {"kind": kind, "code": code, "deleted": len(before)}


def _cli(kind: str) -> str:
    """The command group of a kind (plans live under ``mno billing plan``: ``mno plan`` is
    the GitOps planner)."""
    return {"TaxRate": "tax-rate", "Plan": "billing plan"}.get(kind, kind.lower())


def delete_metric(session: Session, code: str) -> dict[str, Any]:
    return delete(session, "Metric", code)


def delete_plan(session: Session, code: str) -> dict[str, Any]:
    return delete(session, "Plan", code)


def delete_coupon(session: Session, code: str) -> dict[str, Any]:
    return delete(session, "Coupon", code)


def delete_tax_rate(session: Session, code: str) -> dict[str, Any]:
    return delete(session, "TaxRate", code)
