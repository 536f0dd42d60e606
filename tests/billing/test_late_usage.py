"""Usage that arrives for a period already invoiced: billed once on the tenant's next
invoice at the prices in force in that period, or refused (``billing.late_usage``)."""

from __future__ import annotations

import json
import threading
import uuid
from collections.abc import Callable
from contextlib import AbstractContextManager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from mno import clock, platform
from mno.billing import documents, invoices, subscriptions, usage
from mno.billing import run as billing
from mno.store.db import session_scope
from mno.store.models.billing import Invoice, InvoiceLine, UsageEvent
from mno.tenancy import tenants
from tests.access.conftest import acme, api, api_profile, app_key, basic  # noqa: F401
from tests.billing.conftest import CATALOGUE
from tests.conftest import counts

Opener = Callable[..., AbstractContextManager[Any]]

# version 2 of plan pro: the fixed fee and the second tier cost more
PRO_V2 = CATALOGUE.replace('"49.00"', '"59.00"').replace('"0.002"', '"0.005"')
OCT_20 = datetime(2026, 10, 20, 12, tzinfo=UTC)


def _at(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)  # type: ignore[misc]


def _reject(home: Path) -> None:
    (home / "platform.yaml").write_text("billing:\n  late_usage: reject\n")
    platform.clear_cache()


def _october_invoiced(url: str, *, change_plan: bool = False) -> None:
    """Tenant acme on pro v1 since September with 1500 calls on October 20th; October is
    billed on November 1st. With ``change_plan`` the tenant moves to pro v2 from
    November 1st (decided on October 20th)."""
    clock.set_now(_at(2026, 9, 1))
    with session_scope(url) as s:
        documents.apply_text(s, CATALOGUE)
        tenants.create(s, "acme", if_not_exists=True)
        sub = subscriptions.create(s, "acme", "pro", start=_at(2026, 9, 1))
        usage.record(s, "acme", "api_calls", 1500, at=OCT_20)
    if change_plan:
        clock.set_now(_at(2026, 10, 20))
        with session_scope(url) as s:
            assert documents.apply_text(s, PRO_V2)[1] == ("Plan", "pro", "versioned")
            subscriptions.change_plan(s, str(sub.id), "pro", at_period_end=True)
    clock.set_now(_at(2026, 11, 1, 2))
    assert billing.run("2026-10", url=url).invoices == 1


def _invoice(s: Any, period: str) -> tuple[Invoice, list[InvoiceLine]]:
    (inv,) = invoices.list_invoices(s, "acme", period=period)
    return inv, invoices.lines(s, inv)


def test_late_usage_goes_on_the_next_invoice_at_the_old_prices(
    store_url: str, session: Opener
) -> None:
    """Golden: pro v1 charges 49.00 a month in advance and api_calls graduated (the
    first 1000 free, then 0.002 up to 10000); pro v2 charges 59.00 and 0.005.

    October invoice (v1 usage, v2 in advance): 1500 calls -> 500 x 0.002 = 1.00, and
    November's fee on v2 = 59.00: 60.00.

    On November 10th 2000 more calls arrive for October 20th: October is invoiced, so
    they are late. November's invoice:
      November's 1200 calls on v2: 200 x 0.005          =  1.00
      December's fee on v2                              = 59.00
      late usage for 2026-10 on v1, counted from what October billed:
        3500 calls -> 2500 x 0.002 = 5.00, less the 1.00 billed = 4.00
      total                                             = 64.00
    (At v2's price the late calls would have cost 2500 x 0.005 - 1.00 = 11.50.)
    """
    _october_invoiced(store_url, change_plan=True)
    with session(write=False) as s:
        october, _ = _invoice(s, "2026-10")
        assert october.total_minor == 6000
    clock.set_now(_at(2026, 11, 10))
    with session() as s:
        usage.record(s, "acme", "api_calls", 1200, at=_at(2026, 11, 5))
        late, created = usage.record(s, "acme", "api_calls", 2000, at=OCT_20, idempotency_key="l1")
        assert created and late.late_period == "2026-10"
    clock.set_now(_at(2026, 12, 1, 2))
    r = billing.run("2026-11", url=store_url)
    assert (r.invoices, r.late_events, r.as_dict()["late_events"]) == (1, 1, 1)
    with session(write=False) as s:
        november, lines = _invoice(s, "2026-11")
        assert november.total_minor == 6400
        (late_line,) = [ln for ln in lines if ln.detail.get("late")]
        assert late_line.description.startswith("late usage for 2026-10: api_calls 2000")
        assert late_line.amount_minor == 400 and late_line.quantity == "2000"
        assert late_line.detail["plan_version"] == 1
        assert sorted(ln.amount_minor for ln in lines) == [100, 400, 5900]
        event = s.get(UsageEvent, late.id)
        assert event.late_invoice_id == november.id
        # October's invoice is untouched
        assert _invoice(s, "2026-10")[0].total_minor == 6000
    # a rerun of November, and the run after, bill nothing of it again
    again = billing.run("2026-11", url=store_url)
    assert (again.invoices, again.late_events) == (0, 0)
    clock.set_now(_at(2027, 1, 1, 2))
    december = billing.run("2026-12", url=store_url)
    assert december.late_events == 0
    with session(write=False) as s:
        _, lines = _invoice(s, "2026-12")
        assert not [ln for ln in lines if ln.detail.get("late")]


