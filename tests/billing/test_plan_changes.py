"""Cancel and change plan now or at period end: golden figures computed by hand."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest

from mno import clock
from mno.billing import documents, invoices, ledger, subscriptions
from mno.billing import run as billing
from mno.errors import InvalidTransition
from mno.tenancy import tenants

Opener = Callable[..., AbstractContextManager[Any]]

MAX = """
kind: Plan
metadata: {name: max}
spec:
  currency: EUR
  interval: {unit: month, every: 1}
  charges:
    - {kind: fixed, amount: "90.00", timing: advance}
"""


@pytest.fixture
def paris(store_url: str, session: Opener, catalogue: None) -> str:
    """acme (Europe/Paris, no tax) on pro (49.00 EUR a month in advance) since September."""
    with session() as s:
        documents.apply_text(s, MAX)
        tenants.create(s, "acme", timezone="Europe/Paris")
        sub = subscriptions.create(s, "acme", "pro", start=datetime(2026, 9, 1, tzinfo=UTC))
        sid = str(sub.id)
    yield sid
    clock.set_now(None)


def _fixed(s: Any, key: str) -> list[int]:
    out = []
    for inv in invoices.list_invoices(s, key):
        out += [ln.amount_minor for ln in invoices.lines(s, inv) if ln.kind == "fixed"]
    return sorted(out)


def _credits(s: Any, key: str) -> list[int]:
    return [c.amount_minor for c in ledger.list_credits(s, key)]


def test_cancel_now_credits_the_unused_days_of_november(
    paris: str, store_url: str, session: Opener
) -> None:
    clock.set_now(datetime(2026, 11, 2, tzinfo=UTC))
    billing.run("2026-10", url=store_url)  # November's 49.00 in advance
    clock.set_now(datetime(2026, 11, 10, 12, tzinfo=UTC))  # 13:00 on the 10th in Paris
    with session() as s:
        sub = subscriptions.cancel(s, paris)
        assert sub.status == "canceled"
    with session(write=False) as s:
        # 9 of November's 30 days used: 49.00 * 9 / 30 = 14.70 due, 34.30 back
        assert _credits(s, "acme") == [3430]
        assert _fixed(s, "acme") == [4900]
    clock.set_now(datetime(2026, 12, 2, tzinfo=UTC))
    billing.run("2026-11", url=store_url)
    with session(write=False) as s:
        assert _fixed(s, "acme") == [4900]  # nothing more for a canceled subscription


def test_change_plan_now_in_february_credits_and_bills_the_rest(
    paris: str, store_url: str, session: Opener
) -> None:
    clock.set_now(datetime(2027, 2, 2, tzinfo=UTC))
    billing.run("2027-01", url=store_url)  # February's 49.00 in advance
    clock.set_now(datetime(2027, 2, 8, 10, tzinfo=UTC))  # 11:00 on the 8th in Paris
    with session() as s:
        new = subscriptions.change_plan(s, paris, "max")
        assert new.plan_code == "max" and subscriptions.get(s, paris).status == "canceled"
        inv = subscriptions.first_invoice(s, new)
        assert inv is not None
        inv_id = str(inv.id)
    with session(write=False) as s:
        # old: 7 of 28 days used, 49.00 * 7 / 28 = 12.25 due, 36.75 back
        assert _credits(s, "acme") == [3675]
        # new: 21 of 28 days, 90.00 * 21 / 28 = 67.50
        assert _fixed(s, "acme") == [4900, 6750]
    with session() as s:
        issued = invoices.issue(s, inv_id)
        assert (issued.credit_minor, issued.total_minor) == (3675, 6750 - 3675)
    clock.set_now(datetime(2027, 3, 2, tzinfo=UTC))
    billing.run("2027-02", url=store_url)
    with session(write=False) as s:
        # March in advance on max only; February is not billed twice
        assert _fixed(s, "acme") == [4900, 6750, 9000]


def test_at_period_end_takes_effect_at_the_boundary_without_proration(
    paris: str, store_url: str, session: Opener
) -> None:
    clock.set_now(datetime(2026, 11, 2, tzinfo=UTC))
    billing.run("2026-10", url=store_url)
    clock.set_now(datetime(2026, 11, 10, 12, tzinfo=UTC))
    with session() as s:
        new = subscriptions.change_plan(s, paris, "max", at_period_end=True)
        old = subscriptions.get(s, paris)
        # midnight on December 1st in Paris
        assert old.cancel_at == new.started_at == datetime(2026, 11, 30, 23, tzinfo=UTC)
        assert old.status == "active"
        assert subscriptions.first_invoice(s, new) is None
    clock.set_now(datetime(2026, 12, 2, tzinfo=UTC))
    billing.run("2026-11", url=store_url)
    with session(write=False) as s:
        assert _credits(s, "acme") == []
        assert _fixed(s, "acme") == [4900, 9000]  # December whole on max


def test_cancel_at_period_end_keeps_the_period_paid(
    paris: str, store_url: str, session: Opener
) -> None:
    clock.set_now(datetime(2026, 11, 2, tzinfo=UTC))
    billing.run("2026-10", url=store_url)
    with session() as s:
        sub = subscriptions.cancel(s, paris, at_period_end=True)
        assert sub.cancel_at == datetime(2026, 11, 30, 23, tzinfo=UTC)
    clock.set_now(datetime(2026, 12, 2, tzinfo=UTC))
    billing.run("2026-11", url=store_url)
    with session(write=False) as s:
        assert _credits(s, "acme") == [] and _fixed(s, "acme") == [4900]


def test_cli_flags_exclude_each_other(cli: Any, sqlite_url: str) -> None:
    r = cli("subscription", "cancel", "x", "--now", "--at-period-end")
    assert r.exit_code == 2 and "Error: give one of" in r.output


TRIAL = """
kind: Plan
metadata: {name: try}
spec:
  currency: EUR
  interval: {unit: month, every: 1}
  trial_days: 14
  charges:
    - {kind: fixed, amount: "30.00", timing: advance}
