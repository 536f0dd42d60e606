"""Invoice documents: ``invoice explain`` as readable text, PDF invoices and credit notes
(WeasyPrint) with a per-tenant template, and the ``invoice_issued`` email with the PDF."""

from __future__ import annotations

from pathlib import Path
from textwrap import dedent
from typing import Any


def _invoice(cli: Any) -> dict[str, Any]:
    """An issued October invoice for acme (the ``catalogue`` fixture): a fixed fee,
    graduated usage, a one-off charge, 20 % tax."""
    assert (
        cli(
            "tenant",
            "create",
            "acme",
            "--name",
            "Acme Corp",
            "--country",
            "FR",
            "--currency",
            "EUR",
            "--address",
            "1 rue de la Paix",
            "--city",
            "Paris",
            "--zip",
            "75002",
        ).exit_code
        == 0
    )
    cli.json(
        "subscription",
        "create",
        "acme",
        "pro",
        "--start",
        "2026-10-16T00:00:00Z",
        "--coupon",
        "half",
    )
    cli.json("usage", "record", "acme", "api_calls", "15000", "--at", "2026-10-20T00:00:00Z")
    cli.json(
        "charge",
        "add",
        "acme",
        "--amount",
        "100",
        "--currency",
        "EUR",
        "--description",
        "Onboarding workshop",
    )
    cli.json("billing", "run", "--period", "2026-10", "--issue")
    return cli.json("invoice", "list")[0]


def test_explain_prints_plain_readable_arithmetic(cli: Any, catalogue: None) -> None:
    inv = _invoice(cli)
    out = cli("invoice", "explain", inv["number"])
    assert out.exit_code == 0, out.stderr
    assert out.stdout == dedent(
        """\
        invoice INV-2026-000001, tenant acme, period 2026-10, EUR
        1. pro fixed 2026-10-01 to 2026-10-31: 1 x 49.00 x ~0.5161 (prorated) = 25.29 EUR
        2. pro fixed 2026-11-01 to 2026-11-30: 1 x 49.00 = 49.00 EUR
        3. pro usage 2026-10-01 to 2026-10-31: 15000 units in graduated tiers = 23.00 EUR
           tier 1: units 0 to 1000, 1000 x 0.00 = 0.00
           tier 2: units 1000 to 10000, 9000 x 0.002 = 18.00
           tier 3: units 10000 to 15000, 5000 x 0.001 = 5.00
        4. Onboarding workshop: 1 x 100.00 = 100.00 EUR
        subtotal 197.29 EUR
        discounts 48.65 EUR
        tax fr-vat 20% on 148.64 = 29.73 EUR
        subtotal 197.29 - discounts 48.65 + tax 29.73 = total 178.37 EUR
        """
    )
    # the one-off charge's unit price is stored normalised ("1E+2"); it is shown plainly
    assert "E+" not in out.stdout and "{" not in out.stdout and "Decimal" not in out.stdout


def test_explain_lines_of_other_pricing_models() -> None:
    from mno.billing.explain import line_text

    volume = {
        "description": "seats",
        "kind": "usage",
        "quantity": "1.2E+2",
        "unit_price": "0.5",
        "proration": "1",
        "amount": "60.000",
        "detail": {
            "model": "volume",
            "tiers": [{"up_to": "None", "unit_price": "0.5", "units": "120"}],
        },
    }
    assert line_text(1, volume, "BHD") == [
        "1. seats: 120 x 0.500 = 60.000 BHD",
        "   volume tier with no upper limit: all 120 units at 0.500",
    ]
    package = {
        "description": "storage",
        "kind": "usage",
        "quantity": "2500",
        "unit_price": "0.012",
        "proration": "1",
        "amount": "30",
        "detail": {"model": "package", "packages": "3", "tiers": []},
    }
    assert line_text(2, package, "JPY") == ["2. storage: 2500 units in 3 packages x 10 = 30 JPY"]
    hours = {
        "description": "support",
        "kind": "time",
        "quantity": "90",
        "unit_price": "1.5",
        "proration": "1",
        "amount": "135.00",
        "detail": {"model": "time", "billed_minutes": "90"},
    }
    assert line_text(3, hours, "EUR") == ["3. support: 90 minutes at 90.00 per hour = 135.00 EUR"]
    bucket = {
        "description": "calls",
        "kind": "bucket",
        "quantity": "20",
        "unit_price": "0.1",
        "proration": "1",
        "amount": "2.00",
        "detail": {
            "model": "bucket",
            "used": "120",
            "included": "100",
            "rollover_in": "0",
            "available": "100",
            "rollover_out": "0",
        },
    }
    assert line_text(4, bucket, "EUR") == [
        "4. calls: 20 x 0.10 (overage) = 2.00 EUR",
        "   used 120 of 100 available (100 included + 0 rolled over);"
        " 0 roll over to the next period",
    ]


def test_plain_numbers() -> None:
    from mno.money import plain, plain_price

    assert [plain("1E+2"), plain("0.0020", 2), plain("49", 2), plain("-0", 2)] == [
        "100",
        "0.002",
        "49.00",
        "0.00",
    ]
    assert [plain_price("1E+2", "JPY"), plain_price("1.5", "BHD")] == ["100", "1.500"]
