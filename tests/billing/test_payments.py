"""Payments (``mno invoice pay``), on SQLite and PostgreSQL: in part then the rest,
beyond what is due (the excess is credit the next invoice draws), and refusals that write
nothing. Golden amounts by hand: acme is in France, VAT 20%."""

from __future__ import annotations

import json
from collections.abc import Callable
from contextlib import AbstractContextManager
from datetime import UTC, datetime
from typing import Any

import pytest
import sqlalchemy as sa

from mno import clock
from mno.billing import ledger
from mno.store import db
from mno.tenancy import tenants
from tests.conftest import counts

Opener = Callable[..., AbstractContextManager[Any]]


def eur(amount: str) -> dict[str, str]:
    return {"amount": amount, "currency": "EUR"}


@pytest.fixture
def acme(store_url: str, session: Opener, catalogue: None) -> str:
    clock.set_now(datetime(2026, 11, 2, tzinfo=UTC))
    with session() as s:
        tenants.create(s, "acme", country="FR", currency="EUR")
    return store_url


def _issue(cli: Any, line: str) -> dict[str, Any]:
    return cli.json("invoice", "create", "acme", "--line", line, "--issue")


def _events(url: str, prefix: str) -> list[tuple[str, dict[str, Any]]]:
    with db.get_engine(url).connect() as conn:
        rows = conn.execute(
            sa.text("SELECT type, payload FROM outbox_event WHERE type LIKE :p ORDER BY seq"),
            {"p": prefix + "%"},
        ).all()
    return [(t, p if isinstance(p, dict) else json.loads(p)) for t, p in rows]


def _actions(url: str, action: str) -> int:
    with db.get_engine(url).connect() as conn:
        return int(
            conn.execute(
                sa.text("SELECT count(*) FROM audit_entry WHERE action = :a"), {"a": action}
            ).scalar_one()
        )


def test_partial_payment_then_the_rest(acme: str, cli: Any, session: Opener) -> None:
    """100.00 + VAT 20.00 = 120.00; 50.00 by card leaves 70.00 due, then the rest."""
    inv = _issue(cli, "Migration work:1:100.00")
    assert (inv["number"], inv["total"], inv["amount_due"]) == (
        "INV-2026-000001",
        eur("120.00"),
        eur("120.00"),
    )
    part = cli(
        "invoice", "pay", "INV-2026-000001", "--amount", "50", "--method", "card",
        "--reference", "TX-1",
    )  # fmt: skip
    assert part.exit_code == 0 and "partially paid; 70.00 EUR due" in part.stderr
    shown = cli.json("invoice", "show", "INV-2026-000001")
    assert (shown["status"], shown["paid"], shown["amount_due"]) == (
        "partially_paid",
        eur("50.00"),
        eur("70.00"),
    )
    listed = cli.json("invoice", "list", "--status", "partially_paid")
    assert [(r["number"], r["status"], r["amount_due"]) for r in listed] == [
        ("INV-2026-000001", "partially_paid", eur("70.00"))
    ]
    assert cli.json("invoice", "list", "--status", "issued") == []
    table = cli("invoice", "list")
    assert "partially_paid" in table.stdout and "70.00 EUR" in table.stdout
    shown = cli("invoice", "show", "INV-2026-000001")
    assert "amount_due" in shown.stdout and "70.00 EUR" in shown.stdout
    rest = cli.json("invoice", "pay", "INV-2026-000001")
    assert (rest["status"], rest["paid"], rest["amount_due"]) == (
        "paid",
        eur("120.00"),
        eur("0.00"),
    )
    assert rest["payment"]["amount"] == eur("70.00") and rest["payment"]["overpaid"] == eur("0.00")
    assert rest["payment"]["created_at"].endswith("Z")
    assert cli("invoice", "pay", "INV-2026-000001").exit_code == 1  # nothing left to pay
    with session(write=False) as s:
        entries = ledger.entries(s, "acme")
        assert [(e.type, e.amount_minor, e.method) for e in entries] == [
            ("invoice", 12000, None),
            ("payment", -5000, "card"),
            ("payment", -7000, None),
        ]
        assert entries[1].reference == "TX-1" and entries[-1].balance_minor == 0
        assert ledger.list_credits(s, "acme") == []
    events = _events(acme, "invoice.pa")
    assert [(t, p.get("amount_minor"), p["status"]) for t, p in events] == [
        ("invoice.payment_recorded", 5000, "partially_paid"),
        ("invoice.payment_recorded", 7000, "paid"),
        ("invoice.paid", None, "paid"),
    ]
    assert events[0][1]["amount_due_minor"] == 7000 and events[0][1]["method"] == "card"
    assert _actions(acme, "invoice.pay") == 2


