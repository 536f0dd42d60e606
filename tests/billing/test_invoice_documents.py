"""Invoice documents: ``invoice explain`` as readable text, PDF invoices and credit notes
(WeasyPrint) with a per-tenant template, and the ``invoice_issued`` email with the PDF."""

from __future__ import annotations

from pathlib import Path
from textwrap import dedent
from typing import Any

import pytest

from tests.billing.conftest import CATALOGUE


@pytest.fixture
def catalogue(session: Any) -> None:
    """The billing tests' catalogue with a round fixed fee: its unit price is stored
    normalised (``1E+2``), which explain and the PDF must show as ``100.00``."""
    from mno.billing import documents

    with session() as s:
        documents.apply_text(s, CATALOGUE.replace('"49.00"', '"100"'))


def _invoice(cli: Any, one_off: bool = True) -> dict[str, Any]:
    """An issued October invoice for acme: a fixed fee from mid-October (prorated) and for
    November (in advance), graduated usage, a 50 % coupon, 20 % tax and, with ``one_off``,
    a one-off charge (whose place among the lines depends on ids)."""
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
    if one_off:
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
    inv = _invoice(cli, one_off=False)
    out = cli("invoice", "explain", inv["number"])
    assert out.exit_code == 0, out.stderr
    assert out.stdout == dedent(
        """\
        invoice INV-2026-000001, tenant acme, period 2026-10, EUR
        1. pro fixed 2026-10-01 to 2026-10-31: 1 x 100.00 x ~0.5161 (prorated) = 51.61 EUR
        2. pro fixed 2026-11-01 to 2026-11-30: 1 x 100.00 = 100.00 EUR
        3. pro usage 2026-10-01 to 2026-10-31: 15000 units in graduated tiers = 23.00 EUR
           tier 1: units 0 to 1000, 1000 x 0.00 = 0.00
           tier 2: units 1000 to 10000, 9000 x 0.002 = 18.00
           tier 3: units 10000 to 15000, 5000 x 0.001 = 5.00
        subtotal 174.61 EUR
        discounts 87.31 EUR
        tax fr-vat 20% on 87.30 = 17.46 EUR
        subtotal 174.61 - discounts 87.31 + tax 17.46 = total 104.76 EUR
        """
    )
    # the fixed fee's unit price is stored normalised ("1E+2"); it is shown plainly
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


def _pdf_text(path: Path) -> str:
    from pypdf import PdfReader

    return "\n".join(page.extract_text() for page in PdfReader(path).pages)


def test_pdf_invoice_and_credit_note(cli: Any, catalogue: None, tmp_path: Path) -> None:
    inv = _invoice(cli)
    pdf = tmp_path / "invoice.pdf"
    out = cli("invoice", "export", inv["number"], "--format", "pdf", "--out", pdf)
    assert out.exit_code == 0, out.stderr
    assert pdf.read_bytes().startswith(b"%PDF-")
    text = _pdf_text(pdf)
    shown = cli.json("invoice", "show", inv["number"])
    due = shown["due_at"][:10]
    for expected in (
        "Invoice",
        "INV-2026-000001",
        "Acme Corp",
        "1 rue de la Paix",
        "75002 Paris",
        "Period 2026-10",
        f"Due {due}",
        "pro fixed 2026-10-01 to 2026-10-31 1 100.00 ~0.5161 51.61",
        "15000 tiered 23.00",
        "tier 2: units 1000 to 10000, 9000 x 0.002 = 18.00",
        "Onboarding workshop 1 100.00 100.00",
        "Subtotal 274.61 EUR",
        "Discounts -87.31 EUR",
        "Tax fr-vat (20%) 37.46 EUR",
        "Total 224.76 EUR",
        f"Please pay 224.76 EUR by {due}, quoting INV-2026-000001.",
    ):
        assert expected in text, (expected, text)
    assert "E+" not in text
    # a credit note is a document of its own, exported by its number
    note = cli.json(
        "invoice", "credit", inv["number"], "--reason", "Workshop cancelled", "--line", "4"
    )
    assert note["number"] == "CN-2026-000001"
    cn_pdf = tmp_path / "credit.pdf"
    out = cli("invoice", "export", note["number"], "--format", "pdf", "--out", cn_pdf)
    assert out.exit_code == 0, out.stderr
    text = _pdf_text(cn_pdf)
    for expected in (
        "Credit note",
        "CN-2026-000001",
        "Acme Corp",
        "Credit note for invoice INV-2026-000001: Workshop cancelled.",
        f"Total credited {note['total']['amount']} EUR",
    ):
        assert expected in text, (expected, text)
    assert "Please pay" not in text and "Due " not in text
    # to standard output when it is not a terminal
    piped = cli("invoice", "export", note["number"], "--format", "pdf")
    assert piped.exit_code == 0 and piped.stdout_bytes.startswith(b"%PDF-")
    bad = cli("invoice", "export", inv["number"], "--format", "xml")
    assert bad.exit_code == 2 and "json, csv, html or pdf" in bad.stderr


