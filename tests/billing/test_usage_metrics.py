"""Metric aggregations computed in SQL (unique_count, latest) and bucket rollover between
runs, on SQLite and PostgreSQL. Golden amounts are computed by hand in the comments."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from mno import clock
from mno.billing import credit_notes, documents, invoices, subscriptions, usage
from mno.billing import run as billing
from mno.tenancy import tenants

Opener = Callable[..., AbstractContextManager[Any]]

CATALOGUE = """
kind: Metric
metadata: {name: active_users}
spec: {aggregation: unique_count, field: user}
---
kind: Metric
metadata: {name: requests}
spec: {aggregation: unique_count}
---
kind: Metric
metadata: {name: seats}
spec: {aggregation: latest}
---
kind: Metric
metadata: {name: support_hours}
spec: {aggregation: sum}
---
kind: Plan
metadata: {name: metered}
spec:
  currency: EUR
  charges:
    - {kind: usage, metric: active_users, model: per_unit, unit_price: "2.00"}
    - {kind: usage, metric: seats, model: per_unit, unit_price: "5.00"}
    - {kind: usage, metric: requests, model: per_unit, unit_price: "0.50"}
    - {kind: usage, metric: seats, aggregation: max, model: per_unit, unit_price: "1.00"}
---
kind: Plan
metadata: {name: support}
spec:
  currency: EUR
  charges:
    - {kind: bucket, metric: support_hours, included: "10", rollover_cap: "5",
       overage_price: "30.00"}
"""


def _at(month: int, day: int, hour: int = 12) -> datetime:
    return datetime(2026, month, day, hour, tzinfo=UTC)


def test_unique_count_and_latest(store_url: str, session: Opener) -> None:
    clock.set_now(_at(9, 15))
    with session() as s:
        documents.apply_text(s, CATALOGUE)
        tenants.create(s, "acme")
        subscriptions.create(s, "acme", "metered", start=_at(9, 1, 0))
        rec = usage.record
        rec(s, "acme", "active_users", Decimal(1), at=_at(9, 30, 23), properties={"user": "z"})
        rec(s, "acme", "active_users", Decimal(1), at=_at(10, 2), properties={"user": "a"})
        rec(s, "acme", "active_users", Decimal(1), at=_at(10, 3), properties={"user": "b"})
        rec(s, "acme", "active_users", Decimal(1), at=_at(10, 4), properties={"user": "a"})
        rec(s, "acme", "active_users", Decimal(1), at=_at(10, 5))  # no user: not counted
        rec(s, "acme", "active_users", Decimal(1), at=_at(11, 1, 0), properties={"user": "c"})
        rec(s, "acme", "seats", Decimal(3), at=_at(10, 2))
        rec(s, "acme", "seats", Decimal(7), at=_at(10, 20))
        rec(s, "acme", "seats", Decimal(4), at=_at(10, 31, 23))
        rec(s, "acme", "seats", Decimal(9), at=_at(11, 1, 1))  # November
        # distinct usage ids; an event without one counts on its own
        rec(s, "acme", "requests", Decimal(1), at=_at(10, 6), idempotency_key="r1")
        rec(s, "acme", "requests", Decimal(1), at=_at(10, 7), idempotency_key="r2")
        rec(s, "acme", "requests", Decimal(1), at=_at(10, 8))
    clock.set_now(_at(11, 2))
    billing.run("2026-10", url=store_url)
    with session(write=False) as s:
        inv = invoices.list_invoices(s, "acme")[0]
        by_ref = {ln.charge_ref: ln for ln in invoices.lines(s, inv)}
        # users a and b: 2 x 2.00; the last seats value 4 x 5.00; 3 requests x 0.50;
        # the largest seats value 7 x 1.00 (the charge overrides the metric's aggregation)
        assert [by_ref[str(i)].quantity for i in range(4)] == ["2", "4", "3", "7"]
        assert [by_ref[str(i)].amount_minor for i in range(4)] == [400, 2000, 150, 700]
        assert inv.subtotal_minor == 3250


def test_bucket_rollover_carries_between_runs(store_url: str, session: Opener) -> None:
    clock.set_now(_at(9, 1))
    with session() as s:
        documents.apply_text(s, CATALOGUE)
        tenants.create(s, "help")
        subscriptions.create(s, "help", "support", start=_at(9, 1, 0))
        for month, hours in ((9, 4), (10, 17), (11, 7), (12, 14)):
            usage.record(s, "help", "support_hours", Decimal(hours), at=_at(month, 10))
    for period, closed in (
        ("2026-09", _at(10, 2)),
        ("2026-10", _at(11, 2)),
        ("2026-11", _at(12, 2)),
        ("2026-12", datetime(2027, 1, 2, tzinfo=UTC)),
    ):
        clock.set_now(closed)
        billing.run(period, url=store_url)

    def bucket(period: str) -> tuple[int, dict[str, Any]]:
        with session(write=False) as s:
            inv = invoices.list_invoices(s, "help", period=period)[0]
            (line,) = invoices.lines(s, inv)
            return inv.total_minor, line.detail

    # September: 4 of 10 used, 6 unused, 5 (the cap) roll over
    total, d = bucket("2026-09")
    assert (total, d["rollover_in"], d["rollover_out"]) == (0, "0", "5")
    # October: 17 used = 5 rolled over + 10 included + 2 over at 30.00
    total, d = bucket("2026-10")
    assert (total, d["rollover_in"], d["rollover_out"]) == (6000, "5", "0")
    # November: 7 of 10 used, 3 roll over
    total, d = bucket("2026-11")
    assert (total, d["rollover_in"], d["rollover_out"]) == (0, "0", "3")
    # December: 14 used = 3 rolled over + 10 included + 1 over
    total, d = bucket("2026-12")
    assert (total, d["rollover_in"], d["rollover_out"]) == (3000, "3", "0")
    assert billing.run("2026-12", url=store_url).invoices == 0
    # the rollover is stored with November's line: voiding December's draft and billing
    # it again gives the same answer
    with session() as s:
        credit_notes.void(s, str(invoices.list_invoices(s, "help", period="2026-12")[0].id))
    assert billing.run("2026-12", url=store_url).invoices == 1
    assert bucket("2026-12")[0] == 3000


def test_imported_properties_feed_unique_count(
    store_url: str, session: Opener, tmp_path: Any
) -> None:
    clock.set_now(_at(9, 15))
    csv = tmp_path / "u.csv"
    csv.write_text(
        "tenant,metric,quantity,at,prop.user\n"
        "acme,active_users,1,2026-10-02T00:00:00Z,a\n"
        "acme,active_users,1,2026-10-03T00:00:00Z,b\n"
        "acme,active_users,1,2026-10-04T00:00:00Z,a\n"
    )
    jsonl = tmp_path / "u.jsonl"
    jsonl.write_text(
        '{"tenant": "acme", "metric": "active_users", "quantity": "1", '
        '"at": "2026-10-05T00:00:00Z", "properties": {"user": "c"}}\n'
    )
    with session() as s:
        documents.apply_text(s, CATALOGUE)
        tenants.create(s, "acme")
        subscriptions.create(s, "acme", "metered", start=_at(9, 1, 0))
        assert usage.import_file(s, csv) == 3
        assert usage.import_file(s, jsonl) == 1
    clock.set_now(_at(11, 2))
    billing.run("2026-10", url=store_url)
    with session(write=False) as s:
        inv = invoices.list_invoices(s, "acme")[0]
        users = next(ln for ln in invoices.lines(s, inv) if ln.charge_ref == "0")
        assert (users.quantity, users.amount_minor) == ("3", 600)  # a, b and c at 2.00
