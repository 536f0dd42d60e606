"""``mno report tenant``: rich tables, the API's JSON, the HTML page and bad input (the
CLI is a thin face over the KPIs, which test_kpis checks on both stores: SQLite here)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest


@pytest.fixture
def store_url(sqlite_url: str) -> str:
    return sqlite_url


WINDOW = ["--from", "2026-01-01", "--to", "2026-06-30"]


def test_json_is_the_api_shape(cli, books, store_url):
    body = cli.json("report", "tenant", "acme", *WINDOW)
    assert body["tenant"] == "acme" and body["window"] == {"from": "2026-01-01", "to": "2026-06-30"}
    named = {(w["widget"], w["group_by"]): w for w in body["widgets"]}
    assert named[("revenue", "month")]["totals"]["revenue"] == {"EUR": "2000.00", "USD": "2180.84"}
    assert named[("pipeline", "stage")]["totals"]["weighted_pipeline"]["USD"] == "1350.20"
    assert named[("headcount", "month")]["totals"]["headcount"] == 3
    assert set(named[("revenue", "month")]) == {
        "widget", "tenant", "window", "currency", "group_by", "series", "totals",
    }  # fmt: skip


def test_rates_from_a_file_and_flags(cli, books, store_url, tmp_path: Path):
    """EUR:USD 1.25 from the file, overridden by --rate EUR:USD=1.08: revenue 2180.84 +
    2000.00 × 1.08 = 4340.84 USD; the file alone gives 2180.84 + 2500.00 = 4680.84."""
    rates = tmp_path / "rates.yaml"
    rates.write_text('rates:\n  "EUR:USD": "1.25"\n')
    base = ["report", "tenant", "acme", *WINDOW, "--currency", "USD", "--rates", str(rates)]
    body = cli.json(*base)
    revenue = next(w for w in body["widgets"] if w["widget"] == "revenue")
    assert revenue["totals"]["revenue"] == {"USD": "4680.84"} and body["rates"] == {
        "EUR:USD": "1.25"
    }
    body = cli.json(*base, "--rate", "EUR:USD=1.08")
    revenue = next(w for w in body["widgets"] if w["widget"] == "revenue")
    assert revenue["totals"]["revenue"] == {"USD": "4340.84"}


def test_terminal_tables_with_sparklines(cli, books, store_url):
    result = cli("report", "tenant", "acme", *WINDOW)
    assert result.exit_code == 0, result.stderr
    out = result.stdout
    for title in ("Finance", "Sales", "HR", "revenue by month", "receivables by age"):
        assert title in out
    assert re.search(r"[▁▂▃▄▅▆▇█]{6}", out)  # a six-month sparkline
    assert "2180.84" in out and "560.50" in out


def test_html_page(cli, books, store_url, tmp_path: Path):
    out = tmp_path / "acme.html"
    result = cli("report", "tenant", "acme", *WINDOW, "--html", str(out))
    assert result.exit_code == 0, result.stderr
    page = out.read_text()
    assert page.count("<svg") >= 6
    assert "<script" not in page and 'href="http' not in page and "src=" not in page
    assert "Receivables by days past due" in page and "86.4 days (USD)" in page


def test_bad_input_is_one_line_exit_2(cli, books, store_url):
    for args in (
        ["--from", "2026-02-31"],
        ["--rate", "EUR:USD=1.1"],
        ["--currency", "USD", "--rate", "EURUSD"],
        ["--currency", "XXX1"],
    ):
        result = cli("report", "tenant", "acme", *args)
        assert result.exit_code == 2, (args, result.stdout, result.stderr)
        assert result.stderr.startswith("Error: ") and result.stderr.count("\n") == 1
    assert cli("report", "tenant", "ghost").exit_code == 1
    assert json.loads(cli("report", "tenant", "acme", "-o", "json").stdout)["tenant"] == "acme"