def test_tenant_template_override_loads_only_its_own_files(
    cli: Any, catalogue: None, tmp_path: Path, mno_env: Path
) -> None:
    """The tenant's invoice.html under MNO_HOME/templates/<key>/ replaces the built-in
    page; it may use files next to it, never other files or the network."""
    import http.server
    import threading

    hits: list[str] = []

    class Count(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - the handler's protocol
            hits.append(self.path)
            self.send_response(200)
            self.send_header("Content-Type", "text/css")
            self.end_headers()
            self.wfile.write(b'body::after{content:"FROM THE NETWORK"}')

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Count)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    inv = _invoice(cli)
    outside = tmp_path / "outside.css"
    outside.write_text('body::after{content:"OUTSIDE FILE"}')
    own = mno_env / "templates" / "acme"
    own.mkdir(parents=True)
    (own / "brand.css").write_text('body::before{content:"ACME BRAND"}')
    (own / "invoice.html").write_text(
        '<html><head><link rel="stylesheet" href="brand.css">'
        f'<link rel="stylesheet" href="{outside.as_uri()}">'
        f'<link rel="stylesheet" href="http://127.0.0.1:{server.server_port}/x.css">'
        "</head><body><h1>Acme invoice {{ inv.number }}</h1>"
        "<p>Total due {{ t.total }} {{ inv.currency }} by {{ due }}</p>"
        "{% for l in lines %}<p>{{ l.description }}: {{ l | unit_price(inv.currency) }}</p>"
        "{% endfor %}</body></html>"
    )
    try:
        pdf = tmp_path / "custom.pdf"
        out = cli("invoice", "export", inv["number"], "--format", "pdf", "--out", pdf)
        assert out.exit_code == 0, out.stderr
    finally:
        server.shutdown()
    text = _pdf_text(pdf)
    assert "Acme invoice INV-2026-000001" in text and "Total due 224.76 EUR" in text
    assert "Onboarding workshop: 100.00" in text and "ACME BRAND" in text
    assert "OUTSIDE FILE" not in text and "FROM THE NETWORK" not in text and hits == []
    # the HTML export uses the same template; another tenant keeps the built-in one
    page = cli("invoice", "export", inv["number"], "--format", "html").stdout
    assert "Acme invoice INV-2026-000001" in page
    # a broken override is one line of error, exit 2
    (own / "invoice.html").write_text("{% for %}")
    broken = cli("invoice", "export", inv["number"], "--format", "pdf", "--out", pdf)
    assert broken.exit_code == 2 and "invoice.html does not render" in broken.stderr


def test_invoice_issued_email_has_the_facts_a_link_and_the_pdf(
    cli: Any, catalogue: None, mno_env: Path, smtp_server: Any, tmp_path: Path
) -> None:
    port, received = smtp_server
    (mno_env / "config.yaml").write_text(
        "profiles:\n  default:\n"
        f"    smtp: {{host: 127.0.0.1, port: {port}, from: billing@hub.example.com}}\n"
        "    hub: {url: https://hub.example.com/}\n"
    )
    rule = cli.json(
        "notify",
        "rule",
        "add",
        "--events",
        "invoice.issued",
        "--email-to",
        "accounts@acme.example",
        "--template",
        "invoice_issued",
    )
    assert rule["template"] == "invoice_issued"
    inv = _invoice(cli)
    due = cli.json("invoice", "show", inv["number"])["due_at"][:10]
    ticked = cli.json("agents", "tick", "dispatcher")
    assert ticked["done"] == 1, ticked
    (message,) = received
    assert message["To"] == "accounts@acme.example"
    assert message["Subject"] == f"Invoice INV-2026-000001: 224.76 EUR, due {due}"
    parts = list(message.walk())
    (text,) = [p for p in parts if p.get_content_type() == "text/plain"]
    body = text.get_payload(decode=True).decode()
    assert "invoice INV-2026-000001 for 224.76 EUR was issued for 2026-10." in body
    assert f"Please pay it by {due}." in body
    assert "See it online: https://hub.example.com/invoices/INV-2026-000001" in body
    (pdf_part,) = [p for p in parts if p.get_content_type() == "application/pdf"]
    assert pdf_part.get_filename() == "INV-2026-000001.pdf"
    pdf = tmp_path / "attached.pdf"
    pdf.write_bytes(pdf_part.get_payload(decode=True))
    text_of_pdf = _pdf_text(pdf)
    assert "INV-2026-000001" in text_of_pdf and "Total 224.76 EUR" in text_of_pdf
    # the overdue reminder names the same facts and carries no PDF
    from datetime import timedelta

    from mno import clock
    from mno.billing import invoices
    from mno.store.db import session_scope

    cli.json(
        "notify",
        "rule",
        "add",
        "--events",
        "invoice.overdue",
        "--email-to",
        "accounts@acme.example",
        "--template",
        "invoice_overdue",
    )
    clock.set_now(clock.now() + timedelta(days=45))
    with session_scope() as s:
        assert invoices.flag_overdue(s) == 1
    assert cli.json("agents", "tick", "dispatcher")["done"] == 1
    reminder = received[1]
    assert reminder["Subject"] == "Invoice INV-2026-000001 is overdue"
    assert [p.get_content_type() for p in reminder.walk()] == ["text/plain"]
    assert (
        f"invoice INV-2026-000001 for 224.76 EUR was due on {due} and is not paid yet."
        in reminder.get_payload(decode=True).decode()
    )
