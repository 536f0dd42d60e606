"""Cancelling a subscription: a credit for the prepaid days not used (or none, on request),
its scheduled plan changes cancelled with it, and no charge from it afterwards."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from mno import clock
from mno.billing import charges, documents, invoices, ledger, subscriptions
from mno.billing import run as billing
from mno.tenancy import tenants

Opener = Callable[..., AbstractContextManager[Any]]

PLANS = """
kind: Plan
metadata: {name: monthly}
spec:
  currency: EUR
  charges:
    - {kind: fixed, amount: "30.00", timing: advance}
---
kind: Plan
metadata: {name: big}
spec:
  currency: EUR
  charges:
    - {kind: fixed, amount: "90.00", timing: advance}
"""


def _at(month: int, day: int, hour: int = 0) -> datetime:
    return datetime(2026, month, day, hour, tzinfo=UTC)


def _credits(s: Any, key: str) -> list[int]:
    return [g.amount_minor for g in ledger.list_credits(s, key)]


def test_cancel_on_day_11_credits_20_00_drawn_by_the_next_invoice(
    store_url: str, session: Opener
) -> None:
    """Golden: 30.00 a month in advance for November (30 days), billed at once; cancelled
    at 00:00 on the 11th (UTC), so days 1 to 10 were used.

    Kept: 30.00 * 10/30 = 10.00 (a prorated charge is rounded half up to the cent, once,
    as every line is); credit: 30.00 - 10.00 = 20.00. The next invoice (a 25.00 one-off
    charge, no tax) draws it down: 25.00 - 20.00 = 5.00 to pay."""
    clock.set_now(_at(11, 1))
    with session() as s:
        documents.apply_text(s, PLANS)
        tenants.create(s, "acme")
        sub = subscriptions.create(s, "acme", "monthly", start=_at(11, 1), invoice_now=True)
        first = subscriptions.first_invoice(s, sub)
        assert first is not None and first.total_minor == 3000
        invoices.issue(s, str(first.id))
        sid = str(sub.id)
    clock.set_now(_at(11, 11))
    with session() as s:
        subscriptions.cancel(s, sid)
        assert _credits(s, "acme") == [2000]
        charges.add(s, "acme", Decimal("25.00"), "EUR", "migration help")
    clock.set_now(_at(12, 2))
    assert billing.run("2026-11", url=store_url).invoices == 1
    with session() as s:
        (inv,) = invoices.list_invoices(s, "acme", period="2026-11")
        # the cancelled subscription bills nothing more: only the one-off charge
        assert [ln.kind for ln in invoices.lines(s, inv)] == ["one_off"]
        inv = invoices.issue(s, str(inv.id))
        assert (inv.subtotal_minor, inv.credit_minor, inv.total_minor) == (2500, 2000, 500)


def test_no_credit_keeps_what_was_billed(store_url: str, session: Opener) -> None:
    clock.set_now(_at(11, 1))
    with session() as s:
        documents.apply_text(s, PLANS)
        tenants.create(s, "acme")
        sub = subscriptions.create(s, "acme", "monthly", start=_at(11, 1), invoice_now=True)
    clock.set_now(_at(11, 11))
    with session() as s:
        subscriptions.cancel(s, str(sub.id), credit=False)
        assert _credits(s, "acme") == []


def _scheduled(session: Opener, store_url: str) -> tuple[str, str]:
    """acme on monthly since September, November billed in advance, moved to big from
    December 1st (scheduled on November 10th): (old id, scheduled id)."""
    clock.set_now(_at(9, 1))
    with session() as s:
        documents.apply_text(s, PLANS)
        tenants.create(s, "acme")
        old = subscriptions.create(s, "acme", "monthly", start=_at(9, 1))
    clock.set_now(_at(11, 2))
    billing.run("2026-10", url=store_url)  # November's 30.00 in advance
    clock.set_now(_at(11, 10))
    with session() as s:
        new = subscriptions.change_plan(s, str(old.id), "big", at_period_end=True)
        assert new.started_at == _at(12, 1) and new.status == "active"
    return str(old.id), str(new.id)


def test_cancel_now_cancels_the_scheduled_plan_change(store_url: str, session: Opener) -> None:
    """Cancelled at 00:00 on November 16th: days 1 to 15 used, 30.00 * 15/30 = 15.00 kept,
    15.00 credited. December is billed for neither plan."""
    old, new = _scheduled(session, store_url)
    clock.set_now(_at(11, 16))
    with session() as s:
        subscriptions.cancel(s, old)
        dropped = subscriptions.get(s, new)
        assert dropped.status == "canceled" and dropped.cancel_at == _at(12, 1)
        assert _credits(s, "acme") == [1500]
    clock.set_now(_at(12, 2))
    assert billing.run("2026-11", url=store_url).invoices == 0
    clock.set_now(datetime(2027, 1, 2, tzinfo=UTC))
    assert billing.run("2026-12", url=store_url).invoices == 0


def test_cancel_at_period_end_drops_the_scheduled_change(store_url: str, session: Opener) -> None:
    old, new = _scheduled(session, store_url)
    with session() as s:
        sub = subscriptions.cancel(s, old, at_period_end=True)
        assert sub.cancel_at == _at(12, 1)
        assert subscriptions.get(s, new).status == "canceled"
        assert _credits(s, "acme") == []  # November was used to its end
    clock.set_now(_at(12, 2))
    assert billing.run("2026-11", url=store_url).invoices == 0


def test_invoiced_ahead_then_cancelled_before_its_start_is_credited_in_full(
    store_url: str, session: Opener
) -> None:
    """Subscribed on November 20th from December 1st with ``--invoice-now`` (December's
    30.00 billed at once), cancelled on the 25th before it started: 30.00 back, and no run
    bills it."""
    clock.set_now(_at(11, 20))
    with session() as s:
        documents.apply_text(s, PLANS)
        tenants.create(s, "acme")
        sub = subscriptions.create(s, "acme", "monthly", start=_at(12, 1), invoice_now=True)
        assert subscriptions.first_invoice(s, sub) is not None
    clock.set_now(_at(11, 25))
    with session() as s:
        subscriptions.cancel(s, str(sub.id))
        assert _credits(s, "acme") == [3000]
    clock.set_now(_at(12, 2))
    assert billing.run("2026-11", url=store_url).invoices == 0
    clock.set_now(datetime(2027, 1, 2, tzinfo=UTC))
    assert billing.run("2026-12", url=store_url).invoices == 0


def test_cli_no_credit(cli: Any, sqlite_url: str, tmp_path: Any) -> None:
    plans = tmp_path / "plans.yaml"
    plans.write_text(PLANS.split("---")[0])
    assert cli("billing", "plan", "create", "-f", plans).exit_code == 0
    assert cli("tenant", "create", "acme").exit_code == 0
    clock.set_now(_at(11, 1))
    sub = cli.json(
        "subscription",
        "create",
        "acme",
        "monthly",
        "--start",
        "2026-11-01T00:00:00Z",
        "--invoice-now",
    )
    clock.set_now(_at(11, 11))
    out = cli.json("subscription", "cancel", sub["id"], "--no-credit", "--yes")
    assert out["status"] == "canceled"
    assert cli.json("ledger", "credits", "acme") == []
