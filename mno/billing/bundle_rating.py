"""Rating bundles: the part plans' fixed charges of a period become ONE bundle line.

A tenant's bundle subscription owns one subscription per part plan. Rating rates each
part as usual, then ``BundleLines.take`` removes the parts' fixed lines (fixed charges and
bucket fees, all billed in advance: a bundle's plans must bill them so) and keeps, per
bundle subscription and period, what they would have cost. ``BundleLines.lines`` turns
each period into one line of kind ``bundle``:

- ``price``: the bundle's price for the period, prorated by local day like a fixed charge;
- ``percent_off``: the sum of the parts' fixed charges for the whole period less the
  percentage, prorated the same way.

The line is rounded once, as every line is. Usage, time and bucket overage lines and setup
fees of the parts stay lines of their own. The line keeps the parts in its ``detail``
(``invoice explain`` prints them) and has the key ``bundle|<bundle subscription>|<start>|
<end>``, so a period is billed once.

Pure given its inputs; ``load`` reads the bundles and the parts once per run.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import sqlalchemy as sa
from sqlmodel import Session, col

from mno.billing import rating
from mno.billing.periods import local_days
from mno.money import round_money, to_decimal
from mno.store.models.billing import Bundle, BundleSubscription, Subscription

HUNDRED = Decimal(100)


@dataclass(frozen=True, slots=True)
class BundleView:
    """What rating reads of a tenant's bundle subscription and its bundle."""

    subscription_id: uuid.UUID
    code: str
    currency: str
    price: str | None
    percent_off: str | None


def load(session: Session) -> tuple[dict[Any, uuid.UUID], dict[uuid.UUID, BundleView]]:
    """Part subscription id → its bundle subscription id, and each bundle subscription's
    view; read in two statements."""
    rows = session.execute(
        sa.select(col(Subscription.id), col(Subscription.bundle_subscription_id)).where(
            col(Subscription.bundle_subscription_id).is_not(None)
        )
    ).all()
    parts = {row[0]: row[1] for row in rows}
    if not parts:
        return {}, {}
    views = {
        row.id: BundleView(row.id, row.code, row.currency, row.price, row.percent_off)
        for row in session.execute(
            sa.select(
                col(BundleSubscription.id),
                col(Bundle.code),
                col(Bundle.currency),
                col(Bundle.price),
                col(Bundle.percent_off),
            ).join(Bundle, col(Bundle.id) == col(BundleSubscription.bundle_id))
        )
    }
    return parts, views


def bundle_key(bundle_sub_id: Any, start: datetime, end: datetime) -> str:
    return f"bundle|{bundle_sub_id}|{start.isoformat()}|{end.isoformat()}"


def maybe_keys(parts: dict[Any, uuid.UUID], sub_id: Any, slots: list[Any]) -> list[str]:
    """The bundle line keys a part's periods may have been billed under already (a run
    looks them up, as it does the parts' own line keys)."""
    bsub = parts.get(sub_id)
    return [] if bsub is None else [bundle_key(bsub, x.start, x.end) for x in slots]


def span(start: datetime, end: datetime, tz: str) -> str:
    zone = ZoneInfo(tz or "UTC")
    last = end.astimezone(zone).date() - timedelta(days=1)
    return f"{start.astimezone(zone).date().isoformat()} to {last.isoformat()}"


@dataclass
class _Period:
    view: BundleView
    start: datetime
    end: datetime
    eff_start: datetime
    eff_end: datetime
    parts: dict[str, Decimal] = field(default_factory=dict)  # plan code -> full amount


