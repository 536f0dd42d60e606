"""A run bills only periods that have closed in each tenant's timezone; without a period
it bills the last month closed everywhere, as the biller does."""

from __future__ import annotations

import json
from collections.abc import Callable
from contextlib import AbstractContextManager
from datetime import UTC, datetime
from typing import Any

import pytest
import sqlalchemy as sa

from mno import clock
from mno.agents import biller
from mno.billing import documents, invoices, subscriptions
from mno.billing import run as billing
from mno.errors import Conflict
from mno.store.db import session_scope
from mno.store.models.billing import BillingRun
from mno.tenancy import tenants
from tests.billing.conftest import CATALOGUE

Opener = Callable[..., AbstractContextManager[Any]]

# October 2026 closes at local midnight on November 1st:
#   Pacific/Kiritimati (UTC+14) at 2026-10-31T10:00Z, UTC at 2026-11-01T00:00Z,
#   Pacific/Pago_Pago (UTC-11) at 2026-11-01T11:00Z.
ZONES = {"kiri": "Pacific/Kiritimati", "utc": "UTC", "pago": "Pacific/Pago_Pago"}


def _three(url: str) -> None:
    clock.set_now(datetime(2026, 10, 20, tzinfo=UTC))
    with session_scope(url) as s:
        documents.apply_text(s, CATALOGUE)
        for key, tz in ZONES.items():
            tenants.create(s, key, timezone=tz)
            subscriptions.create(s, key, "pro", start=datetime(2026, 9, 1, tzinfo=UTC))


def _invoiced(s: Any) -> list[str]:
    return sorted(k for k in ZONES if invoices.list_invoices(s, k, period="2026-10"))


def test_tenants_whose_month_is_open_are_skipped_with_when_it_closes(
    store_url: str, session: Opener
) -> None:
    _three(store_url)
    # closed in Kiritimati only: UTC and Pago Pago wait
    clock.set_now(datetime(2026, 10, 31, 12, tzinfo=UTC))
    r = billing.run("2026-10", url=store_url)
    assert (r.invoices, r.refused) == (1, False)
    assert r.not_closed == [
        {"tenant": "pago", "closes_at": "2026-11-01T11:00:00Z"},
        {"tenant": "utc", "closes_at": "2026-11-01T00:00:00Z"},
    ]
    with session(write=False) as s:
        assert _invoiced(s) == ["kiri"]
    # an hour after UTC's midnight: Pago Pago still waits
    clock.set_now(datetime(2026, 11, 1, 1, tzinfo=UTC))
    r = billing.run("2026-10", url=store_url)
    assert r.invoices == 1
    assert r.not_closed == [{"tenant": "pago", "closes_at": "2026-11-01T11:00:00Z"}]
    # at Pago Pago's midnight the month is closed there too
    clock.set_now(datetime(2026, 11, 1, 11, tzinfo=UTC))
    r = billing.run("2026-10", url=store_url)
    assert (r.invoices, r.not_closed) == (1, [])
    with session(write=False) as s:
        assert _invoiced(s) == ["kiri", "pago", "utc"]


def test_a_run_that_can_bill_no_tenant_is_refused_and_writes_nothing(
    store_url: str, session: Opener
) -> None:
    _three(store_url)
    clock.set_now(datetime(2026, 10, 31, 9, tzinfo=UTC))  # an hour before Kiritimati
    r = billing.run("2026-10", url=store_url)
    assert r.refused and r.invoices == 0 and r.run_id is None
    assert [x["tenant"] for x in r.not_closed] == ["kiri", "pago", "utc"]
    with session(write=False) as s:
        assert s.execute(sa.select(sa.func.count()).select_from(BillingRun)).scalar() == 0
        assert _invoiced(s) == []


def test_a_period_closed_nowhere_without_tenants_is_refused(store_url: str) -> None:
    clock.set_now(datetime(2026, 10, 31, 9, tzinfo=UTC))
    with pytest.raises(Conflict, match="2026-10-31T10:00:00Z"):
        billing.run("2026-10", url=store_url)


def test_cli_future_period_exits_1_with_when_it_closes(cli: Any, sqlite_url: str) -> None:
    _three(sqlite_url)
    clock.set_now(None)
    r = cli("billing", "run", "--period", "2030-01", "-o", "json")
    assert r.exit_code == 1, (r.stdout, r.stderr)
    out = json.loads(r.stdout)
    assert out["invoices"] == 0 and out["run"] is None
    assert out["not_closed"] == [
        {"tenant": "kiri", "closes_at": "2030-01-31T10:00:00Z"},
        {"tenant": "pago", "closes_at": "2030-02-01T11:00:00Z"},
        {"tenant": "utc", "closes_at": "2030-02-01T00:00:00Z"},
    ]
    table = cli("billing", "run", "--period", "2030-01")
    assert table.exit_code == 1
    assert "2030-02-01 11:00" in table.stdout or "2030-02-01T11:00:00Z" in table.stdout
    # a partial run exits 0 and lists the tenants it left
    clock.set_now(datetime(2026, 11, 1, 1, tzinfo=UTC))
    out = cli.json("billing", "run", "--period", "2026-10")
    assert out["invoices"] == 2
    assert out["not_closed"] == [{"tenant": "pago", "closes_at": "2026-11-01T11:00:00Z"}]


def test_without_period_the_run_bills_the_month_the_biller_bills(cli: Any, sqlite_url: str) -> None:
    _three(sqlite_url)
    # 12:00Z on November 1st: October is still open at UTC-12 (plus the grace hour), so
    # the last month closed everywhere is September; at 13:00Z it is October
    clock.set_now(datetime(2026, 11, 1, 12, tzinfo=UTC))
    assert billing.default_period() == biller.due_period(clock.now(), 1) == "2026-09"
    assert cli.json("billing", "run")["period"] == "2026-09"
    clock.set_now(datetime(2026, 11, 1, 13, tzinfo=UTC))
    assert billing.default_period() == biller.due_period(clock.now(), 1) == "2026-10"
    out = cli.json("billing", "run")
    assert (out["period"], out["invoices"], out["not_closed"]) == ("2026-10", 3, [])
