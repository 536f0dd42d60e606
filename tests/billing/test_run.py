"""Billing runs against real SQLite and PostgreSQL stores."""

from __future__ import annotations

import threading
from collections.abc import Callable
from contextlib import AbstractContextManager
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
import sqlalchemy as sa

from mno import clock
from mno.billing import charges, credit_notes, invoices, ledger, subscriptions, usage
from mno.billing import run as billing
from mno.errors import Conflict, InvalidTransition
from mno.store.db import get_engine
from mno.store.models.billing import Invoice, InvoiceLine
from mno.tenancy import tenants
from tests.conftest import counts

Opener = Callable[..., AbstractContextManager[Any]]


def _snapshot(url: str) -> list[tuple[Any, ...]]:
    with get_engine(url).connect() as c:
        inv = c.execute(
            sa.select(
                Invoice.__table__.c.tenant_id,
                Invoice.__table__.c.currency,
                Invoice.__table__.c.total_minor,
            )
        ).all()
        lines = c.execute(
            sa.select(InvoiceLine.__table__.c.line_key, InvoiceLine.__table__.c.amount_minor)
        ).all()
    return sorted(map(tuple, inv), key=str) + sorted(map(tuple, lines), key=str)


def _tenant(s: Any, key: str, **kw: Any) -> None:
    tenants.create(s, key, **kw)


@pytest.fixture
def october(store_url: str, session: Opener, catalogue: None) -> str:
    clock.set_now(datetime(2026, 10, 20, tzinfo=UTC))
    with session() as s:
        _tenant(s, "acme", country="FR", timezone="Europe/Paris")
        _tenant(s, "kiwi", timezone="Pacific/Auckland")
        subscriptions.create(s, "acme", "pro", start=datetime(2026, 9, 1, tzinfo=UTC))
        subscriptions.create(s, "kiwi", "pro", start=datetime(2026, 9, 1, tzinfo=UTC))
        usage.record(s, "acme", "api_calls", Decimal(15000), at=datetime(2026, 10, 5, tzinfo=UTC))
        # 2026-10-31T12:00Z is already November 1st in Auckland: billed next period there
        usage.record(
            s, "kiwi", "api_calls", Decimal(5000), at=datetime(2026, 10, 31, 12, tzinfo=UTC)
        )
        charges.add(s, "acme", Decimal("10.00"), "EUR", "setup help")
    clock.set_now(datetime(2026, 11, 2, tzinfo=UTC))  # October has closed everywhere
    yield store_url
    clock.set_now(None)


def test_golden_invoice_with_tax_usage_and_one_off(october: str, session: Opener) -> None:
    result = billing.run("2026-10", url=october)
    assert result.invoices == 2 and not result.failed
    with session(write=False) as s:
        inv = invoices.list_invoices(s, "acme")[0]
        # 49.00 fixed (November, in advance) + 23.00 usage + 10.00 one-off = 82.00; VAT 20%
        assert (inv.subtotal_minor, inv.tax_minor, inv.total_minor) == (8200, 1640, 9840)
        kiwi = invoices.list_invoices(s, "kiwi")[0]
        assert kiwi.total_minor == 4900  # the usage falls in Auckland's November
        assert [c.status for c in charges.list_charges(s, "acme")] == ["invoiced"]


def test_rerun_changes_nothing_and_dry_run_writes_nothing(october: str) -> None:
    before = counts(october)
    dry = billing.run("2026-10", url=october, dry_run=True)
    assert dry.invoices == 2 and counts(october) == before and _snapshot(october) == []
    billing.run("2026-10", url=october)
    first = _snapshot(october)
    again = billing.run("2026-10", url=october)
    assert again.invoices == 0 and _snapshot(october) == first


def test_crash_then_rerun_matches_a_clean_run(october: str, session: Opener) -> None:
    billing.CHUNK, old = 1, billing.CHUNK
    try:
        with pytest.raises(RuntimeError):
            billing.run("2026-10", url=october, crash_after_chunks=1)
        assert len({r[0] for r in _snapshot(october) if len(r) == 3}) == 1
        billing.run("2026-10", url=october)
    finally:
        billing.CHUNK = old
    got = _snapshot(october)
    assert len([r for r in got if len(r) == 3]) == 2
    keys = [r[0] for r in got if len(r) == 2]
    assert len(keys) == len(set(keys))


