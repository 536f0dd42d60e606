"""Prepaid credits with expiry, tax exemption and reverse charge, and
``subscription create --invoice-now``, on SQLite and PostgreSQL. Golden amounts by hand."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from datetime import UTC, datetime
from typing import Any

import pytest

from mno import clock
from mno.billing import credit_notes, documents, invoices, ledger, subscriptions, tax
from mno.billing import run as billing
from mno.errors import BadInput
from mno.tenancy import tenants
from tests.conftest import counts

Opener = Callable[..., AbstractContextManager[Any]]


def _at(y: int, m: int, d: int) -> datetime:
    return datetime(y, m, d, tzinfo=UTC)


def test_credits_apply_after_tax_soonest_expiry_first_then_expire(
    store_url: str, session: Opener, catalogue: None
) -> None:
    clock.set_now(_at(2026, 10, 20))
    with session() as s:
        tenants.create(s, "cred", country="FR")
        subscriptions.create(s, "cred", "pro", start=_at(2026, 9, 1))
        ledger.add_credit(s, "cred", 3000, "EUR", "promo", expires_at=_at(2026, 11, 10))
        ledger.add_credit(s, "cred", 5000, "EUR", "prepaid", expires_at=_at(2026, 12, 31))
        ledger.add_credit(s, "cred", 500, "EUR", "goodwill")
        with pytest.raises(BadInput):
            ledger.add_credit(s, "cred", 100, "EUR", expires_at=_at(2026, 1, 1))
    clock.set_now(_at(2026, 11, 2))
    billing.run("2026-10", url=store_url)
    with session() as s:
        inv = invoices.issue(s, str(invoices.list_invoices(s, "cred")[0].id))
        # 49.00 + 20% VAT 9.80 = 58.80, paid by 30.00 (expires first) and 28.80 of 50.00
        assert (inv.tax_minor, inv.credit_minor, inv.total_minor) == (980, 5880, 0)
        assert inv.status == "paid"
        left = {g.reference: g.remaining_minor for g in ledger.list_credits(s, "cred")}
        assert left == {"promo": 0, "prepaid": 2120, "goodwill": 500}
        assert ledger.balance(s, inv.tenant_id, "EUR") == -2620
    clock.set_now(_at(2027, 1, 5))
    billing.run("2026-11", url=store_url)
    with session() as s:
        inv = invoices.list_invoices(s, "cred", period="2026-11")[0]
        inv = invoices.issue(s, str(inv.id))
        # the 21.20 left of "prepaid" expired on Dec 31: written off, not applied; only
        # the 5.00 without expiry pays: 58.80 - 5.00 = 53.80
        assert (inv.credit_minor, inv.total_minor) == (500, 5380)
        entries = ledger.entries(s, "cred")
        assert [(e.type, e.amount_minor) for e in entries] == [
            ("credit", -3000),
            ("credit", -5000),
            ("credit", -500),
            ("invoice", 5880),
            ("expiry", 2120),
            ("invoice", 5880),
        ]
        assert entries[-1].balance_minor == 5380
        assert ledger.expire_credits(s) == 0


def test_void_gives_back_the_credit_an_invoice_used(
    store_url: str, session: Opener, catalogue: None
) -> None:
    clock.set_now(_at(2026, 10, 20))
    with session() as s:
        tenants.create(s, "back", country="FR")
        subscriptions.create(s, "back", "pro", start=_at(2026, 9, 1))
        ledger.add_credit(s, "back", 1000, "EUR")
    clock.set_now(_at(2026, 11, 2))
    billing.run("2026-10", url=store_url)
    with session() as s:
        inv = invoices.issue(s, str(invoices.list_invoices(s, "back")[0].id))
        assert (inv.credit_minor, inv.total_minor) == (1000, 4880)
        credit_notes.void(s, str(inv.id), reason="wrong plan")
        assert ledger.balance(s, inv.tenant_id, "EUR") == -1000
        assert sum(g.remaining_minor for g in ledger.list_credits(s, "back")) == 1000


def test_exemption_and_reverse_charge_per_country_and_region(
    store_url: str, session: Opener, catalogue: None, cli: Any
) -> None:
    clock.set_now(_at(2026, 10, 20))
    rates = """