"""


@pytest.fixture
def trial(store_url: str, session: Opener, catalogue: None) -> str:
    """bob (UTC) on a 14-day trial from October 1st: the trial ends on October 15th."""
    clock.set_now(datetime(2026, 10, 1, tzinfo=UTC))
    with session() as s:
        documents.apply_text(s, TRIAL)
        tenants.create(s, "bob")
        sub = subscriptions.create(
            s, "bob", "try", start=datetime(2026, 10, 1, tzinfo=UTC), invoice_now=True
        )
        assert sub.status == "trialing"
        assert sub.trial_ends_at == datetime(2026, 10, 15, tzinfo=UTC)
        assert subscriptions.first_invoice(s, sub) is None  # nothing due in a trial
        sid = str(sub.id)
    yield sid
    clock.set_now(None)


def test_trial_is_not_billed_and_the_first_period_starts_at_its_end(
    trial: str, store_url: str, session: Opener
) -> None:
    clock.set_now(datetime(2026, 11, 2, tzinfo=UTC))
    billing.run("2026-10", url=store_url)
    with session(write=False) as s:
        assert subscriptions.get(s, trial).status == "active"
        # October 15th to 31st: 30.00 * 17 / 31 = 16.4516... -> 16.45; November whole
        assert _fixed(s, "bob") == [1645, 3000]
        lines = [ln for inv in invoices.list_invoices(s, "bob") for ln in invoices.lines(s, inv)]
        first = min(lines, key=lambda ln: ln.amount_minor)
        assert first.proration == str(Decimal(17) / Decimal(31))


def test_cancel_in_a_trial_ends_it_at_once_with_nothing_billed(
    trial: str, store_url: str, session: Opener
) -> None:
    clock.set_now(datetime(2026, 10, 5, tzinfo=UTC))
    with session() as s:
        sub = subscriptions.cancel(s, trial, at_period_end=True)
        assert sub.cancel_at == datetime(2026, 10, 15, tzinfo=UTC)
    clock.set_now(datetime(2026, 11, 2, tzinfo=UTC))
    billing.run("2026-10", url=store_url)
    with session(write=False) as s:
        assert _fixed(s, "bob") == [] and _credits(s, "bob") == []


SETUP = """
kind: Plan
metadata: {name: setup}
spec:
  currency: EUR
  interval: {unit: month, every: 1}
  setup_fee: "15.00"
  charges:
    - {kind: fixed, amount: "20.00", timing: advance}
