"""Manual invoices (``mno invoice create``) and adjustments of drafts (``mno invoice line
add|edit|remove``), on SQLite and PostgreSQL. Golden amounts by hand."""

from __future__ import annotations

import json
from collections.abc import Callable
from contextlib import AbstractContextManager
from datetime import UTC, datetime
from typing import Any

import pytest
import sqlalchemy as sa

from mno import clock
from mno.billing import documents, invoices, subscriptions
from mno.billing import run as billing
from mno.store import db
from mno.tenancy import tenants
from tests.conftest import counts

Opener = Callable[..., AbstractContextManager[Any]]

CORSE = """
kind: TaxRate
metadata: {name: fr-corse}
spec: {country: FR, region: Corse, rate: "10"}
"""


@pytest.fixture
def acme(store_url: str, session: Opener, catalogue: None) -> str:
    clock.set_now(datetime(2026, 11, 2, tzinfo=UTC))
    with session() as s:
        tenants.create(s, "acme", country="FR", currency="EUR")
        documents.apply_text(s, CORSE)
    return store_url


def _audit(url: str, prefix: str) -> list[tuple[str, dict[str, Any]]]:
    with db.get_engine(url).connect() as conn:
        rows = conn.execute(
            sa.text(
                "SELECT action, diff FROM audit_entry WHERE action LIKE :p ORDER BY created_at"
            ),
            {"p": prefix + "%"},
        ).all()
    return [(a, d if isinstance(d, dict) else json.loads(d)) for a, d in rows]


def test_golden_manual_invoice_issued_at_once(acme: str, cli: Any) -> None:
    """3 x 120.00 = 360.00 and 1 x 45.50 (its description holds a colon): subtotal 405.50,
    French VAT 20% = 81.10, total 486.60, numbered in the invoices' series."""
    out = cli.json(
        "invoice", "create", "acme", "--line", "Migration work:3:120.00",
        "--line", "Travel: Paris:1:45.50", "--issue",
    )  # fmt: skip
    assert (out["kind"], out["status"], out["number"]) == ("manual", "issued", "INV-2026-000001")
    assert [out[k]["amount"] for k in ("subtotal", "tax", "total")] == ["405.50", "81.10", "486.60"]
    assert [(ln["description"], ln["amount"]["amount"]) for ln in out["lines"]] == [
        ("Migration work", "360.00"),
        ("Travel: Paris", "45.50"),
    ]
    explained = cli("invoice", "explain", "INV-2026-000001")
    assert explained.exit_code == 0 and "Migration work: 3 x 120.00" in explained.stdout
    csv = cli("invoice", "export", "INV-2026-000001", "--format", "csv")
    assert csv.exit_code == 0 and "Travel: Paris,1,45.50,1,45.50,EUR" in csv.stdout
    html = cli("invoice", "export", "INV-2026-000001", "--format", "html")
    assert html.exit_code == 0 and "486.60" in html.stdout
    with db.get_engine(acme).connect() as conn:
        types = [r[0] for r in conn.execute(sa.text("SELECT type FROM outbox_event"))]
    assert "invoice.created" in types and "invoice.issued" in types


def test_lines_with_their_own_tax_code(acme: str, cli: Any) -> None:
    """2 x 100.00 at fr-corse 10% = 20.00 tax; 50.00 at the tenant's 20% = 10.00 tax:
    subtotal 250.00, tax 30.00, total 280.00 (each rate once on the sum of its lines)."""
    out = cli.json(
        "invoice", "create", "acme", "--line", "Consulting:2:100:fr-corse",
        "--line", "Licence:1:50",
    )  # fmt: skip
    assert out["status"] == "draft" and out["number"] is None
    assert [out[k]["amount"] for k in ("subtotal", "tax", "total")] == ["250.00", "30.00", "280.00"]


