"""The one money shape and the UTC timestamp text of every JSON answer."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone

import yaml

from mno.cli.output import dumps_json, to_jsonable
from mno.money import Money, money_fields, money_json
from mno.store.audit import jsonable


def test_money_json_has_the_currency_decimals_and_reads_as_its_amount() -> None:
    assert money_json(8322, "EUR") == {"amount": "83.22", "currency": "EUR"}
    assert money_json(1500, "JPY") == {"amount": "1500", "currency": "JPY"}
    assert money_json(-1250, "KWD") == {"amount": "-1.250", "currency": "KWD"}
    assert money_json(0, "eur") == {"amount": "0.00", "currency": "EUR"}
    assert Money.of("12.5", "USD").as_json() == {"amount": "12.50", "currency": "USD"}
    value = money_json(8322, "EUR")
    assert (str(value), f"{value} EUR", f"{value:>8}") == ("83.22", "83.22 EUR", "   83.22")
    assert json.loads(dumps_json({"total": value})) == {
        "total": {"amount": "83.22", "currency": "EUR"}
    }
    assert yaml.safe_load(yaml.safe_dump(to_jsonable({"total": value}))) == {
        "total": {"amount": "83.22", "currency": "EUR"}
    }


def test_minor_fields_become_money() -> None:
    row = {"tenant": "acme", "currency": "EUR", "subtotal_minor": 100, "total_minor": 120}
    assert money_fields(row, "EUR") == {
        "tenant": "acme",
        "currency": "EUR",
        "subtotal": {"amount": "1.00", "currency": "EUR"},
        "total": {"amount": "1.20", "currency": "EUR"},
    }


def test_timestamps_are_utc_with_z() -> None:
    assert jsonable(datetime(2026, 11, 2, 12, tzinfo=UTC)) == "2026-11-02T12:00:00Z"
    # SQLite keeps UTC without a zone; another zone is converted
    assert jsonable(datetime(2026, 11, 2, 12)) == "2026-11-02T12:00:00Z"
    cest = timezone(timedelta(hours=2))
    assert jsonable(datetime(2026, 11, 2, 12, 30, tzinfo=cest)) == "2026-11-02T10:30:00Z"
    assert jsonable(datetime(2026, 11, 2, 0, 0, 0, 5, tzinfo=UTC)) == "2026-11-02T00:00:00.000005Z"