def test_each_invoice_gets_one_audit_row_and_one_created_event(
    october: str, session: Opener
) -> None:
    """Every invoice a run writes has its ``invoice.create`` audit row and its
    ``invoice.created`` event (the payload every ``invoice.*`` event carries), written in
    its chunk's transaction: a crash and a rerun leave exactly one of each."""
    from mno.store import audit, outbox

    billing.CHUNK, old = 1, billing.CHUNK
    try:
        with pytest.raises(RuntimeError):
            billing.run("2026-10", url=october, crash_after_chunks=1)
        billing.run("2026-10", url=october)
    finally:
        billing.CHUNK = old
    with session(write=False) as s:
        invs = {str(i.id): i for i in invoices.list_invoices(s)}
        events = outbox.list_events(s, event_type="invoice.created")
        entries = audit.list_entries(s, action="invoice.create")
        keys = {i.tenant_id: tenants.get(s, i.tenant_id).key for i in invs.values()}
    assert len(invs) == 2
    assert sorted(e.payload["id"] for e in events) == sorted(invs)
    for e in events:
        inv = invs[e.payload["id"]]
        assert e.tenant_id == inv.tenant_id
        assert e.payload == {
            "id": str(inv.id),
            "tenant": keys[inv.tenant_id],
            "number": None,
            "status": "draft",
            "currency": inv.currency,
            "total_minor": inv.total_minor,
            "period": "2026-10",
        }
    assert sorted(a.target_id for a in entries) == sorted(invs)
    for a in entries:
        inv = invs[a.target_id]
        assert (a.target_type, a.target, a.tenant_id) == (
            "invoice",
            keys[inv.tenant_id],
            inv.tenant_id,
        )
        assert a.actor
        assert a.diff == audit.diff({}, audit.snapshot(inv))  # as record() writes a create


def test_concurrent_run_is_refused(october: str, session: Opener) -> None:
    from datetime import timedelta

    from mno.store import leases

    with session() as s:
        assert leases.acquire_lock(s, "billing-run:2026-10", "other-host", timedelta(minutes=5))
    with pytest.raises(Conflict):
        billing.run("2026-10", url=october)
    assert _snapshot(october) == []


