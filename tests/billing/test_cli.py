"""The billing commands end to end through the CLI on a SQLite store."""

from __future__ import annotations

import csv
import io
import json
from decimal import Decimal
from pathlib import Path
from typing import Any

from tests.billing.conftest import CATALOGUE
from tests.conftest import counts


def test_catalogue_run_issue_pay_export(cli: Any, sqlite_url: str, tmp_path: Path) -> None:
    f = tmp_path / "cat.yaml"
    metric, plan, tax, _ = CATALOGUE.split("---")
    f.write_text(plan)
    m = tmp_path / "m.yaml"
    m.write_text(metric)
    t = tmp_path / "t.yaml"
    t.write_text(tax)
    assert cli("metric", "create", "-f", m).exit_code == 0
    assert cli("billing", "plan", "create", "-f", f).exit_code == 0
    assert cli("tax-rate", "create", "-f", t).exit_code == 0
    assert (
        cli("billing", "plan", "create", "basic", "--currency", "USD", "--amount", "9.99").exit_code
        == 0
    )
    assert [p["code"] for p in cli.json("billing", "plan", "list")] == ["basic", "pro"]
    # `mno plan` is GitOps' planner only: the billing catalogue is not reachable there
    stray = cli("plan", "list")
    assert stray.exit_code == 2 and "list" in stray.stderr
    assert cli.json("billing", "plan", "show", "basic")["code"] == "basic"
    # a price change makes version 2
    f.write_text(plan.replace('"49.00"', '"59.00"'))
    cli("billing", "plan", "create", "-f", f)
    assert cli.json("billing", "plan", "show", "pro")["version"] == 2
    assert cli("tenant", "create", "acme", "--country", "FR").exit_code == 0
    sub = cli.json("subscription", "create", "acme", "pro", "--start", "2026-09-01T00:00:00Z")
    assert sub["plan"] == "pro"
    r = cli.json(
        "usage",
        "record",
        "acme",
        "api_calls",
        "15000",
        "--at",
        "2026-10-05T00:00:00Z",
        "--id",
        "u1",
    )
    assert r["created"] is True
    assert cli.json("usage", "record", "acme", "api_calls", "1", "--id", "u1")["created"] is False
    ch = cli.json(
        "charge", "add", "acme", "--amount", "10.00", "--currency", "EUR", "--description", "setup"
    )
    dry = cli.json("billing", "run", "--period", "2026-10", "--dry-run")
    assert dry["invoices"] == 1 and dry["would_invoice"][0]["total"] == {
        "amount": "110.40",
        "currency": "EUR",
    }
    out = cli.json("billing", "run", "--period", "2026-10", "--issue")
    assert out["invoices"] == 1 and out["totals"] == {
        "EUR": {"amount": "110.40", "currency": "EUR"}
    }
    inv = cli.json("invoice", "list")[0]
    assert inv["number"] == "INV-2026-000001" and inv["total"]["amount"] == "110.40"
    assert cli("charge", "cancel", ch["id"]).exit_code == 1
    again = cli.json("billing", "run", "--period", "2026-10")
    assert again["invoices"] == 0
    html = tmp_path / "inv.html"
    assert cli("invoice", "export", inv["number"], "--format", "html", "--out", html).exit_code == 0
    assert "INV-2026-000001" in html.read_text() and "110.40" in html.read_text()
    as_json = tmp_path / "inv.json"
    assert cli("invoice", "export", inv["id"], "--format", "json", "--out", as_json).exit_code == 0
    exported = json.loads(as_json.read_text())
    assert exported["number"] == "INV-2026-000001" and exported["total"] == {
        "amount": "110.40",
        "currency": "EUR",
    }
    assert sum(Decimal(ln["amount"]["amount"]) for ln in exported["lines"]) == Decimal(
        exported["subtotal"]["amount"]
    )
    rows = list(
        csv.reader(io.StringIO(cli("invoice", "export", inv["id"], "--format", "csv").stdout))
    )
    assert rows[0] == ["description", "quantity", "unit_price", "proration", "amount", "currency"]
    assert [r[4] for r in rows[1:]] == [ln["amount"]["amount"] for ln in exported["lines"]]
    assert {r[5] for r in rows[1:]} == {"EUR"}
    bad = cli("invoice", "export", inv["id"], "--format", "xml")
    assert bad.exit_code == 2 and "json, csv, html or pdf" in bad.stderr
    explain = cli("invoice", "explain", inv["id"])
    assert "tier" in explain.stdout and "total 110.40" in explain.stdout
    assert cli.json("invoice", "pay", inv["id"])["status"] == "paid"
    ledger = cli.json("ledger", "show", "acme")
    assert [e["balance"]["amount"] for e in ledger] == ["110.40", "0.00"]


