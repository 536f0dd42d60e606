"""Money: ISO 4217 currencies, ``Decimal`` amounts and the one rounding rule.

Amounts are ``Decimal`` everywhere and are stored as integer minor units plus a currency
code. A line amount is rounded to the currency's minor unit with ROUND_HALF_UP once, at
the line; tax is computed per invoice and rounded the same way. Rates and tiers keep full
precision until then. Floats are never accepted.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation
from functools import lru_cache
from typing import Any

from mno.errors import BadInput

# Active ISO 4217 codes and their minor units.
_MINOR_UNITS: dict[str, int] = {
    **dict.fromkeys(
        "AED AFN ALL AMD ANG AOA ARS AUD AWG AZN BAM BBD BDT BGN BMD BND BOB BRL BSD BTN "
        "BWP BYN BZD CAD CDF CHF CNY COP CRC CUP CVE CZK DKK DOP DZD EGP ERN ETB EUR FJD "
        "FKP GBP GEL GHS GIP GMD GTQ GYD HKD HNL HTG HUF IDR ILS INR IRR JMD KES KGS KHR "
        "KPW KYD KZT LAK LBP LKR LRD LSL MAD MDL MGA MKD MMK MNT MOP MRU MUR MVR MWK MXN "
        "MYR MZN NAD NGN NIO NOK NPR NZD PAB PEN PGK PHP PKR PLN QAR RON RSD RUB SAR SBD "
        "SCR SDG SEK SGD SHP SLE SOS SRD SSP STN SVC SYP SZL THB TJS TMT TOP TRY TTD TWD "
        "TZS UAH USD UYU UZS VES WST XCD YER ZAR ZMW ZWG".split(),
        2,
    ),
    **dict.fromkeys("BIF CLP DJF GNF ISK JPY KMF KRW PYG RWF UGX VND VUV XAF XOF XPF".split(), 0),
    **dict.fromkeys("BHD IQD JOD KWD LYD OMR TND".split(), 3),
    "CLF": 4,
    "UYW": 4,
}


def currencies() -> list[str]:
    return sorted(_MINOR_UNITS)


@lru_cache(maxsize=512)
def minor_units(currency: str) -> int:
    return _MINOR_UNITS[check_currency(currency)]


def check_currency(code: str) -> str:
    """The upper-case ISO 4217 code, or BadInput."""
    value = (code or "").strip().upper()
    if value not in _MINOR_UNITS:
        raise BadInput(f"unknown currency {code!r}", "use an ISO 4217 code such as EUR or USD")
    return value


# amounts, prices and quantities are below 10^12 (a trillion major units)
LIMIT = Decimal(10) ** 12


def to_decimal(value: str | int | Decimal) -> Decimal:
    """Parse an amount, price or quantity written as a plain decimal (``12``, ``-3.50``).

    Refused (``BadInput``): floats (they cannot carry money exactly), NaN and infinities,
    exponents (``1e40``), digit separators (``1_000``), digits outside ASCII (full-width
    ``１２``), and anything of 10^12 or more in size."""
    if isinstance(value, float):
        raise BadInput("amounts must be given as strings or Decimal, not float")
    if isinstance(value, Decimal):
        result = value
    else:
        text = str(value).strip()
        if not text.isascii() or "_" in text or "e" in text or "E" in text:
            raise BadInput(f"not an amount: {value!r}", "write a plain decimal such as 12.50")
        try:
            result = Decimal(text)
        except InvalidOperation as exc:
            hint = "write a plain decimal such as 12.50"
            raise BadInput(f"not an amount: {value!r}", hint) from exc
    if not result.is_finite():
        raise BadInput(f"not an amount: {value!r}")
    if abs(result) >= LIMIT:
        raise BadInput(f"{value} is too large", "amounts stay below 1,000,000,000,000")
    return result


@lru_cache(maxsize=512)
def quantum(currency: str) -> Decimal:
    return Decimal(1).scaleb(-minor_units(currency))


def round_money(amount: Decimal, currency: str) -> Decimal:
    """Round to the currency's minor unit, half up (the one rounding rule)."""
    return amount.quantize(quantum(currency), rounding=ROUND_HALF_UP)


def to_minor(amount: Decimal, currency: str) -> int:
    """Integer minor units; the amount must already be rounded."""
    rounded = round_money(amount, currency)
    if rounded != amount:
        raise BadInput(f"{amount} has more decimals than {currency} allows")
    return int(rounded.scaleb(minor_units(currency)))


def from_minor(units: int, currency: str) -> Decimal:
    return Decimal(units).scaleb(-minor_units(currency)).quantize(quantum(currency))


@dataclass(frozen=True, slots=True)
class Money:
    amount: Decimal
    currency: str

    @classmethod
    def of(cls, amount: str | int | Decimal, currency: str) -> Money:
        code = check_currency(currency)
        return cls(round_money(to_decimal(amount), code), code)

    @classmethod
    def from_minor(cls, units: int, currency: str) -> Money:
        return cls(from_minor(units, currency), check_currency(currency))

    @property
    def minor(self) -> int:
        return to_minor(self.amount, self.currency)

    def __add__(self, other: Money) -> Money:
        self._same(other)
        return Money(self.amount + other.amount, self.currency)

    def __sub__(self, other: Money) -> Money:
        self._same(other)
        return Money(self.amount - other.amount, self.currency)

    def _same(self, other: Money) -> None:
        if other.currency != self.currency:
            raise BadInput(f"cannot combine {self.currency} and {other.currency}")

    def __str__(self) -> str:
        return f"{self.amount} {self.currency}"

    def as_json(self) -> MoneyJson:
        return MoneyJson(amount=str(self.amount), currency=self.currency)


class MoneyJson(dict[str, str]):
    """The one JSON shape of an amount: ``{"amount": "83.22", "currency": "EUR"}``, the
    amount a plain decimal string with the currency's decimals.

    It is a plain ``dict`` to JSON and YAML encoders; written as text (an f-string, a
    template, a CSV cell) it is the amount alone, ``83.22``, which those place next to
    their currency themselves."""

    __slots__ = ()

    def __str__(self) -> str:
        return self["amount"]

    def __format__(self, spec: str) -> str:
        return format(self["amount"], spec)


def money_json(minor: int, currency: str) -> MoneyJson:
    """Integer minor units as the one JSON money shape (every ``-o json`` and API answer)."""
    return Money.from_minor(int(minor), currency).as_json()


def money_fields(data: dict[str, Any], currency: str) -> dict[str, Any]:
    """``data`` with every ``<name>_minor`` integer as ``<name>`` in the one money shape."""
    return {
        (key[: -len("_minor")] if key.endswith("_minor") else key): (
            money_json(value, currency) if key.endswith("_minor") else value
        )
        for key, value in data.items()
    }


def plain(value: str | int | Decimal, places: int = 0) -> str:
    """A decimal in plain notation (``100``, never ``1E+2``) with at least ``places``
    decimals and no trailing zeros beyond them: ``plain("0.0020", 2) == "0.002"``,
    ``plain("49", 2) == "49.00"``. For showing prices and quantities, not for parsing."""
    d = value if isinstance(value, Decimal) else Decimal(str(value))
    if not d.is_finite():
        return str(d)
    d = d.normalize() if d else Decimal(0)
    exponent = d.as_tuple().exponent
    if isinstance(exponent, int) and -exponent < places:
        d = d.quantize(Decimal(1).scaleb(-places))
    return f"{d:f}"


def plain_price(value: str | int | Decimal, currency: str) -> str:
    """A price or amount in plain notation with at least the currency's decimals."""
    return plain(value, minor_units(currency))