"""


def _lines(s: Any, key: str) -> list[tuple[str, int]]:
    return sorted(
        (ln.kind, ln.amount_minor)
        for inv in invoices.list_invoices(s, key)
        for ln in invoices.lines(s, inv)
    )


@pytest.mark.parametrize("invoice_now", [False, True])
def test_setup_fee_is_billed_once_on_the_first_invoice(
    invoice_now: bool, store_url: str, session: Opener, catalogue: None
) -> None:
    clock.set_now(datetime(2026, 10, 10, tzinfo=UTC))
    with session() as s:
        documents.apply_text(s, SETUP)
        tenants.create(s, "cid")
        sub = subscriptions.create(s, "cid", "setup", invoice_now=invoice_now)
        setup_key = f"{sub.id}|setup"
        if invoice_now:
            first = subscriptions.first_invoice(s, sub)
            assert first is not None
            # October 10th to 31st: 20.00 * 22 / 31 = 14.1935... -> 14.19, plus 15.00 setup
            assert first.total_minor == 1419 + 1500
    try:
        for period, now in (
            ("2026-10", datetime(2026, 11, 2, tzinfo=UTC)),
            ("2026-11", datetime(2026, 12, 2, tzinfo=UTC)),
        ):
            clock.set_now(now)
            billing.run(period, url=store_url)
            billing.run(period, url=store_url)  # a rerun adds nothing
    finally:
        clock.set_now(None)
    with session(write=False) as s:
        assert _lines(s, "cid") == [
            ("fixed", 1419),
            ("fixed", 2000),
            ("fixed", 2000),
            ("setup", 1500),
        ]
        keys = [
            ln.line_key
            for inv in invoices.list_invoices(s, "cid")
            for ln in invoices.lines(s, inv)
            if ln.kind == "setup"
        ]
        assert keys == [setup_key]


SUPPORT = """
kind: Metric
metadata: {name: support_minutes}
spec: {aggregation: sum}
---
kind: Plan
metadata: {name: support}
spec:
  currency: EUR
  interval: {unit: month, every: 1}
  charges:
    - {kind: time, metric: support_minutes, rate: "90.00", minimum: 15, round_up_to: 15}
