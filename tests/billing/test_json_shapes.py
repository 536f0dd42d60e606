"""Every billing, ledger and report command's ``-o json``: money in the one shape
(``{"amount": "83.22", "currency": "EUR"}``) and timestamps in UTC with ``Z``, on SQLite
and PostgreSQL (the rules are in ``tests/cli_contract/shapes.py``)."""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Callable
from contextlib import AbstractContextManager
from datetime import UTC, datetime
from typing import Any

import pytest

from mno import clock
from mno.billing import documents
from mno.tenancy import tenants
from tests.cli_contract.shapes import money_fields, problems

Opener = Callable[..., AbstractContextManager[Any]]

FIVER = """
kind: Coupon
metadata: {name: fiver}
spec: {kind: fixed, value: "5", currency: EUR, duration: once}
"""


@pytest.fixture
def billed(store_url: str, session: Opener, catalogue: None, cli: Any) -> dict[str, str]:
    """acme (FR, VAT 20%) on pro since September, usage in October, a one-off charge,
    October billed and issued; ids of its invoice and a manual draft."""
    clock.set_now(datetime(2026, 10, 20, tzinfo=UTC))
    with session() as s:
        tenants.create(s, "acme", country="FR", currency="EUR")
        documents.apply_text(s, FIVER)
    cli.json("subscription", "create", "acme", "pro", "--start", "2026-09-01T00:00:00Z")
    cli.json("usage", "record", "acme", "api_calls", "6000", "--at", "2026-10-05T00:00:00Z")
    cli.json("charge", "add", "acme", "--amount", "10.00", "--currency", "EUR",
             "--description", "setup")  # fmt: skip
    clock.set_now(datetime(2026, 11, 2, tzinfo=UTC))
    dry = cli.json("billing", "run", "--period", "2026-10", "--dry-run")
    assert problems(dry) == [] and dry["would_invoice"][0]["total"]["currency"] == "EUR"
    run = cli.json("billing", "run", "--period", "2026-10", "--issue")
    assert problems(run) == [] and money_fields(run["totals"]) == 1
    inv = cli.json("invoice", "list", "--tenant", "acme")[0]
    draft = cli.json("invoice", "create", "acme", "--line", "Work:2:12.345")
    clock.set_now(datetime(2026, 11, 3, tzinfo=UTC))
    return {"invoice": inv["number"], "draft": draft["id"]}


COMMANDS: list[tuple[str, ...]] = [
    ("invoice", "list"),
    ("invoice", "show", "{invoice}"),
    ("invoice", "explain", "{invoice}"),
    ("invoice", "show", "{draft}"),
    ("invoice", "line", "add", "{draft}", "More work:1:0.50"),
    ("invoice", "pay", "{invoice}", "--amount", "20.00", "--method", "card"),
    ("invoice", "credit", "{invoice}", "--reason", "outage", "--amount", "5.00"),
    (
        "invoice",
        "credit",
        "{invoice}",
        "--reason",
        "refund",
        "--amount",
        "1",
        "--refund",
        "--method",
        "card",
    ),  # fmt: skip
    ("invoice", "issue", "{draft}"),
    ("invoice", "pay", "{draft}", "--amount", "100.00"),
    ("invoice", "create", "acme", "--line", "Travel:1:45.50"),
    ("ledger", "show", "acme"),
    ("ledger", "credit", "acme", "--amount", "7.5", "--currency", "EUR", "--reason", "goodwill"),
    ("ledger", "credits", "acme"),
    ("charge", "add", "acme", "--amount", "3", "--currency", "EUR", "--description", "extra"),
    ("charge", "list"),
    ("subscription", "list"),
    (
        "subscription",
        "create",
        "acme",
        "pro",
        "--start",
        "2026-11-01T00:00:00Z",
        "--invoice-now",
    ),  # fmt: skip
    ("billing", "plan", "list"),
    ("billing", "plan", "show", "pro"),
    ("coupon", "list"),
    ("coupon", "show", "half"),
    ("coupon", "show", "fiver"),
    ("usage", "record", "acme", "api_calls", "5"),
    ("report", "revenue", "--period", "2026-11", "--months", "3"),
    ("report", "invoices", "--period", "2026-11", "--months", "3"),
    ("report", "summary", "--period", "2026-11", "--months", "3"),
]
# commands whose answer must hold money (the others may, or may not, hold any)
HOLDS_MONEY = {"invoice", "ledger", "charge", "report"}


def test_every_money_field_has_the_shape_and_every_time_ends_with_z(
    billed: dict[str, str], cli: Any
) -> None:
    seen = 0
    for command in COMMANDS:
        args = [a.format(**billed) for a in command]
        out = cli.json(*args)
        assert problems(out) == [], (args, problems(out))
        if command[0] in HOLDS_MONEY:
            assert money_fields(out) > 0, args
        seen += money_fields(out)
    exported = json.loads(cli("invoice", "export", billed["invoice"], "--format", "json").stdout)
    assert problems(exported) == [] and money_fields(exported) == 7 + len(exported["lines"])
    assert exported["issued_at"].endswith("Z")
    assert seen > 50
    assert cli.json("coupon", "show", "fiver")["value"] == {"amount": "5.00", "currency": "EUR"}
    assert cli.json("coupon", "show", "half")["value"] == "50"
    assert cli.json("billing", "plan", "show", "pro")["setup_fee"] == {
        "amount": "0.00",
        "currency": "EUR",
    }
    csv_text = cli("report", "revenue", "--period", "2026-11", "--months", "3", "-o", "csv").stdout
    rows = list(csv.DictReader(io.StringIO(csv_text)))
    assert [r["month"] for r in rows] == ["2026-09", "2026-10", "2026-11"]
    assert all(re.fullmatch(r"-?\d+\.\d{2}", r["EUR"]) for r in rows), rows


def test_a_draft_with_more_decimals_than_the_currency_is_rounded_once(
    billed: dict[str, str], cli: Any
) -> None:
    """2 x 12.345 = 24.69 exactly; the amount keeps the currency's two decimals and the
    unit price its full precision."""
    shown = cli.json("invoice", "show", billed["draft"])
    (line,) = shown["lines"]
    assert (line["unit_price"], line["amount"]) == (
        "12.345",
        {"amount": "24.69", "currency": "EUR"},
    )
    assert shown["subtotal"] == {"amount": "24.69", "currency": "EUR"}
