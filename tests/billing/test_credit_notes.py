"""Credit notes and refunds (``mno invoice credit``), on SQLite and PostgreSQL: a golden
partial refund with tax, crediting to the balance, refusals that write nothing, voiding
through the same path, and a property: credit notes never exceed the invoice."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from contextlib import AbstractContextManager
from datetime import UTC, datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mno import clock
from mno.billing import credit_notes, invoices, ledger, subscriptions, usage
from mno.billing import run as billing
from mno.errors import Conflict
from mno.store.models.billing import Invoice, InvoiceLine
from mno.tenancy import tenants
from tests.conftest import counts

Opener = Callable[..., AbstractContextManager[Any]]


def _at(y: int, m: int, d: int) -> datetime:
    return datetime(y, m, d, tzinfo=UTC)


@pytest.fixture
def paid(store_url: str, session: Opener, catalogue: None) -> str:
    """acme (FR, VAT 20%) on pro: October's run bills November's 49.00 in advance and
    October's 6000 API calls (1000 free, 5000 x 0.002 = 10.00): subtotal 59.00, VAT
    11.80, total 70.80, issued as INV-2026-000001 and paid."""
    clock.set_now(_at(2026, 10, 20))
    with session() as s:
        tenants.create(s, "acme", country="FR")
        subscriptions.create(s, "acme", "pro", start=_at(2026, 9, 1))
        usage.record(s, "acme", "api_calls", Decimal(6000), at=_at(2026, 10, 5))
    clock.set_now(_at(2026, 11, 2))
    billing.run("2026-10", url=store_url)
    with session() as s:
        inv = invoices.issue(s, str(invoices.list_invoices(s, "acme")[0].id))
        assert (inv.number, inv.subtotal_minor, inv.tax_minor, inv.total_minor) == (
            "INV-2026-000001",
            5900,
            1180,
            7080,
        )
        invoices.pay(s, str(inv.id))
    return store_url


def test_golden_partial_refund_with_tax_then_the_rest_to_the_balance(
    paid: str, session: Opener, cli: Any
) -> None:
    """Line 1 is the 49.00 fee. A refund of 7.33 of it gives back tax in proportion,
    rounded once, half up: 11.80 x 7.33 / 59.00 = 1.466 -> 1.47; the refund is 7.33 + 1.47
    = 8.80. Crediting all the rest then gives back 59.00 - 7.33 = 51.67 and the tax left,
    11.80 - 1.47 = 10.33: 62.00 to the balance. 8.80 + 62.00 = 70.80, the invoice's total.
    The ledger: invoice +70.80, payment -70.80, credit -8.80, refund +8.80, credit
    -62.00: the tenant has 62.00 of credit, which pays its next invoice."""
    shown = cli.json("invoice", "show", "INV-2026-000001")
    assert [ln["amount"]["amount"] for ln in shown["lines"]] == ["49.00", "10.00"]
    note = cli.json(
        "invoice",
        "credit",
        "INV-2026-000001",
        "--line",
        "1",
        "--amount",
        "7.33",
        "--reason",
        "outage on Nov 3",
        "--refund",
        "--method",
        "bank_transfer",
        "--reference",
        "TX-881",
    )
    assert note["number"] == "CN-2026-000001"
    assert note["kind"] == "credit_note"
    assert note["credit_note_for"] == "INV-2026-000001"
    assert [note[k]["amount"] for k in ("subtotal", "tax", "total")] == ["7.33", "1.47", "8.80"]
    assert note["refund"] == {
        "amount": {"amount": "8.80", "currency": "EUR"},
        "method": "bank_transfer",
        "reference": "TX-881",
    }
    rest = cli.json("invoice", "credit", "INV-2026-000001", "--reason", "goodwill")
    assert rest["number"] == "CN-2026-000002"
    assert [rest[k]["amount"] for k in ("subtotal", "tax", "total")] == ["51.67", "10.33", "62.00"]
    assert rest["refund"] is None
    with session(write=False) as s:
        entries = ledger.entries(s, "acme")
        assert [(e.type, e.amount_minor) for e in entries] == [
            ("invoice", 7080),
            ("payment", -7080),
            ("credit", -880),
            ("refund", 880),
            ("credit", -6200),
        ]
        assert entries[3].method == "bank_transfer" and entries[3].reference == "TX-881"
        assert entries[-1].balance_minor == -6200
        grants = ledger.list_credits(s, "acme")
        assert [(g.remaining_minor, g.reference) for g in grants] == [
            (6200, "given back by CN-2026-000002")
        ]
        lines = invoices.lines(s, invoices.get(s, "CN-2026-000002"))
        # the rest of line 1 (49.00 - 7.33) and all of line 2
        assert [ln.amount_minor for ln in lines] == [4167, 1000]
    # nothing is left: a third credit note is refused and writes nothing
    before = counts(paid)
    result = cli("invoice", "credit", "INV-2026-000001", "--reason", "again")
    assert result.exit_code == 1 and "nothing left to credit" in result.stderr
    assert counts(paid) == before
    shown = cli("invoice", "show", "CN-2026-000001")
    assert shown.exit_code == 0 and "Credit: " in shown.stdout
    assert "INV-2026-000001" in shown.stdout and "-7.33" not in shown.stdout
    as_json = cli.json("invoice", "show", "CN-2026-000002")
    assert (as_json["kind"], as_json["credit_note_for"], as_json["total"]) == (
        "credit_note",
        "INV-2026-000001",
        {"amount": "62.00", "currency": "EUR"},
    )
    assert [ln["amount"]["amount"] for ln in as_json["lines"]] == ["41.67", "10.00"]
    explained = cli("invoice", "explain", "CN-2026-000002")
    assert explained.exit_code == 0 and "= total 62.00 EUR" in explained.stdout
    assert "credit note CN-2026-000002 for INV-2026-000001" in explained.stdout
    html = cli("invoice", "export", "CN-2026-000002", "--format", "html")
    assert "Credit note CN-2026-000002" in html.stdout and "INV-2026-000001" in html.stdout


def test_events_and_audit(paid: str, session: Opener) -> None:
    with session() as s:
        booked = credit_notes.credit(
            s,
            "INV-2026-000001",
            reason="duplicate line",
            line=2,
            refund=True,
            method="card",
        )
        assert booked.note.total_minor == 1200  # 10.00 + VAT 2.00, stored positive
    import sqlalchemy as sa

    from mno.store import db

    with db.get_engine(paid).connect() as conn:
        types = [r[0] for r in conn.execute(sa.text("SELECT type FROM outbox_event ORDER BY seq"))]
        actions = {r[0] for r in conn.execute(sa.text("SELECT action FROM audit_entry"))}
    assert types[-2:] == ["credit_note.issued", "refund.recorded"]
    assert {"credit_note.issue", "refund.record"} <= actions


@pytest.mark.parametrize(
    ("args", "code", "says"),
    [
        (["--amount", "7.33"], 2, "--reason"),  # no reason: usage error
        (["--reason", "x", "--amount", "-1"], 2, "positive"),
        (["--reason", "x", "--amount", "1.001"], 2, "more decimals"),
        (["--reason", "x", "--amount", "1e3"], 2, "not an amount"),
        (["--reason", "x", "--line", "3"], 2, "lines 1 to 2"),
        (["--reason", "x", "--refund"], 2, "--method"),
        (["--reason", "x", "--method", "card"], 2, "go with --refund"),
        (["--reason", "x", "--line", "2", "--amount", "10.01"], 1, "remains creditable"),
        (["--reason", "x", "--amount", "59.01"], 1, "remains creditable"),
    ],
)
def test_refusals_write_nothing(paid: str, cli: Any, args: list[str], code: int, says: str) -> None:
    before = counts(paid)
    result = cli("invoice", "credit", "INV-2026-000001", *args)
    assert result.exit_code == code, result.stderr
    assert says in result.stderr
    assert counts(paid) == before


def test_refund_is_limited_to_what_was_paid_and_drafts_are_refused(
    store_url: str, session: Opener, catalogue: None, cli: Any
) -> None:
    clock.set_now(_at(2026, 10, 20))
    with session() as s:
        tenants.create(s, "unpaid", country="FR")
        subscriptions.create(s, "unpaid", "pro", start=_at(2026, 9, 1))
    clock.set_now(_at(2026, 11, 2))
    billing.run("2026-10", url=store_url)
    with session(write=False) as s:
        draft = str(invoices.list_invoices(s, "unpaid")[0].id)
    before = counts(store_url)
    result = cli("invoice", "credit", draft, "--reason", "x")
    assert result.exit_code == 1 and "line" in result.stderr  # the hint: change its lines
    assert counts(store_url) == before
    with session() as s:
        number = invoices.issue(s, draft).number
        invoices.pay(s, draft, 1000)  # 10.00 of 58.80
    before = counts(store_url)
    result = cli(
        "invoice", "credit", number, "--amount", "10", "--reason", "x", "--refund",
        "--method", "card",
    )  # fmt: skip
    # 10.00 + VAT 2.00 = 12.00 is more than the 10.00 paid
    assert result.exit_code == 1 and "10.00 EUR of invoice" in result.stderr
    assert counts(store_url) == before
    note = cli.json(
        "invoice", "credit", number, "--amount", "5", "--reason", "x", "--refund",
        "--method", "card",
    )  # fmt: skip
    assert note["refund"]["amount"] == {"amount": "6.00", "currency": "EUR"}


def test_void_books_its_credit_note_through_the_same_path(
    paid: str, session: Opener, cli: Any
) -> None:
    """Voiding an issued unpaid invoice (49.00 + VAT 9.80 = 58.80) books CN-2026-000001 of
    58.80 (stored positive) with the invoice's lines, void like the invoice it cancels;
    an invoice that has a credit note already cannot be voided (its credit went to the
    balance): it is refused and nothing is written."""
    with session() as s:
        for key in ("other", "third"):
            tenants.create(s, key, country="FR")
            subscriptions.create(s, key, "pro", start=_at(2026, 9, 1))
    billing.run("2026-10", url=paid)
    with session() as s:
        other = invoices.issue(s, str(invoices.list_invoices(s, "other")[0].id))
        third = invoices.issue(s, str(invoices.list_invoices(s, "third")[0].id))
        assert other.total_minor == third.total_minor == 5880
    out = cli.json("invoice", "void", other.number or "", "--reason", "wrong tenant", "--yes")
    assert out["status"] == "void"
    with session(write=False) as s:
        notes = credit_notes.notes_of(s, invoices.get(s, str(other.id)))
        assert [(n.number, n.status, n.total_minor, n.tax_minor) for n in notes] == [
            ("CN-2026-000001", "void", 5880, 980)
        ]
        assert notes[0].reason == "wrong tenant"
        assert [ln.amount_minor for ln in invoices.lines(s, notes[0])] == [4900]
        assert ledger.balance(s, other.tenant_id, "EUR") == 0
    with session() as s:
        credit_notes.credit(s, str(third.id), reason="late start", amount=Decimal("10.00"))
    before = counts(paid)
    result = cli("invoice", "void", third.number or "", "--yes")
    assert result.exit_code == 1 and "has credit notes" in result.stderr
    assert counts(paid) == before


# -- property: credit notes never exceed the invoice -------------------------------------

line_amounts = st.lists(st.integers(1, 10**6), min_size=1, max_size=4)
credits = st.lists(
    st.tuples(st.one_of(st.none(), st.integers(1, 5)), st.one_of(st.none(), st.integers(1, 10**6))),
    min_size=1,
    max_size=8,
)


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    amounts=line_amounts,
    rate=st.sampled_from([Decimal(0), Decimal("5.5"), Decimal(20)]),
    inclusive=st.booleans(),
    discount_pct=st.sampled_from([0, 10, 100]),
    ops=credits,
)
def test_credit_notes_never_exceed_the_invoice(
    sqlite_url: str,
    amounts: list[int],
    rate: Decimal,
    inclusive: bool,
    discount_pct: int,
    ops: list[tuple[int | None, int | None]],
) -> None:
    from mno.store.db import session_scope

    subtotal = sum(amounts)
    discount = subtotal * discount_pct // 100
    base = Decimal(subtotal - discount)
    tax = int((base * rate / 100).quantize(Decimal(1), ROUND_HALF_UP))
    gross = subtotal - discount + (0 if inclusive else tax)
    with session_scope(sqlite_url) as s:
        key = f"p{uuid.uuid4().hex[:10]}"
        t, _ = tenants.create(s, key, currency="EUR")
        inv = Invoice(
            tenant_id=t.id,
            period="2026-10",
            number=f"INV-2026-{uuid.uuid4().hex[:6]}",
            status="issued",
            currency="EUR",
            subtotal_minor=subtotal,
            discount_minor=discount,
            tax_minor=tax,
            total_minor=gross,
            tax_detail={"rate": "t", "percent": str(rate), "inclusive": inclusive},
        )
        s.add(inv)
        s.flush()
        for n, a in enumerate(amounts):
            s.add(InvoiceLine(invoice_id=inv.id, line_key=f"{inv.id}|{n}", kind="fixed",
                              amount_minor=a))  # fmt: skip
        inv_id = str(inv.id)
    for line, amount in ops + [(None, None)]:
        try:
            with session_scope(sqlite_url) as s:
                credit_notes.credit(
                    s,
                    inv_id,
                    reason="r",
                    line=line if line is None or line <= len(amounts) else None,
                    amount=None if amount is None else Decimal(amount) / 100,
                )
        except Conflict:
            pass
        with session_scope(sqlite_url, write=False) as s:
            inv = invoices.get(s, inv_id)
            notes = credit_notes.notes_of(s, inv)
            left = credit_notes.remaining(s, inv, notes)
            assert sum(n.total_minor for n in notes) <= gross
            assert sum(n.tax_minor for n in notes) <= tax
            assert sum(n.subtotal_minor for n in notes) <= subtotal
            assert all(line_left >= 0 for _, line_left in left.lines)
            assert all(n.total_minor >= 0 for n in notes)
    # after crediting everything that is left, exactly the invoice was given back
    if gross == 0:
        assert notes == []
        return
    assert left.subtotal_minor == 0
    assert sum(n.total_minor for n in notes) == gross
    assert sum(n.tax_minor for n in notes) == tax
    assert sum(n.discount_minor for n in notes) == discount