class BundleLines:
    """Collects the parts' fixed lines of a tenant's bundles, period by period."""

    def __init__(
        self,
        parts: dict[Any, uuid.UUID],
        views: dict[uuid.UUID, BundleView],
        tz: str,
        billed: dict[str, Any],
    ) -> None:
        self.parts, self.views, self.tz, self.billed = parts, views, tz, billed
        self.periods: dict[tuple[uuid.UUID, datetime, datetime], _Period] = {}

    def owns(self, sub_id: Any) -> bool:
        return sub_id in self.parts and self.parts[sub_id] in self.views

    def take(
        self, sub_id: Any, plan_code: str, slots: list[Any], lines: list[dict[str, Any]]
    ) -> list[dict[str, Any]]:
        """The part's lines without its fixed ones, which are kept for the bundle line."""
        view = self.views[self.parts[sub_id]]
        for slot in slots:
            if slot.advance:
                key = (view.subscription_id, slot.start, slot.end)
                p = self.periods.setdefault(
                    key, _Period(view, slot.start, slot.end, slot.eff_start, slot.eff_end)
                )
                p.parts.setdefault(plan_code, Decimal(0))
        kept = []
        for ln in lines:
            key = (view.subscription_id, ln["period_start"], ln["period_end"])
            if ln["kind"] != "fixed" or key not in self.periods:
                kept.append(ln)
                continue
            # a fixed line's quantity is 1 and its unit price the whole period's amount
            full = Decimal(ln["unit_price"]) * Decimal(ln["quantity"])
            p = self.periods[key]
            p.parts[plan_code] = p.parts.get(plan_code, Decimal(0)) + full
        return kept

    def lines(self) -> list[tuple[str, dict[str, Any]]]:
        """(currency, line) of each bundle period not billed yet, in period order."""
        out = []
        for (bsub, start, end), p in sorted(self.periods.items(), key=lambda kv: kv[0][1:]):
            key = bundle_key(bsub, start, end)
            if key in self.billed:
                continue
            line = self._line(p, key)
            if line is not None:
                out.append((p.view.currency, line))
        return out

    def _line(self, p: _Period, key: str) -> dict[str, Any] | None:
        view, cur = p.view, p.view.currency
        parts_total = sum(p.parts.values(), Decimal(0))
        detail: dict[str, Any] = {
            "tiers": [],
            "bundle": view.code,
            "bundle_subscription": str(view.subscription_id),
            "parts": [
                {"plan": code, "amount": str(round_money(amount, cur))}
                for code, amount in sorted(p.parts.items())
            ],
            "parts_total": str(round_money(parts_total, cur)),
        }
        if view.price is not None:
            full = to_decimal(view.price)
            detail["price"] = str(full)
        else:
            percent = to_decimal(view.percent_off or "0")
            if not parts_total:
                return None  # nothing fixed to take the percentage off
            full = parts_total * (HUNDRED - percent) / HUNDRED
            detail["percent_off"] = str(percent)
        days = local_days(p.start, p.end, self.tz)
        used = min(local_days(p.eff_start, p.eff_end, self.tz), days)
        factor = Decimal(1) if used >= days else Decimal(used) / Decimal(days)
        ln = rating.fixed(full, cur, factor)
        detail["full_amount"] = str(full.normalize())
        return {
            "line_key": key,
            "subscription_id": None,
            "charge_ref": str(view.subscription_id),
            "kind": "bundle",
            "description": f"{view.code} bundle {span(p.start, p.end, self.tz)}"[:500],
            "period_start": p.start,
            "period_end": p.end,
            "quantity": str(ln.quantity),
            "unit_price": str(ln.unit_price),
            "proration": str(ln.proration),
            "amount_minor": ln.amount_minor,
            "detail": detail,
        }


def explain(detail: dict[str, Any], currency: str) -> list[str]:
    """The arithmetic of a bundle line's amount, for ``invoice explain``."""
    if not detail.get("bundle"):
        return []
    out = [f"  part {p['plan']}: {p['amount']} {currency}" for p in detail.get("parts", [])]
    if detail.get("percent_off") is not None:
        out.append(
            f"  parts {detail.get('parts_total')} - {detail['percent_off']}% off"
            f" = {detail.get('full_amount')} {currency} for the period"
        )
    else:
        out.append(f"  bundle price {detail.get('price')} {currency} for the period")
    return out