def test_two_threads_race_one_set_of_invoices(october: str) -> None:
    outcomes: list[str] = []

    def go() -> None:
        try:
            billing.run("2026-10", url=october)
            outcomes.append("ran")
        except Conflict:
            outcomes.append("refused")

    threads = [threading.Thread(target=go) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert "ran" in outcomes
    assert len([r for r in _snapshot(october) if len(r) == 3]) == 2


def test_issue_numbers_are_gapless_pay_and_void(october: str, session: Opener) -> None:
    billing.run("2026-10", url=october)
    with session() as s:
        ids = [str(i.id) for i in invoices.list_invoices(s)]
    numbers = []
    for i in ids:
        with session() as s:
            numbers.append(invoices.issue(s, i).number)
    assert sorted(numbers) == ["INV-2026-000001", "INV-2026-000002"]
    with session() as s:
        inv = invoices.pay(s, ids[0])
        assert inv.status == "paid"
    with session() as s, pytest.raises(InvalidTransition):
        credit_notes.void(s, ids[0])
    with session() as s:
        credit_notes.void(s, ids[1], reason="mistake")
    with session(write=False) as s:
        notes = [i for i in invoices.list_invoices(s) if i.kind == "credit_note"]
        # credit notes have their own series: the invoice numbers stay gapless
        assert [n.number for n in notes] == ["CN-2026-000001"]


def test_invoiced_charge_cannot_be_cancelled(october: str, session: Opener) -> None:
    billing.run("2026-10", url=october)
    with session(write=False) as s:
        cid = str(charges.list_charges(s, "acme")[0].id)
    before = counts(october)
    with session() as s, pytest.raises(Conflict):
        charges.cancel(s, cid)
    assert counts(october) == before


def test_usage_and_charge_idempotency_keys(october: str, session: Opener) -> None:
    with session() as s:
        e1, c1 = usage.record(s, "acme", "api_calls", Decimal(1), idempotency_key="k1")
        e2, c2 = usage.record(s, "acme", "api_calls", Decimal(1), idempotency_key="k1")
        assert c1 and not c2 and e1.id == e2.id
        a = charges.add(s, "acme", Decimal("1.00"), "EUR", "x", idempotency_key="b1")
        b = charges.add(s, "acme", Decimal("1.00"), "EUR", "x", idempotency_key="b1")
        assert a.id == b.id


def test_coupon_once_and_prorated_start(store_url: str, session: Opener, catalogue: None) -> None:
    clock.set_now(datetime(2026, 10, 20, tzinfo=UTC))
    try:
        with session() as s:
            _tenant(s, "newco", timezone="America/New_York")
            # starts 2026-11-21 local: 10 of November's 30 days, in advance
            subscriptions.create(
                s, "newco", "pro", coupon="half", start=datetime(2026, 11, 21, 5, tzinfo=UTC)
            )
        clock.set_now(datetime(2026, 11, 2, tzinfo=UTC))
        billing.run("2026-10", url=store_url)
        with session(write=False) as s:
            inv = invoices.list_invoices(s, "newco")[0]
            # 49.00 * 10/30 = 16.333.. -> 16.33; half off once -> 8.17 (8.165 half up)
            assert (inv.subtotal_minor, inv.discount_minor, inv.total_minor) == (1633, 817, 816)
    finally:
        clock.set_now(None)


def test_coupon_and_credit_on_the_same_invoice(
    store_url: str, session: Opener, catalogue: None
) -> None:
    clock.set_now(datetime(2026, 10, 20, tzinfo=UTC))
    try:
        with session() as s:
            _tenant(s, "cred", country="FR")
            subscriptions.create(
                s, "cred", "pro", coupon="half", start=datetime(2026, 9, 1, tzinfo=UTC)
            )
            ledger.add_credit(s, "cred", 1000, "EUR")  # 10.00 prepaid
        clock.set_now(datetime(2026, 11, 2, tzinfo=UTC))
        billing.run("2026-10", url=store_url)
        with session() as s:
            inv = invoices.list_invoices(s, "cred")[0]
            inv = invoices.issue(s, str(inv.id))
            # 49.00 - 24.50 (half, once) = 24.50; VAT 20% = 4.90; 29.40 - 10.00 credit = 19.40
            assert (inv.subtotal_minor, inv.discount_minor, inv.tax_minor) == (4900, 2450, 490)
            assert (inv.credit_minor, inv.total_minor) == (1000, 1940)
            assert ledger.balance(s, inv.tenant_id, "EUR") == 1940
    finally:
        clock.set_now(None)


def test_failed_tenant_is_recorded_others_carry_on_then_retry(
    october: str, session: Opener
) -> None:
    from mno.billing import documents
    from mno.store.models.billing import UsageEvent

    with session() as s:
        documents.apply_text(
            s,
            "kind: Plan\nmetadata: {name: capped}\nspec:\n  currency: EUR\n  charges:\n"
            "    - kind: usage\n      metric: api_calls\n      model: volume\n"
            '      tiers: [{up_to: 100, unit_price: "1"}]\n',
        )
        _tenant(s, "over")
        subscriptions.create(s, "over", "capped", start=datetime(2026, 9, 1, tzinfo=UTC))
        usage.record(s, "over", "api_calls", Decimal(500), at=datetime(2026, 10, 3, tzinfo=UTC))
    result = billing.run("2026-10", url=october)
    assert result.invoices == 2
    assert [f["tenant"] for f in result.failed] == ["over"]
    assert "above the last tier" in result.failed[0]["reason"]
    with session() as s:
        s.execute(
            sa.update(UsageEvent.__table__)
            .values(quantity=50)
            .where(UsageEvent.__table__.c.quantity == 500)
        )
    retried = billing.retry_failed(result.run_id, url=october)
    assert retried.invoices == 1 and not retried.failed
    with session(write=False) as s:
        assert invoices.list_invoices(s, "over")[0].total_minor == 5000


def test_a_run_that_loses_its_lock_stops(october: str, session: Opener) -> None:
    from mno.store.models.core import LeaseLock

    def steal(done: int, total: int) -> None:
        with session() as s:
            s.execute(
                sa.update(LeaseLock.__table__).values(owner="elsewhere:1:x")  # type: ignore[attr-defined]
            )

    billing.CHUNK, old = 1, billing.CHUNK
    try:
        with pytest.raises(Conflict, match="lost its lock"):
            billing.run("2026-10", url=october, on_progress=steal)
    finally:
        billing.CHUNK = old
    # the first chunk committed; the second was rolled back with the failed renewal
    assert len([r for r in _snapshot(october) if len(r) == 3]) == 1