def test_bad_input_writes_nothing(cli: Any, sqlite_url: str, tmp_path: Path) -> None:
    f = tmp_path / "bad.yaml"
    f.write_text(CATALOGUE.replace('"0.002"', "0.002").replace("up_to: 10000", "up_to: 10"))
    cli("tenant", "create", "acme")
    before = counts(sqlite_url)
    r = cli("billing", "plan", "create", "-f", f)
    assert r.exit_code == 2
    csv = tmp_path / "u.csv"
    csv.write_text("tenant,metric,quantity,at\nacme,api_calls,1,2026-10-01T00:00:00Z\n")
    r = cli("usage", "import", csv)
    assert r.exit_code != 0 and "line 2" in r.stderr
    assert counts(sqlite_url) == before


def test_usage_import_is_atomic_with_line_numbers(
    cli: Any, sqlite_url: str, tmp_path: Path
) -> None:
    m = tmp_path / "m.yaml"
    m.write_text(CATALOGUE.split("---")[0])
    cli("metric", "create", "-f", m)
    cli("tenant", "create", "acme")
    csv = tmp_path / "u.csv"
    csv.write_text(
        "tenant,metric,quantity,at\n"
        "acme,api_calls,1,2026-10-01T00:00:00Z\n"
        "acme,api_calls,abc,2026-10-01T00:00:00Z\n"
    )
    r = cli("usage", "import", csv)
    assert r.exit_code == 2 and "line 3" in r.stderr
    csv.write_text("tenant,metric,quantity,at\n" + "acme,api_calls,2,2026-10-01T00:00:00Z\n" * 3)
    assert cli.json("usage", "import", csv) == {"imported": 3}


def test_invoice_now_tax_treatment_and_expiring_credit(
    cli: Any, sqlite_url: str, tmp_path: Path
) -> None:
    from datetime import UTC, datetime

    from mno import clock

    clock.set_now(datetime(2026, 10, 20, tzinfo=UTC))
    docs = dict(zip(("metric", "plan", "tax-rate"), CATALOGUE.split("---"), strict=False))
    for kind, doc in docs.items():
        f = tmp_path / f"{kind}.yaml"
        f.write_text(doc)
        group = ("billing", "plan") if kind == "plan" else (kind,)
        assert cli(*group, "create", "-f", f).exit_code == 0
    assert cli("tenant", "create", "acme", "--country", "FR").exit_code == 0
    r = cli("billing", "tax-treatment", "set", "acme", "--country", "FR")
    assert r.exit_code == 2 and "--exempt or --reverse-charge" in r.stderr
    rc = cli.json(
        "billing",
        "tax-treatment",
        "set",
        "acme",
        "--country",
        "fr",
        "--reverse-charge",
        "--tax-id",
        "FR40303265045",
    )
    assert (rc["country"], rc["treatment"]) == ("FR", "reverse_charge")
    assert len(cli.json("billing", "tax-treatment", "list", "--tenant", "acme")) == 1
    sub = cli.json(
        "subscription",
        "create",
        "acme",
        "pro",
        "--start",
        "2026-10-01T00:00:00Z",
        "--invoice-now",
    )
    # all of October (in UTC) in advance, reverse charged: 49.00 and no tax
    assert sub["invoice"] and sub["invoice_total"] == {"amount": "49.00", "currency": "EUR"}
    shown = cli.json("invoice", "show", sub["invoice"])
    assert shown["tax"]["amount"] == "0.00" and "FR40303265045" in shown["tax_note"]
    r = cli(
        "ledger",
        "credit",
        "acme",
        "--amount",
        "5.00",
        "--currency",
        "EUR",
        "--expires",
        "2026-10-01T00:00:00Z",
    )
    assert r.exit_code == 2 and "past" in r.stderr
    credit = cli.json(
        "ledger",
        "credit",
        "acme",
        "--amount",
        "5.00",
        "--currency",
        "EUR",
        "--expires",
        "2026-11-01T00:00:00Z",
    )
    assert credit["balance"] == {"amount": "-5.00", "currency": "EUR"}
    (grant,) = cli.json("ledger", "credits", "acme")
    assert (grant["remaining"]["amount"], grant["status"]) == ("5.00", "open")
    assert cli("billing", "tax-treatment", "remove", "acme", "--country", "FR").exit_code == 0
    assert cli("billing", "tax-treatment", "remove", "acme", "--country", "FR").exit_code == 1