def test_late_usage_is_left_out_of_the_window_a_run_bills(store_url: str, session: Opener) -> None:
    """A late event is billed once, on its own line, even when a later run's usage
    window also covers its time (a weekly plan's week across the month's end)."""
    weekly = CATALOGUE.replace("{unit: month, every: 1}", "{unit: week, every: 1}")
    clock.set_now(_at(2026, 9, 1))
    with session() as s:
        documents.apply_text(s, weekly)
        tenants.create(s, "acme")
        subscriptions.create(s, "acme", "pro", start=_at(2026, 9, 7))  # a Monday
    clock.set_now(_at(2026, 11, 1, 2))
    assert billing.run("2026-10", url=store_url).invoices == 1
    # the week of Monday October 26th ends in November: the November run bills it; an
    # event on Friday October 30th recorded now is late for October all the same
    with session() as s:
        event, _ = usage.record(s, "acme", "api_calls", 1500, at=_at(2026, 10, 30))
        assert event.late_period == "2026-10"
    clock.set_now(_at(2026, 12, 1, 2))
    r = billing.run("2026-11", url=store_url)
    assert r.late_events == 1
    with session(write=False) as s:
        _, lines = _invoice(s, "2026-11")
        usage_lines = [ln for ln in lines if ln.kind == "usage"]
        billed = sum(int(ln.quantity) for ln in usage_lines if not ln.detail.get("late"))
        late = [ln for ln in usage_lines if ln.detail.get("late")]
        assert billed == 0  # the week's own line did not count it
        assert [ln.quantity for ln in late] == ["1500"]
        assert late[0].amount_minor == 100  # 500 x 0.002


def test_usage_import_with_late_rows_bills_them_on_the_next_invoice(
    store_url: str, session: Opener, cli: Any, tmp_path: Path
) -> None:
    _october_invoiced(store_url)
    clock.set_now(_at(2026, 11, 10))
    rows = tmp_path / "u.jsonl"
    rows.write_text(
        json.dumps(
            {
                "tenant": "acme",
                "metric": "api_calls",
                "quantity": 9000,
                "at": "2026-11-03T00:00:00Z",
            }
        )
        + "\n"
        + json.dumps(
            {"tenant": "acme", "metric": "api_calls", "quantity": 500, "at": "2026-10-31T23:00:00Z"}
        )
        + "\n"
    )
    assert cli.json("usage", "import", rows) == {"imported": 2}
    with session(write=False) as s:
        periods = s.execute(sa.select(UsageEvent.late_period).order_by(UsageEvent.at)).scalars()
        assert list(periods) == [None, "2026-10", None]
    clock.set_now(_at(2026, 12, 1, 2))
    out = cli.json("billing", "run", "--period", "2026-11")
    assert out["late_events"] == 1
    with session(write=False) as s:
        nov, lines = _invoice(s, "2026-11")
        (late,) = [ln for ln in lines if ln.detail.get("late")]
        # October billed 1500 (1.00); 2000 -> 1000 x 0.002 = 2.00, less 1.00
        assert late.amount_minor == 100
        # November: 9000 calls -> 8000 x 0.002 = 16.00; December's fee 49.00
        assert nov.total_minor == 1600 + 4900 + 100
    table = cli("billing", "run", "--period", "2026-11")
    assert table.exit_code == 0 and "0 late usage events" in table.stdout + table.stderr


