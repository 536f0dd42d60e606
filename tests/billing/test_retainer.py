"""A bucket (retainer) plan bills its recurring fee each period, in advance or in arrears
as configured, beside the overage; unused hours roll over up to the cap."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from mno import clock
from mno.billing import documents, invoices, subscriptions, usage
from mno.billing import run as billing
from mno.tenancy import tenants

Opener = Callable[..., AbstractContextManager[Any]]

RETAINERS = """
kind: Metric
metadata: {name: support_hours}
spec: {aggregation: sum}
---
kind: Plan
metadata: {name: retainer}
spec:
  currency: EUR
  charges:
    - {kind: bucket, metric: support_hours, amount: "500.00", timing: advance,
       included: "10", rollover_cap: "5", overage_price: "80.00"}
---
kind: Plan
metadata: {name: retainer-arrears}
spec:
  currency: EUR
  charges:
    - {kind: bucket, metric: support_hours, amount: "500.00", timing: arrears,
       included: "10", rollover_cap: "5", overage_price: "80.00"}
"""


def _at(month: int, day: int, hour: int = 0) -> datetime:
    return datetime(2026, month, day, hour, tzinfo=UTC)


def _invoice(s: Any, key: str, period: str) -> tuple[int, list[tuple[str, int]]]:
    (inv,) = invoices.list_invoices(s, key, period=period)
    lines = sorted(
        (ln.description.split(" 2026")[0], ln.amount_minor) for ln in invoices.lines(s, inv)
    )
    return inv.total_minor, lines


def test_retainer_fee_and_rollover_over_two_months(store_url: str, session: Opener) -> None:
    """Golden, both tenants from October 1st (UTC), no tax: 500.00 a month for 10 hours,
    unused hours roll over up to 5, each hour beyond at 80.00. 3 hours used in October,
    17 in November.

    October: 3 of 10 used, 7 unused, 5 (the cap) roll over; no overage.
    November: 17 = 5 rolled over + 10 included + 2 over: 2 x 80.00 = 160.00.

    In advance ("retainer"): the 2026-10 run bills October's fee (the first period) and
    November's: 500.00 + 500.00 + 0.00 = 1000.00; the 2026-11 run bills December's fee
    and November's overage: 500.00 + 160.00 = 660.00.
    In arrears ("retainer-arrears"): October 500.00 + 0.00 = 500.00; November
    500.00 + 160.00 = 660.00."""
    clock.set_now(_at(9, 20))
    with session() as s:
        documents.apply_text(s, RETAINERS)
        for key, plan in (("adv", "retainer"), ("arr", "retainer-arrears")):
            tenants.create(s, key)
            subscriptions.create(s, key, plan, start=_at(10, 1))
            usage.record(s, key, "support_hours", Decimal(3), at=_at(10, 10))
            usage.record(s, key, "support_hours", Decimal(17), at=_at(11, 10))
    clock.set_now(_at(11, 2))
    billing.run("2026-10", url=store_url)
    clock.set_now(_at(12, 2))
    billing.run("2026-11", url=store_url)
    with session(write=False) as s:
        assert _invoice(s, "adv", "2026-10") == (
            100000,
            [
                ("retainer bucket", 0),
                ("retainer bucket fee", 50000),
                ("retainer bucket fee", 50000),
            ],
        )
        assert _invoice(s, "adv", "2026-11") == (
            66000,
            [("retainer bucket", 16000), ("retainer bucket fee", 50000)],
        )
        assert _invoice(s, "arr", "2026-10") == (
            50000,
            [("retainer-arrears bucket", 0), ("retainer-arrears bucket fee", 50000)],
        )
        assert _invoice(s, "arr", "2026-11") == (
            66000,
            [("retainer-arrears bucket", 16000), ("retainer-arrears bucket fee", 50000)],
        )
        (inv,) = invoices.list_invoices(s, "adv", period="2026-11")
        (bucket,) = [ln for ln in invoices.lines(s, inv) if ln.kind == "bucket"]
        assert (bucket.detail["rollover_in"], bucket.detail["rollover_out"]) == ("5", "0")
    # a rerun bills nothing twice
    assert billing.run("2026-11", url=store_url).invoices == 0


def test_invoice_now_bills_the_first_fee_once(store_url: str, session: Opener) -> None:
    """Subscribed on October 16th (UTC) with ``--invoice-now``: 16 of October's 31 days of
    500.00 = 258.064.. -> 258.06 at once; the 2026-10 run then bills November's fee
    (500.00) and October's overage (none), not October's fee again."""
    clock.set_now(_at(10, 16))
    with session() as s:
        documents.apply_text(s, RETAINERS)
        tenants.create(s, "now")
        sub = subscriptions.create(s, "now", "retainer", start=_at(10, 16), invoice_now=True)
        first = subscriptions.first_invoice(s, sub)
        assert first is not None and first.total_minor == 25806
    clock.set_now(_at(11, 2))
    billing.run("2026-10", url=store_url)
    with session(write=False) as s:
        assert _invoice(s, "now", "2026-10") == (
            50000,
            [("retainer bucket", 0), ("retainer bucket fee", 50000)],
        )
