"""The JSON contract of money and time, shared by the CLI and API tests.

Money: ``{"amount": "83.22", "currency": "EUR"}``, the amount a plain decimal string with
exactly the currency's decimals. Time: ISO 8601 in UTC ending with ``Z``. A money field
(one of ``MONEY_KEYS``) holds that shape, ``null``, or a map of currency codes to it (a
metric per currency such as ``mrr``); an integer there is a count (a report's tenants in
``total``, invoices ``paid`` in a month), never money. Unit prices, the tier slices of a
line's ``detail`` and a plan's ``charges`` are prices at full precision, not money fields.
Nothing ends in ``_minor``.
"""

from __future__ import annotations

import re
from typing import Any

from mno.money import minor_units

MONEY_KEYS = frozenset(
    "amount subtotal discount tax credit total paid amount_due balance remaining applied"
    " overpaid invoice_total outstanding overdue revenue mrr arr revenue_in_window arpa"
    " totals setup_fee".split()
)
# subtrees that hold pricing inputs or raw tax rules, not amounts of money
SKIP_KEYS = frozenset({"detail", "tax_detail", "charges", "properties"})
_STAMP = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}")
_AMOUNT = re.compile(r"^-?\d+(\.(\d+))?$")
_CURRENCY = re.compile(r"^[A-Z]{3}$")


def is_money(value: Any) -> bool:
    if not isinstance(value, dict) or set(value) != {"amount", "currency"}:
        return False
    amount, currency = value["amount"], value["currency"]
    if not isinstance(amount, str) or not isinstance(currency, str):
        return False
    match = _AMOUNT.match(amount)
    if match is None or not _CURRENCY.match(currency):
        return False
    return len(match.group(2) or "") == minor_units(currency)


def problems(data: Any, path: str = "$") -> list[str]:
    """Every place in ``data`` that breaks the money or time rule (empty: all good)."""
    found: list[str] = []
    if isinstance(data, list):
        for n, item in enumerate(data):
            found += problems(item, f"{path}[{n}]")
        return found
    if isinstance(data, str):
        if _STAMP.match(data) and not data.endswith("Z"):
            found.append(f"{path}: timestamp {data!r} does not end with Z")
        return found
    if not isinstance(data, dict) or is_money(data):
        return found
    for key, value in data.items():
        where = f"{path}.{key}"
        if key in SKIP_KEYS:
            continue
        if key.endswith("_minor"):
            found.append(f"{where}: minor units instead of the money shape")
        if key in MONEY_KEYS and isinstance(value, int):
            continue  # a count (tenants in total, invoices paid in a month), not money
        if key in MONEY_KEYS and isinstance(value, list):
            found += problems(value, where)  # a table of rows (report backups: overdue)
            continue
        if key in MONEY_KEYS and value is not None and not is_money(value):
            per_currency = isinstance(value, dict) and all(
                _CURRENCY.match(k) and is_money(v) and v["currency"] == k for k, v in value.items()
            )
            if not per_currency:
                found.append(f"{where}: {value!r} is not money")
            continue
        if (key.endswith("_at") or key == "at") and value is not None:
            if not (isinstance(value, str) and _STAMP.match(value) and value.endswith("Z")):
                found.append(f"{where}: {value!r} is not a UTC timestamp with Z")
            continue
        found += problems(value, where)
    return found


def money_fields(data: Any) -> int:
    """How many money values ``data`` holds (a test that checks shapes checks some)."""
    if isinstance(data, list):
        return sum(money_fields(item) for item in data)
    if is_money(data):
        return 1
    if isinstance(data, dict):
        return sum(money_fields(v) for k, v in data.items() if k not in SKIP_KEYS)
    return 0