def test_overpayment_goes_to_credit_that_the_next_invoice_draws(
    acme: str, cli: Any, session: Opener
) -> None:
    """150.00 received for 120.00: 30.00 of credit. The next invoice, 45.50 + VAT 9.10 =
    54.60, draws the 30.00 and leaves 24.60 to pay; paying it brings the balance to 0."""
    _issue(cli, "Migration work:1:100.00")
    paid = cli.json("invoice", "pay", "INV-2026-000001", "--amount", "150.00")
    assert (paid["status"], paid["paid"], paid["amount_due"]) == (
        "paid",
        eur("120.00"),
        eur("0.00"),
    )
    assert paid["payment"]["amount"] == eur("150.00")
    assert (paid["payment"]["applied"], paid["payment"]["overpaid"]) == (
        eur("120.00"),
        eur("30.00"),
    )
    (grant,) = cli.json("ledger", "credits", "acme")
    assert (grant["remaining"], grant["status"], grant["reference"]) == (
        eur("30.00"),
        "open",
        "overpayment of INV-2026-000001",
    )
    assert cli.json("ledger", "show", "acme")[-1]["balance"] == eur("-30.00")
    nxt = _issue(cli, "Extra hours:1:45.50")
    assert (nxt["number"], nxt["subtotal"], nxt["tax"], nxt["credit"], nxt["total"]) == (
        "INV-2026-000002",
        eur("45.50"),
        eur("9.10"),
        eur("30.00"),
        eur("24.60"),
    )
    assert nxt["amount_due"] == eur("24.60")
    (used,) = cli.json("ledger", "credits", "acme")
    assert (used["remaining"], used["status"]) == (eur("0.00"), "used")
    assert cli.json("invoice", "pay", "INV-2026-000002")["status"] == "paid"
    with session(write=False) as s:
        entries = ledger.entries(s, "acme")
        assert [(e.type, e.amount_minor) for e in entries] == [
            ("invoice", 12000),
            ("payment", -15000),
            ("invoice", 5460),
            ("payment", -2460),
        ]
        assert entries[-1].balance_minor == 0
    recorded = {p["number"]: p for _, p in _events(acme, "invoice.payment_recorded")}
    first = recorded["INV-2026-000001"]
    assert (first["applied_minor"], first["overpaid_minor"]) == (12000, 3000)


def test_paying_a_draft_or_a_void_invoice_is_refused_and_writes_nothing(
    acme: str, cli: Any
) -> None:
    draft = cli.json("invoice", "create", "acme", "--line", "Work:1:10.00")["id"]
    before = counts(acme)
    refused = cli("invoice", "pay", draft)
    assert refused.exit_code == 1 and "is draft; only issued invoices are paid" in refused.stderr
    assert "mno invoice issue" in refused.stderr
    assert counts(acme) == before
    assert cli("invoice", "void", draft, "--yes").exit_code == 0
    before = counts(acme)
    refused = cli("invoice", "pay", draft, "--amount", "5")
    assert refused.exit_code == 1 and "is void" in refused.stderr
    assert counts(acme) == before
    _issue(cli, "Work:1:10.00")
    before = counts(acme)
    for amount in ("0", "-5", "1.234", "abc"):
        bad = cli("invoice", "pay", "INV-2026-000001", "--amount", amount)
        assert bad.exit_code == 2, (amount, bad.stderr)
    assert cli("invoice", "pay", "INV-2026-000001", "--method", "x" * 33).exit_code == 2
    assert counts(acme) == before