"""


def test_time_minimum_and_round_up_apply_to_each_entry(
    store_url: str, session: Opener, catalogue: None
) -> None:
    from mno.billing import usage

    with session() as s:
        documents.apply_text(s, SUPPORT)
        tenants.create(s, "dan")
        subscriptions.create(s, "dan", "support", start=datetime(2026, 9, 1, tzinfo=UTC))
        for day, minutes in ((3, 7), (9, 22), (17, 40), (30, 61)):
            usage.record(
                s,
                "dan",
                "support_minutes",
                Decimal(minutes),
                at=datetime(2026, 10, day, tzinfo=UTC),
            )
        usage.record(  # November's: not in October's run
            s, "dan", "support_minutes", Decimal(5), at=datetime(2026, 11, 1, tzinfo=UTC)
        )
    clock.set_now(datetime(2026, 11, 2, tzinfo=UTC))
    try:
        billing.run("2026-10", url=store_url)
    finally:
        clock.set_now(None)
    with session(write=False) as s:
        (inv,) = invoices.list_invoices(s, "dan")
        (ln,) = invoices.lines(s, inv)
        # 7 -> 15, 22 -> 30, 40 -> 45, 61 -> 75: 165 minutes = 2.75 h * 90.00 = 247.50
        # (the period total, 130 -> 135 minutes, would give 202.50)
        assert (ln.kind, ln.quantity, ln.amount_minor) == ("time", "165", 24750)


def test_bringing_a_cancellation_forward_credits_each_day_once(
    paris: str, store_url: str, session: Opener
) -> None:
    """December (31 days, 49.00 in advance) cancelled from the 21st (Paris), then now,
    on the 10th: the first credit is 49.00 - 49.00 * 20/31 (31.61) = 17.39, the second
    31.61 - 49.00 * 9/31 (14.23) = 17.38; 14.23 + 17.38 + 17.39 = 49.00."""
    clock.set_now(datetime(2026, 12, 2, tzinfo=UTC))
    billing.run("2026-10", url=store_url)  # November in advance
    billing.run("2026-11", url=store_url)  # December in advance
    clock.set_now(datetime(2026, 12, 10, 12, tzinfo=UTC))  # 13:00 on the 10th in Paris
    with session() as s:
        subscriptions.cancel(s, paris, at=datetime(2026, 12, 20, 23, tzinfo=UTC))
        with pytest.raises(InvalidTransition):
            subscriptions.cancel(s, paris, at=datetime(2026, 12, 25, tzinfo=UTC))
    with session() as s:
        subscriptions.cancel(s, paris)  # now: December's days 10 to 20 back
    with session(write=False) as s:
        assert sorted(_credits(s, "acme")) == [1738, 1739]
        assert _fixed(s, "acme") == [4900, 4900]


THIRDS = """
kind: Coupon
metadata: {name: thirds}
spec: {kind: percentage, value: "20", duration: repeating, periods: 2}
"""


def _on_pro_with(s: Any, docs: str, coupon: str, start: datetime) -> tuple[str, Any]:
    """acme (UTC) on pro with ``coupon`` from ``start``, its first period invoiced at once:
    the subscription id and that invoice."""
    documents.apply_text(s, docs)
    tenants.create(s, "acme")
    sub = subscriptions.create(s, "acme", "pro", coupon=coupon, start=start, invoice_now=True)
    first = subscriptions.first_invoice(s, sub)
    assert first is not None
    return str(sub.id), first


def test_a_coupon_already_used_does_not_come_back_with_a_plan_change(
    store_url: str, session: Opener, catalogue: None
) -> None:
    """acme (UTC) on pro with the once coupon half since November: November's 49.00 was
    billed at 24.50. Changing to max on 16 November credits only what was paid for the
    unused 15 of 30 days (24.50 * 15 / 30 = 12.25, not 24.50), and max's rest of November
    (90.00 * 15 / 30 = 45.00) has no discount: the once coupon is spent."""
    with session() as s:
        sid, first = _on_pro_with(s, MAX, "half", datetime(2026, 11, 1, tzinfo=UTC))
        assert (first.discount_minor, first.total_minor) == (2450, 2450)
    clock.set_now(datetime(2026, 11, 16, tzinfo=UTC))
    try:
        with session() as s:
            new = subscriptions.change_plan(s, sid, "max")
            assert new.coupon_code is None
            inv = subscriptions.first_invoice(s, new)
            assert inv is not None
            assert (inv.subtotal_minor, inv.discount_minor) == (4500, 0)
        with session(write=False) as s:
            assert _credits(s, "acme") == [1225]
    finally:
        clock.set_now(None)


def test_a_repeating_coupon_goes_on_with_the_periods_it_has_left(
    store_url: str, session: Opener, catalogue: None
) -> None:
    """A 20 % coupon for 2 periods: October's pro is billed at 39.20; a change to max on
    16 October takes the coupon along with one period left, so max's rest of October
    (90.00 * 16 / 31 = 46.45) gets 20 % off (9.29), and November's max (90.00) none."""
    with session() as s:
        sid, first = _on_pro_with(
            s, MAX + "---\n" + THIRDS, "thirds", datetime(2026, 10, 1, tzinfo=UTC)
        )
        assert first.discount_minor == 980
    clock.set_now(datetime(2026, 10, 16, tzinfo=UTC))
    try:
        with session() as s:
            new = subscriptions.change_plan(s, sid, "max")
            assert (new.coupon_code, new.coupon_periods_used) == ("thirds", 1)
            inv = subscriptions.first_invoice(s, new)
            assert inv is not None
            assert (inv.subtotal_minor, inv.discount_minor) == (4645, 929)
        with session(write=False) as s:
            # pro's unused 16 of 31 days, of the 39.20 paid: 39.20 - 49.00 * 15 / 31 * 0.8
            # = 39.20 - 18.97 = 20.23
            assert _credits(s, "acme") == [2023]
        clock.set_now(datetime(2026, 11, 2, tzinfo=UTC))
        billing.run("2026-10", url=store_url)
        with session(write=False) as s:
            nov = [i for i in invoices.list_invoices(s, "acme") if i.period == "2026-10"]
            assert [(i.subtotal_minor, i.discount_minor) for i in nov] == [(9000, 0)]
    finally:
        clock.set_now(None)
