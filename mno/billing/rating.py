"""Pure rating functions: quantity in, a line (quantity, unit price, tiers, amount) out.

Nothing here touches the store. Amounts keep full precision until ``finish`` rounds the
line once (ROUND_HALF_UP to the currency's minor unit).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import ROUND_CEILING, Decimal
from functools import lru_cache
from typing import Any

from mno.errors import BadInput
from mno.money import round_money, to_decimal, to_minor

ZERO = Decimal(0)
ONE = Decimal(1)


@dataclass
class Line:
    kind: str
    quantity: Decimal
    unit_price: Decimal
    amount: Decimal  # rounded once, in major units
    currency: str
    proration: Decimal = ONE
    tiers: list[dict[str, str]] = field(default_factory=list)
    detail: dict[str, Any] = field(default_factory=dict)

    @property
    def amount_minor(self) -> int:
        return to_minor(self.amount, self.currency)


def _finish(
    kind: str,
    qty: Decimal,
    raw: Decimal,
    currency: str,
    proration: Decimal = ONE,
    tiers: list[dict[str, str]] | None = None,
    **detail: Any,
) -> Line:
    amount = round_money(raw * proration, currency)
    unit = (raw / qty) if qty else ZERO
    return Line(
        kind,
        qty,
        unit.normalize() if unit else ZERO,
        amount,
        currency,
        proration,
        tiers or [],
        detail,
    )


def fixed(amount: Decimal, currency: str, proration: Decimal = ONE) -> Line:
    return _finish("fixed", ONE, amount, currency, proration)


def per_unit(qty: Decimal, unit_price: Decimal, currency: str) -> Line:
    return _finish("usage", qty, qty * unit_price, currency, model="per_unit")


def _tiers(spec: list[dict[str, Any]]) -> list[tuple[Decimal | None, Decimal, Decimal]]:
    key = tuple(
        (
            None if t.get("up_to") is None else str(t.get("up_to")),
            str(t.get("unit_price", "0")),
            str(t.get("flat_fee", "0")),
        )
        for t in spec
    )
    return _parse_tiers(key)


@lru_cache(maxsize=1024)
def _parse_tiers(
    spec: tuple[tuple[str | None, str, str], ...],
) -> list[tuple[Decimal | None, Decimal, Decimal]]:
    """Tiers as (up_to, unit_price, flat_fee); memoised (callers must not change them)."""
    out = []
    last = ZERO
    for i, (up, price, flat) in enumerate(spec):
        upd = None if up is None else to_decimal(up)
        if upd is not None and upd <= last:
            raise BadInput(f"tier {i + 1}: up_to must increase")
        if upd is None and i != len(spec) - 1:
            raise BadInput("only the last tier may have up_to: null")
        out.append((upd, to_decimal(price), to_decimal(flat)))
        if upd is not None:
            last = upd
    if not out:
        raise BadInput("tiers: give at least one tier")
    return out


def graduated(qty: Decimal, tiers: list[dict[str, Any]], currency: str) -> Line:
    """Each tier's slice of the quantity at that tier's own price."""
    total = ZERO
    lower = ZERO
    breakdown = []
    for up, price, flat in _tiers(tiers):
        if qty <= lower:
            break
        top = qty if up is None else min(qty, up)
        units = top - lower
        part = units * price + flat
        breakdown.append(
            {
                "from": str(lower),
                "to": str(top),
                "units": str(units),
                "unit_price": str(price),
                "amount": str(part),
            }
        )
        total += part
        if up is None:
            break
        lower = up
    return _finish("usage", qty, total, currency, tiers=breakdown, model="graduated")


def volume(qty: Decimal, tiers: list[dict[str, Any]], currency: str) -> Line:
    """The whole quantity at the price of the tier it lands in."""
    for up, price, flat in _tiers(tiers):
        if up is None or qty <= up:
            total = qty * price + flat
            return _finish(
                "usage",
                qty,
                total,
                currency,
                tiers=[{"up_to": str(up), "unit_price": str(price), "units": str(qty)}],
                model="volume",
            )
    raise BadInput(f"quantity {qty} is above the last tier")


def package(
    qty: Decimal, size: Decimal, price: Decimal, currency: str, free_units: Decimal = ZERO
) -> Line:
    """Units in packages of ``size``, a started package counts whole."""
    billable = max(qty - free_units, ZERO)
    packages = (billable / size).to_integral_value(rounding=ROUND_CEILING)
    return _finish(
        "usage", qty, packages * price, currency, model="package", packages=str(packages)
    )


def time_minutes(
    minutes: list[Decimal],
    rate_per_hour: Decimal,
    currency: str,
    minimum: Decimal = ZERO,
    round_up_to: Decimal = ONE,
) -> Line:
    """Each entry raised to ``minimum`` and rounded up to ``round_up_to`` minutes."""
    billed = ZERO
    for m in minutes:
        m = max(m, minimum)
        if round_up_to > 0:
            m = (m / round_up_to).to_integral_value(rounding=ROUND_CEILING) * round_up_to
        billed += m
    hours = billed / Decimal(60)
    return _finish(
        "time", billed, hours * rate_per_hour, currency, model="time", billed_minutes=str(billed)
    )


def bucket(
    used: Decimal,
    included: Decimal,
    rollover_in: Decimal,
    overage_price: Decimal,
    currency: str,
    rollover_cap: Decimal = ZERO,
) -> tuple[Line, Decimal]:
    """Overage beyond the units rolled over and the included units; returns the line and
    the units rolled over to the next period.

    Rolled-over units are used first (they lapse otherwise), then the included units; the
    included units left unused carry over, up to ``rollover_cap``."""
    from_rollover = min(used, rollover_in)
    from_included = min(used - from_rollover, included)
    overage = used - from_rollover - from_included
    rollover_out = max(min(included - from_included, rollover_cap), ZERO)
    line = _finish(
        "bucket",
        overage,
        overage * overage_price,
        currency,
        model="bucket",
        used=str(used),
        included=str(included),
        rollover_in=str(rollover_in),
        available=str(included + rollover_in),
        rollover_out=str(rollover_out),
    )
    return line, rollover_out


def rate_usage(charge: dict[str, Any], qty: Decimal, currency: str) -> Line:
    model = charge.get("model", "per_unit")
    if model == "per_unit":
        return per_unit(qty, to_decimal(charge.get("unit_price", "0")), currency)
    if model == "graduated":
        return graduated(qty, charge.get("tiers") or [], currency)
    if model == "volume":
        return volume(qty, charge.get("tiers") or [], currency)
    if model == "package":
        return package(
            qty,
            to_decimal(charge.get("package_size", 1)),
            to_decimal(charge.get("package_price", "0")),
            currency,
            to_decimal(charge.get("free_units", 0)),
        )
    raise BadInput(f"unknown pricing model {model!r}")


def discount(subtotal: Decimal, kind: str, value: Decimal, currency: str) -> Decimal:
    """A coupon never takes more than the subtotal."""
    raw = subtotal * value / Decimal(100) if kind == "percentage" else value
    return min(round_money(raw, currency), subtotal)


def tax(base: Decimal, rate_percent: Decimal, inclusive: bool, currency: str) -> Decimal:
    """Tax on the whole invoice, rounded once; inclusive extracts it from the base."""
    if inclusive:
        return round_money(base - base / (ONE + rate_percent / Decimal(100)), currency)
    return round_money(base * rate_percent / Decimal(100), currency)
