"""Currencies in KPIs: amounts are never added across currencies unless a rate says how.

Every query sums per currency. A view then decides what the caller sees:

- no currency asked: one figure per currency, side by side;
- a currency asked and no rates: only the amounts in that currency;
- a currency asked and a rate table: every currency converted into it with the table's
  rates (``EUR:USD = 1.08`` means 1 EUR is worth 1.08 USD; the inverse pair is used when
  only that one is given), then added. A currency without a rate is refused, and the
  answer lists the rates it used.

Conversions keep full precision; a figure is rounded to its currency's minor unit
(half up) once, when it is shown.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from pathlib import Path
from typing import Any, TypeVar

from mno import money, safeyaml
from mno.errors import BadInput

K = TypeVar("K")

_CODE = r"[A-Za-z]{3}"
_RATE = re.compile(rf"^\s*({_CODE})\s*:\s*({_CODE})\s*=\s*([0-9]+(?:\.[0-9]+)?)\s*$")
_PAIR = re.compile(rf"^\s*({_CODE})\s*:\s*({_CODE})\s*$")


def _code(text: str) -> str:
    return text.strip().upper()


def _positive(text: str, where: str) -> Decimal:
    try:
        value = Decimal(str(text).strip())
    except InvalidOperation as exc:
        raise BadInput(f"{where}: {text!r} is not a decimal rate") from exc
    if not value.is_finite() or value <= 0:
        raise BadInput(f"{where}: the rate must be a positive decimal")
    return value


@dataclass(frozen=True)
class Rates:
    """Conversion rates: ``(source, target) -> how many target units one source unit is``."""

    table: Mapping[tuple[str, str], Decimal] = field(default_factory=dict)

    def __bool__(self) -> bool:
        return bool(self.table)

    def rate(self, source: str, target: str) -> tuple[Decimal, str] | None:
        """The rate from ``source`` to ``target`` and the pair it came from (None: none)."""
        if source == target:
            return Decimal(1), ""
        direct = self.table.get((source, target))
        if direct is not None:
            return direct, f"{source}:{target}"
        inverse = self.table.get((target, source))
        if inverse is not None:
            return Decimal(1) / inverse, f"{target}:{source}"
        return None

    def merged(self, other: Rates) -> Rates:
        return Rates({**self.table, **other.table})


def parse_rate(text: str) -> tuple[tuple[str, str], Decimal]:
    """``EUR:USD=1.08`` → ``(("EUR", "USD"), Decimal("1.08"))``."""
    found = _RATE.match(text or "")
    if found is None:
        raise BadInput(f"invalid rate {text!r}", "write SOURCE:TARGET=RATE, e.g. EUR:USD=1.08")
    source, target = _code(found[1]), _code(found[2])
    money.check_currency(source)
    money.check_currency(target)
    if source == target:
        raise BadInput(f"invalid rate {text!r}", "a rate converts between two currencies")
    return (source, target), _positive(found[3], text)


def parse_rates(texts: Iterable[str]) -> Rates:
    return Rates(dict(parse_rate(t) for t in texts))


def load_rates(path: Path) -> Rates:
    """A YAML rate table: ``rates: {"EUR:USD": "1.08", ...}`` (quote the rates)."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise BadInput(f"cannot read {path}: {exc.strerror or exc}") from exc
    doc = safeyaml.safe_load(text, str(path)) or {}
    rates = doc.get("rates") if isinstance(doc, dict) else None
    if not isinstance(rates, dict):
        raise BadInput(
            f"{path}: expected a mapping under 'rates'", 'e.g. rates: {"EUR:USD": "1.08"}'
        )
    table: dict[tuple[str, str], Decimal] = {}
    for pair, value in rates.items():
        found = _PAIR.match(str(pair))
        if found is None:
            raise BadInput(f"{path}: rates -> {pair}: write the pair as SOURCE:TARGET")
        if isinstance(value, float):
            raise BadInput(f"{path}: rates -> {pair}: quote the rate", 'write it as "1.08"')
        key, rate = parse_rate(f"{found[1]}:{found[2]}={value}")
        table[key] = rate
    return Rates(table)


def round_amount(amount: Decimal, currency: str) -> Decimal:
    try:
        return money.round_money(amount, currency)
    except (BadInput, KeyError):  # a code outside ISO 4217: shown as summed
        return amount


def amount_text(amount: Decimal, currency: str) -> str:
    return str(round_amount(amount, currency))


@dataclass
class View:
    """Which currency the caller wants and the rates it gave; records the rates used."""

    currency: str | None = None
    rates: Rates = field(default_factory=Rates)
    used: dict[str, Decimal] = field(default_factory=dict)

    @classmethod
    def of(cls, currency: str | None, rates: Rates | None = None) -> View:
        code = money.check_currency(currency) if currency else None
        if rates and code is None:
            raise BadInput("a rate table needs a currency to convert into", "add --currency")
        return cls(code, rates or Rates())

    @property
    def converting(self) -> bool:
        return self.currency is not None and bool(self.rates)

    def apply(self, sums: Mapping[tuple[K, str], Decimal]) -> dict[str, dict[K, Decimal]]:
        """Per-currency sums ``{(key, currency): amount}`` → ``{currency: {key: amount}}``
        as the view shows them (filtered, or converted and added)."""
        out: dict[str, dict[K, Decimal]] = {}
        for (key, currency), amount in sums.items():
            shown = currency
            if self.currency is not None and currency != self.currency:
                if not self.rates:
                    continue
                found = self.rates.rate(currency, self.currency)
                if found is None:
                    raise BadInput(
                        f"no rate from {currency} to {self.currency}",
                        f"give one, e.g. --rate {currency}:{self.currency}=RATE",
                    )
                rate, pair = found
                self.used[pair] = self.rates.table[(pair[:3], pair[4:])]
                amount = amount * rate
                shown = self.currency
            bucket = out.setdefault(shown, {})
            bucket[key] = bucket.get(key, Decimal(0)) + amount
        return out

    def rates_json(self) -> dict[str, str] | None:
        if not self.converting:
            return None
        return {pair: str(rate) for pair, rate in sorted(self.used.items())}


def totals(by_currency: Mapping[str, Mapping[Any, Decimal]]) -> dict[str, str]:
    """``{currency: {key: amount}}`` → ``{currency: "total"}``, rounded for display."""
    return {
        cur: amount_text(sum(values.values(), Decimal(0)), cur)
        for cur, values in sorted(by_currency.items())
    }


def rounded(amount: Decimal, places: int = 1) -> Decimal:
    return amount.quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_UP)