kind: TaxRate
metadata: {name: de-vat}
spec: {country: DE, rate: "19"}
---
kind: TaxRate
metadata: {name: us-ca}
spec: {country: US, region: CA, rate: "7.25"}
---
kind: TaxRate
metadata: {name: us}
spec: {country: US, rate: "5"}
"""
    with session() as s:
        documents.apply_text(s, rates)
        for key, country, region in (
            ("de-rc", "DE", None),
            ("de-std", "DE", None),
            ("ca-ex", "US", "CA"),
            ("ca-std", "US", "CA"),
            ("ny", "US", "NY"),
        ):
            tenants.create(s, key, country=country, region=region)
            subscriptions.create(s, key, "pro", start=_at(2026, 9, 1))
        tax.set_treatment(s, "de-rc", "de", "reverse_charge", tax_id="DE123456789")
        tax.set_treatment(s, "ca-ex", "US", "exempt", region="CA", note="Resale certificate")
        # an exemption for California does not cover the same tenant's New York address
        tax.set_treatment(s, "ny", "US", "exempt", region="CA")
        with pytest.raises(BadInput):
            tax.set_treatment(s, "ny", "US", "zero")
    clock.set_now(_at(2026, 11, 2))
    billing.run("2026-10", url=store_url)
    with session(write=False) as s:

        def inv(key: str) -> Any:
            return invoices.list_invoices(s, key)[0]

        rc = inv("de-rc")
        assert (rc.subtotal_minor, rc.tax_minor, rc.total_minor) == (4900, 0, 4900)
        assert rc.tax_detail["treatment"] == "reverse_charge"
        assert "Reverse charge" in rc.tax_detail["note"] and "DE123456789" in rc.tax_detail["note"]
        # 49.00 * 19% = 9.31
        assert (inv("de-std").tax_minor, inv("de-std").total_minor) == (931, 5831)
        ex = inv("ca-ex")
        assert (ex.tax_minor, ex.total_minor) == (0, 4900)
        assert ex.tax_detail["note"] == "Exempt from tax. Resale certificate"
        # 49.00 * 7.25% = 3.5525 -> 3.55
        assert (inv("ca-std").tax_minor, inv("ca-std").total_minor) == (355, 5255)
        # New York: the country rate, 49.00 * 5% = 2.45
        assert (inv("ny").tax_minor, inv("ny").total_minor) == (245, 5145)
        rc_id = str(rc.id)
    html = cli("invoice", "export", rc_id, "--format", "html")
    assert html.exit_code == 0 and "Reverse charge" in html.stdout
    assert cli.json("invoice", "show", rc_id)["tax_note"].startswith("Reverse charge")


def test_invoice_now_then_the_run_bills_nothing_twice(
    store_url: str, session: Opener, catalogue: None
) -> None:
    clock.set_now(_at(2026, 10, 20))
    with session() as s:
        tenants.create(s, "now", country="FR", timezone="Europe/Paris")
        sub = subscriptions.create(s, "now", "pro", start=_at(2026, 10, 20), invoice_now=True)
        first = subscriptions.first_invoice(s, sub)
        assert first is not None and first.kind == "subscription"
        # October 20 to November 1 in Paris: 12 of 31 days of 49.00 = 18.967.. -> 18.97;
        # VAT 3.794 -> 3.79
        assert (first.subtotal_minor, first.tax_minor, first.total_minor) == (1897, 379, 2276)
    before = counts(store_url)
    clock.set_now(_at(2026, 11, 2))
    billing.run("2026-10", url=store_url)
    assert billing.run("2026-10", url=store_url).invoices == 0
    with session(write=False) as s:
        inv = invoices.list_invoices(s, "now", period="2026-10")[0]
        lines = invoices.lines(s, inv)
        # November in advance and October's (empty) usage; October's fixed charge was
        # billed at once and is not billed again
        assert [(ln.kind, ln.amount_minor) for ln in lines if ln.kind == "fixed"] == [
            ("fixed", 4900)
        ]
        assert inv.subtotal_minor == 4900
        from mno.store.models.billing import InvoiceLine

        keys = [k for (k,) in s.exec(sa_select_keys(InvoiceLine))]
        assert len(keys) == len(set(keys)) == 3
    assert counts(store_url) != before


def sa_select_keys(model: Any) -> Any:
    import sqlalchemy as sa

    return sa.select(model.__table__.c.line_key)