def test_adjusting_a_draft_recomputes_and_audits_each_change(acme: str, cli: Any) -> None:
    """Work 100.00 -> 120.00 with VAT; add 2 x 30.00: 160.00 + 32.00 = 192.00; edit line
    2 to 3 hours: 190.00 + 38.00 = 228.00; remove line 1: 90.00 + 18.00 = 108.00."""
    inv = cli.json("invoice", "create", "acme", "--line", "Work:1:100")["id"]
    assert (
        cli.json("invoice", "line", "add", inv, "Extra hours:2:30")["total"]["amount"] == "192.00"
    )
    assert (
        cli.json("invoice", "line", "edit", inv, "2", "--quantity", "3")["total"]["amount"]
        == "228.00"
    )
    out = cli.json("invoice", "line", "remove", inv, "1", "--yes")
    assert [out[k]["amount"] for k in ("subtotal", "tax", "total")] == ["90.00", "18.00", "108.00"]
    assert [ln["description"] for ln in out["lines"]] == ["Extra hours"]
    changes = _audit(acme, "invoice.line_")
    assert [a for a, _ in changes] == [
        "invoice.line_add",
        "invoice.line_edit",
        "invoice.line_remove",
    ]
    edit = changes[1][1]
    assert edit["before"]["line"]["quantity"] == "2" and edit["after"]["line"]["quantity"] == "3"
    assert (edit["before"]["total_minor"], edit["after"]["total_minor"]) == (19200, 22800)
    assert changes[2][1]["after"]["line"] is None
    # issued invoices are immutable: refused with the hint to credit them, nothing written
    cli.json("invoice", "issue", inv)
    before = counts(acme)
    result = cli("invoice", "line", "add", inv, "More:1:10")
    assert result.exit_code == 1 and "mno invoice credit" in result.stderr
    assert counts(acme) == before


def test_a_billing_run_draft_takes_a_reduction(acme: str, session: Opener, cli: Any) -> None:
    """October's run bills November's 49.00 (+ 20% = 58.80); a goodwill line of -10.00
    leaves 39.00 + 7.80 = 46.80."""
    clock.set_now(datetime(2026, 10, 20, tzinfo=UTC))
    with session() as s:
        subscriptions.create(s, "acme", "pro", start=datetime(2026, 9, 1, tzinfo=UTC))
    clock.set_now(datetime(2026, 11, 2, tzinfo=UTC))
    billing.run("2026-10", url=acme)
    with session(write=False) as s:
        draft = str(invoices.list_invoices(s, "acme")[0].id)
    out = cli.json("invoice", "line", "add", draft, "Goodwill:1:-10.00")
    assert [out[k]["amount"] for k in ("subtotal", "tax", "total")] == ["39.00", "7.80", "46.80"]
    assert out["lines"][-1]["kind"] == "adjustment"
    assert cli.json("invoice", "issue", draft)["total"]["amount"] == "46.80"


@pytest.mark.parametrize(
    ("args", "code"),
    [
        (["create", "acme"], 2),  # no --line
        (["create", "acme", "--line", "Work:0:10"], 2),
        (["create", "acme", "--line", "Work:1:-5"], 2),
        (["create", "acme", "--line", "Work:1:abc"], 2),
        (["create", "acme", "--line", "Work:1:1e3"], 2),
        (["create", "acme", "--line", "Work:1:10:nope"], 2),
        (["create", "acme", "--line", "Work:10"], 2),
        (["create", "acme", "--line", "Work:1:10", "--currency", "XXX"], 2),
        (["create", "ghost", "--line", "Work:1:10"], 1),
        (["line", "add", "DRAFT", "Work:1:10:nope"], 2),
        (["line", "add", "DRAFT", "Big:1:-500"], 2),  # the subtotal would be negative
        (["line", "edit", "DRAFT", "3", "--quantity", "2"], 2),
        (["line", "edit", "DRAFT", "1"], 2),
        (["line", "remove", "DRAFT", "0", "--yes"], 2),
    ],
)
def test_refusals_write_nothing(acme: str, cli: Any, args: list[str], code: int) -> None:
    draft = cli.json("invoice", "create", "acme", "--line", "Work:1:100")["id"]
    before = counts(acme)
    result = cli("invoice", *[draft if a == "DRAFT" else a for a in args])
    assert result.exit_code == code, (result.stdout, result.stderr)
    assert counts(acme) == before