def test_reject_refuses_late_usage_naming_the_invoice(
    store_url: str, session: Opener, cli: Any, mno_env: Path, tmp_path: Path
) -> None:
    _reject(mno_env)
    _october_invoiced(store_url)
    with session(write=False) as s:
        october, _ = _invoice(s, "2026-10")
        draft = str(october.id)
    with session() as s:
        number = invoices.issue(s, draft).number
    assert number
    clock.set_now(_at(2026, 11, 10))
    before = counts(store_url)
    r = cli("usage", "record", "acme", "api_calls", "5", "--at", "2026-10-20T00:00:00Z")
    assert r.exit_code == 1, r.stdout
    assert number in r.stderr and "2026-10" in r.stderr
    rows = tmp_path / "u.csv"
    rows.write_text(
        "tenant,metric,quantity,at\n"
        "acme,api_calls,1,2026-11-02T00:00:00Z\n"
        "acme,api_calls,1,2026-10-02T00:00:00Z\n"
    )
    r = cli("usage", "import", rows)
    assert r.exit_code == 1 and "line 3" in r.stderr and number in r.stderr
    assert counts(store_url) == before
    with session(write=False) as s:
        assert s.execute(sa.select(sa.func.count()).select_from(UsageEvent)).scalar() == 1
    # usage of a month not invoiced yet is taken
    ok = cli("usage", "record", "acme", "api_calls", "5", "--at", "2026-11-02T00:00:00Z")
    assert ok.exit_code == 0, ok.stderr


def test_api_answers_409_for_late_usage_when_rejected(
    api: str,  # noqa: F811
    app_key: dict[str, str],  # noqa: F811
    store_url: str,
    session: Opener,
    mno_env: Path,
) -> None:
    _reject(mno_env)
    _october_invoiced(store_url)
    with session(write=False) as s:
        october, _ = _invoice(s, "2026-10")
    clock.set_now(_at(2026, 11, 10))
    h = basic(app_key["key_id"], app_key["secret"])
    body = {"tenant": "acme", "metric": "api_calls", "quantity": "3", "at": "2026-10-20T00:00:00Z"}
    r = httpx.post(f"{api}/v1/dev/usage", json=body, headers={**h, "Idempotency-Key": "late"})
    assert r.status_code == 409, r.text
    error = r.json()["error"]
    assert error["code"] == "conflict"
    assert f"draft {october.id}" in error["message"] and "2026-10" in error["message"]
    on_time = {**body, "at": "2026-11-02T00:00:00Z"}
    r = httpx.post(f"{api}/v1/dev/usage", json=on_time, headers={**h, "Idempotency-Key": "ok"})
    assert r.status_code == 201, r.text


def test_api_late_usage_is_kept_for_the_next_invoice_by_default(
    api: str,  # noqa: F811
    app_key: dict[str, str],  # noqa: F811
    store_url: str,
    session: Opener,
) -> None:
    _october_invoiced(store_url)
    clock.set_now(_at(2026, 11, 10))
    h = basic(app_key["key_id"], app_key["secret"])
    body = {"tenant": "acme", "metric": "api_calls", "quantity": "7", "at": "2026-10-20T00:00:00Z"}
    r = httpx.post(f"{api}/v1/dev/usage", json=body, headers={**h, "Idempotency-Key": "late"})
    assert r.status_code == 201, r.text
    with session(write=False) as s:
        event = s.get(UsageEvent, uuid.UUID(r.json()["id"]))
        assert event.late_period == "2026-10" and event.late_invoice_id is None


@pytest.mark.parametrize("policy", ["next_invoice", "reject"])
def test_the_setting_is_validated(policy: str, mno_env: Path) -> None:
    assert platform.parse(f"billing:\n  late_usage: {policy}\n").billing.late_usage == policy
    with pytest.raises(Exception, match="late_usage"):
        platform.parse("billing:\n  late_usage: drop\n")


def test_usage_written_while_its_month_is_billed_is_not_lost(
    store_url: str, session: Opener
) -> None:
    """A writer of October's usage that has not committed when October's run starts: the
    run waits for it and bills the usage in October's window (it is not late)."""
    clock.set_now(_at(2026, 9, 1))
    with session() as s:
        documents.apply_text(s, CATALOGUE)
        tenants.create(s, "acme")
        subscriptions.create(s, "acme", "pro", start=_at(2026, 9, 1))
    clock.set_now(_at(2026, 11, 1, 2))
    results: list[billing.RunResult] = []
    with session() as s:
        event, _ = usage.record(s, "acme", "api_calls", 1500, at=OCT_20)
        runner = threading.Thread(
            target=lambda: results.append(billing.run("2026-10", url=store_url))
        )
        runner.start()
        runner.join(1.5)
        assert runner.is_alive()  # the run waits for the writer
    runner.join(60)
    assert results and results[0].invoices == 1
    with session(write=False) as s:
        _, lines = _invoice(s, "2026-10")
        (used,) = [ln for ln in lines if ln.kind == "usage"]
        assert (used.quantity, used.amount_minor) == ("1500", 100)
        assert s.get(UsageEvent, event.id).late_period is None
