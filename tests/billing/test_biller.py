"""The biller agent bills the closed period once, and flags arrears."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from datetime import UTC, datetime, timedelta
from typing import Any

from mno import clock
from mno.agents import biller
from mno.agents.base import TickContext
from mno.billing import invoices

Opener = Callable[..., AbstractContextManager[Any]]


def test_due_period_waits_for_the_last_timezone() -> None:
    assert biller.due_period(datetime(2026, 11, 1, 12, tzinfo=UTC), 1) == "2026-09"
    assert biller.due_period(datetime(2026, 11, 1, 13, 30, tzinfo=UTC), 1) == "2026-10"
    assert biller.due_period(datetime(2027, 1, 2, tzinfo=UTC), 1) == "2026-12"


def test_tick_bills_once_then_flags_arrears(
    store_url: str, session: Opener, catalogue: None
) -> None:
    from mno.billing import subscriptions
    from mno.tenancy import tenants

    clock.set_now(datetime(2026, 10, 10, tzinfo=UTC))
    try:
        with session() as s:
            tenants.create(s, "acme", country="FR")
            subscriptions.create(s, "acme", "pro", start=datetime(2026, 9, 1, tzinfo=UTC))
        clock.set_now(datetime(2026, 11, 2, tzinfo=UTC))
        ctx = TickContext(agent="biller", db_url=store_url)
        first = biller.tick(ctx)
        assert first.details["period"] == "2026-10" and first.done == 1
        assert biller.tick(ctx).done == 0
        with session() as s:
            inv = invoices.list_invoices(s, "acme")[0]
            invoices.issue(s, str(inv.id), due_days=10)
        clock.set_now(datetime(2026, 11, 2, tzinfo=UTC) + timedelta(days=40))
        assert biller.tick(ctx).details["overdue"] == 1
        with session(write=False) as s:
            assert tenants.get(s, "acme").in_arrears is True
    finally:
        clock.set_now(None)
