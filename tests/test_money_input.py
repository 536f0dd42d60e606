"""Amounts entering mno: plain decimals below 10^12, nothing else."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from mno.errors import BadInput
from mno.money import to_decimal
from tests.conftest import counts


@pytest.mark.parametrize(
    "text",
    ["1e40", "1e400", "NaN", "-Infinity", "1_000", "１２", "1000000000000", "-1000000000000.5", ""],
)
def test_refused(text: str) -> None:
    with pytest.raises(BadInput):
        to_decimal(text)


@pytest.mark.parametrize(
    ("text", "value"),
    [(" 5 ", "5"), ("12.50", "12.50"), ("-3", "-3"), (".5", "0.5"), ("999999999999.99", None)],
)
def test_accepted(text: str, value: str | None) -> None:
    assert to_decimal(text) == Decimal(value or text)


def test_decimal_objects_keep_their_exponent_form() -> None:
    assert to_decimal(Decimal("1E+2")) == 100
    with pytest.raises(BadInput, match="too large"):
        to_decimal(Decimal("1E+12"))


@pytest.mark.parametrize("amount", ["1e40", "1_000", "１２", "1000000000000.01"])
def test_charge_add_refuses_with_exit_2(cli: Any, sqlite_url: str, amount: str) -> None:
    cli("tenant", "create", "acme")
    before = counts(sqlite_url)
    r = cli("charge", "add", "acme", "--amount", amount, "--currency", "EUR", "--description", "x")
    assert r.exit_code == 2, (r.stdout, r.stderr)
    assert "Traceback" not in r.stderr and r.stderr.startswith("Error: ")
    assert counts(sqlite_url) == before


@pytest.mark.parametrize(
    "period", ["2026-1", "26-01", "2026-001", "2026/01", " 2026-01", "２０２６-01"]
)
def test_billing_period_is_exactly_yyyy_mm(cli: Any, sqlite_url: str, period: str) -> None:
    from mno.billing.periods import parse_period

    with pytest.raises(BadInput, match="use YYYY-MM"):
        parse_period(period)
    r = cli("billing", "run", "--period", period)
    assert r.exit_code == 2 and "use YYYY-MM" in r.stderr
    assert parse_period("2026-01") == (2026, 1)
