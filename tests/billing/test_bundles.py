"""Bundles: plans (and apps) sold as one product, billed as ONE line per period, cancelled
and changed as one."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractContextManager
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest
import sqlalchemy as sa

from mno import clock
from mno.billing import bundles, catalogue, documents, invoices, ledger, subscriptions, usage
from mno.billing import run as billing
from mno.billing.export import explain_text, view
from mno.errors import BadInput, Conflict, InvalidTransition
from mno.store.models.core import AuditEntry, Event
from mno.tenancy import apps, tenants

Opener = Callable[..., AbstractContextManager[Any]]

CATALOGUE = """
kind: Metric
metadata: {name: api_calls}
spec: {aggregation: sum}
---
kind: Plan
metadata: {name: crm}
spec:
  currency: EUR
  charges:
    - {kind: fixed, amount: "30.00", timing: advance}
---
kind: Plan
metadata: {name: helpdesk}
spec:
  currency: EUR
  charges:
    - {kind: fixed, amount: "20.00", timing: advance}
    - {kind: usage, metric: api_calls, unit_price: "0.01"}
---
kind: Plan
metadata: {name: crm-plus}
spec:
  currency: EUR
  charges:
    - {kind: fixed, amount: "60.00", timing: advance}
---
kind: TaxRate
metadata: {name: fr-vat}
spec: {country: FR, rate: "20", inclusive: false}
"""


def _at(month: int, day: int, year: int = 2026) -> datetime:
    return datetime(year, month, day, tzinfo=UTC)


def _suite(s: Any, **pricing: str) -> None:
    spec = {"currency": "EUR", "plans": ["crm", "helpdesk"], **pricing}
    bundles.apply(s, "suite", bundles.parse_spec(spec))


def _setup(s: Any, **pricing: str) -> None:
    documents.apply_text(s, CATALOGUE)
    tenants.create(s, "acme", country="FR")
    _suite(s, **(pricing or {"percent_off": "10"}))


def _events(s: Any, prefix: str) -> list[str]:
    rows = s.execute(sa.select(Event.type).where(Event.type.like(f"{prefix}%")))
    return sorted(rows.scalars())


def test_golden_percent_off_one_line_a_period_plus_usage_and_tax(
    store_url: str, session: Opener
) -> None:
    """Golden: bundle ``suite`` = plan crm (30.00 a month) + plan helpdesk (20.00 a month,
    and 0.01 an API call), 10% off the sum of the parts' fixed charges:
    (30.00 + 20.00) * (1 - 10/100) = 45.00 a month, in advance.

    Subscribed on 2026-11-01; 1000 API calls in November. The 2026-11 run bills, on one
    invoice: November's bundle line 45.00 (the month the subscription started), December's
    45.00 (the period starting in the next month, in advance) and November's usage of the
    helpdesk part, 1000 * 0.01 = 10.00, on a line of its own. Subtotal 100.00, FR VAT 20%
    = 20.00, total 120.00. A rerun of the period writes nothing."""
    clock.set_now(_at(11, 1))
    with session() as s:
        _setup(s)
        bs = bundles.subscribe(s, "acme", "suite", start=_at(11, 1))
        assert [p.plan_code for p in bundles.parts(s, bs)] == ["crm", "helpdesk"]
        usage.record(s, "acme", "api_calls", Decimal(1000), at=_at(11, 20))
    clock.set_now(_at(12, 2))
    assert billing.run("2026-11", url=store_url).invoices == 1
    with session() as s:
        (inv,) = invoices.list_invoices(s, "acme", period="2026-11")
        lines = invoices.lines(s, inv)
        bundle_lines = [ln for ln in lines if ln.kind == "bundle"]
        assert [ln.amount_minor for ln in bundle_lines] == [4500, 4500]
        assert [ln.kind for ln in lines if ln.kind != "bundle"] == ["usage"]
        assert [ln.amount_minor for ln in lines if ln.kind == "usage"] == [1000]
        # the parts' fixed charges are not lines of their own
        assert not [ln for ln in lines if ln.kind == "fixed"]
        assert (inv.subtotal_minor, inv.tax_minor, inv.total_minor) == (10000, 2000, 12000)
        assert bundle_lines[0].detail["parts"] == [
            {"plan": "crm", "amount": "30.00"},
            {"plan": "helpdesk", "amount": "20.00"},
        ]
        data, shown = view(s, inv)
        text = explain_text(inv, data, shown)
        assert "part crm: 30.00 EUR" in text
        assert "part helpdesk: 20.00 EUR" in text
        assert "parts 50.00 - 10% off = 45.00 EUR for the period" in text
        n_lines = s.execute(sa.select(sa.func.count()).select_from(type(lines[0]))).scalar()
    again = billing.run("2026-11", url=store_url)
    assert (again.invoices, again.lines) == (0, 0)
    with session() as s:
        assert s.execute(sa.select(sa.func.count()).select_from(type(lines[0]))).scalar() == (
            n_lines
        )
        (inv2,) = invoices.list_invoices(s, "acme", period="2026-11")
        assert inv2.total_minor == 12000


def test_a_period_billed_ahead_is_not_billed_again_by_the_run_of_its_month(
    store_url: str, session: Opener
) -> None:
    """Subscribed on 2026-10-20 from 2026-11-01: the 2026-10 run bills November in advance
    (45.00); the 2026-11 run, whose month covers the start, bills December only."""
    clock.set_now(_at(10, 20))
    with session() as s:
        _setup(s)
        bundles.subscribe(s, "acme", "suite", start=_at(11, 1))
    clock.set_now(_at(11, 2))
    billing.run("2026-10", url=store_url)
    clock.set_now(_at(12, 2))
    billing.run("2026-11", url=store_url)
    with session() as s:
        starts = []
        for period in ("2026-10", "2026-11"):
            (inv,) = invoices.list_invoices(s, "acme", period=period)
            starts += [
                (period, ln.period_start, ln.amount_minor)
                for ln in invoices.lines(s, inv)
                if ln.kind == "bundle"
            ]
        assert starts == [("2026-10", _at(11, 1), 4500), ("2026-11", _at(12, 1), 4500)]


def test_mrr_counts_a_bundle_line_as_it_counts_a_fixed_charge(
    store_url: str, session: Opener
) -> None:
    """acme takes the bundle (45.00 a month), beta a plan with a 45.00 fixed charge, both
    from 2026-11-01: each one's 2026-11 invoice bills November and December. MRR is
    normalised to a month over each line's service period: December's share of each, 45.00
    + 45.00 = 90.00 (45.00 if the bundle line were not counted as recurring)."""
    from mno.reports import kpis
    from mno.reports.model import Window

    clock.set_now(_at(11, 1))
    with session() as s:
        _setup(s)
        flat = "kind: Plan\nmetadata: {name: flat}\nspec:\n  currency: EUR\n  charges:\n"
        documents.apply_text(s, flat + '    - {kind: fixed, amount: "45.00"}\n')
        tenants.create(s, "beta")
        bundles.subscribe(s, "acme", "suite", start=_at(11, 1))
        subscriptions.create(s, "beta", "flat", start=_at(11, 1))
    clock.set_now(_at(12, 2))
    billing.run("2026-11", url=store_url)
    with session() as s:
        for key in ("acme", "beta"):
            (inv,) = invoices.list_invoices(s, key, period="2026-11")
            invoices.issue(s, str(inv.id))
    with session(write=False) as s:
        report = kpis.revenue_report(s, Window.ending("2026-12", 2))
    assert report.metrics["mrr"] == {"EUR": {"amount": "90.00", "currency": "EUR"}}


def test_fixed_price_is_prorated_from_a_mid_month_start(store_url: str, session: Opener) -> None:
    """Golden: bundle price 40.00 a month, subscribed on 2026-11-16: November is billed for
    15 of 30 days, 40.00 * 15/30 = 20.00, December in full, 40.00; subtotal 60.00, tax
    20% = 12.00, total 72.00."""
    clock.set_now(_at(11, 16))
    with session() as s:
        _setup(s, price="40.00")
        bundles.subscribe(s, "acme", "suite", start=_at(11, 16))
    clock.set_now(_at(12, 2))
    billing.run("2026-11", url=store_url)
    with session() as s:
        (inv,) = invoices.list_invoices(s, "acme", period="2026-11")
        amounts = [ln.amount_minor for ln in invoices.lines(s, inv) if ln.kind == "bundle"]
        assert amounts == [2000, 4000]
        assert (inv.subtotal_minor, inv.tax_minor, inv.total_minor) == (6000, 1200, 7200)


def test_cancel_as_one_credits_the_unused_days_and_bills_no_more(
    store_url: str, session: Opener
) -> None:
    """Golden: December's bundle line 45.00 (31 days) was billed in advance; cancelled at
    00:00 on 2026-12-11, days 1 to 10 were used: kept 45.00 * 10/31 = 14.516... = 14.52,
    credit 45.00 - 14.52 = 30.48. Both parts end with it; a part alone cannot be cancelled
    or changed (exit 1); the 2026-12 run bills no bundle line."""
    clock.set_now(_at(11, 1))
    with session() as s:
        _setup(s)
        bsid = str(bundles.subscribe(s, "acme", "suite", start=_at(11, 1)).id)
    clock.set_now(_at(12, 2))
    billing.run("2026-11", url=store_url)
    clock.set_now(_at(12, 11))
    with session() as s:
        part = bundles.parts(s, bundles.get_subscription(s, bsid))[0]
        with pytest.raises(Conflict) as refused:
            subscriptions.cancel(s, str(part.id))
        assert refused.value.exit_code == 1
        assert "part of bundle subscription" in str(refused.value)
        with pytest.raises(Conflict):
            subscriptions.change_plan(s, str(part.id), "crm-plus")
    with session() as s:
        bs = bundles.cancel(s, bsid)
        assert bs.status == "canceled"
        assert {p.status for p in bundles.parts(s, bs)} == {"canceled"}
        assert [g.amount_minor for g in ledger.list_credits(s, "acme")] == [3048]
        assert _events(s, "bundle_subscription.") == [
            "bundle_subscription.canceled",
            "bundle_subscription.created",
        ]
        actions = s.execute(
            sa.select(AuditEntry.action).where(AuditEntry.action.like("bundle_subscription.%"))
        ).scalars()
        assert sorted(actions) == ["bundle_subscription.cancel", "bundle_subscription.create"]
        with pytest.raises(InvalidTransition):
            bundles.cancel(s, bsid)
    clock.set_now(_at(1, 2, 2027))
    billing.run("2026-12", url=store_url)
    with session() as s:
        for inv in invoices.list_invoices(s, "acme", period="2026-12"):
            assert not [ln for ln in invoices.lines(s, inv) if ln.kind == "bundle"]


def test_change_to_another_bundle_at_period_end(store_url: str, session: Opener) -> None:
    """The bundle moves as one: its parts end at the period's end and the new bundle's
    parts start there; January is billed at the new bundle's price only."""
    clock.set_now(_at(11, 1))
    with session() as s:
        _setup(s)
        bundles.apply(
            s,
            "suite-plus",
            bundles.parse_spec({"currency": "EUR", "plans": ["crm-plus"], "price": "55.00"}),
        )
        bsid = str(bundles.subscribe(s, "acme", "suite", start=_at(11, 1)).id)
    clock.set_now(_at(12, 2))
    billing.run("2026-11", url=store_url)
    clock.set_now(_at(12, 10))
    with session() as s:
        new = bundles.change(s, bsid, "suite-plus", at_period_end=True)
        assert new.started_at == _at(1, 1, 2027)
        old = bundles.get_subscription(s, bsid)
        assert old.cancel_at == _at(1, 1, 2027)
        assert {p.cancel_at for p in bundles.parts(s, old)} == {_at(1, 1, 2027)}
        assert _events(s, "bundle_subscription.changed") == ["bundle_subscription.changed"]
    clock.set_now(_at(1, 2, 2027))
    billing.run("2026-12", url=store_url)
    with session() as s:
        (inv,) = invoices.list_invoices(s, "acme", period="2026-12")
        bundle_lines = [ln for ln in invoices.lines(s, inv) if ln.kind == "bundle"]
        assert [(ln.description[:10], ln.amount_minor) for ln in bundle_lines] == [
            ("suite-plus", 5500)
        ]


def test_apps_are_granted_and_revoked_with_the_bundle(session: Opener) -> None:
    clock.set_now(_at(11, 1))
    with session() as s:
        _setup(s)
        tenants.create(s, "vendor")
        apps.create(s, "Desk", code="desk", owner="vendor", access="explicit")
        spec = {"currency": "EUR", "plans": ["crm"], "apps": ["desk"], "price": "35.00"}
        bundles.apply(s, "with-desk", bundles.parse_spec(spec))
        assert apps.check_access(s, "desk", "acme")[0] is False
        bs = bundles.subscribe(s, "acme", "with-desk")
        assert bs.granted_apps == ["desk"]
        assert apps.check_access(s, "desk", "acme")[0] is True
        bundles.cancel(s, str(bs.id))
        assert apps.check_access(s, "desk", "acme")[0] is False


def test_a_cancellation_set_for_later_revokes_the_grants_when_it_comes(session: Opener) -> None:
    clock.set_now(_at(11, 1))
    with session() as s:
        _setup(s)
        tenants.create(s, "vendor")
        apps.create(s, "Desk", code="desk", owner="vendor", access="explicit")
        spec = {"currency": "EUR", "plans": ["crm"], "apps": ["desk"], "price": "35.00"}
        bundles.apply(s, "with-desk", bundles.parse_spec(spec))
        bsid = str(bundles.subscribe(s, "acme", "with-desk", start=_at(11, 1)).id)
    clock.set_now(_at(11, 10))
    with session() as s:
        bs = bundles.cancel(s, bsid, at_period_end=True)
        assert (bs.status, bs.cancel_at) == ("active", _at(12, 1))
        assert bundles.end_due(s, clock.now()) == 0
        assert apps.check_access(s, "desk", "acme")[0] is True
    clock.set_now(_at(12, 1))
    with session() as s:
        assert bundles.end_due(s, clock.now()) == 1
        bs = bundles.get_subscription(s, bsid)
        assert (bs.status, bs.ended_at) == ("canceled", _at(12, 1))
        assert apps.check_access(s, "desk", "acme")[0] is False
        assert bundles.end_due(s, clock.now()) == 0
        assert _events(s, "bundle_subscription.ended") == ["bundle_subscription.ended"]


def test_catalogue_rules(session: Opener) -> None:
    with session() as s:
        documents.apply_text(s, CATALOGUE)
        tenants.create(s, "acme")
        with pytest.raises(BadInput, match="either price or percent_off"):
            bundles.parse_spec({"currency": "EUR", "plans": ["crm"]})
        with pytest.raises(BadInput, match="either price or percent_off"):
            bundles.parse_spec(
                {"currency": "EUR", "plans": ["crm"], "price": "1", "percent_off": "5"}
            )
        with pytest.raises(BadInput, match="not, strings|strings, not floats"):
            bundles.parse_spec({"currency": "EUR", "plans": ["crm"], "price": 1.5})
        with pytest.raises(BadInput, match="plan 'nope' not found"):
            bundles.apply(
                s, "x", bundles.parse_spec({"currency": "EUR", "plans": ["nope"], "price": "1"})
            )
        with pytest.raises(BadInput, match="bills in EUR, the bundle in USD"):
            bundles.apply(
                s, "x", bundles.parse_spec({"currency": "USD", "plans": ["crm"], "price": "1"})
            )
        outcome, _ = bundles.apply(
            s, "x", bundles.parse_spec({"currency": "EUR", "plans": ["crm"], "price": "1"})
        )
        assert outcome == "created"
        again = bundles.apply(
            s, "x", bundles.parse_spec({"currency": "EUR", "plans": ["crm"], "price": "1"})
        )
        assert again[0] == "unchanged"
        assert (
            bundles.apply(
                s, "x", bundles.parse_spec({"currency": "EUR", "plans": ["crm"], "price": "2"})
            )[0]
            == "updated"
        )
        with pytest.raises(Conflict, match="plan crm is a part of bundle"):
            catalogue.delete(s, "Plan", "crm")
        bundles.archive(s, "x")
        assert [b.code for b in bundles.list_bundles(s)] == []
        with pytest.raises(Conflict, match="archived"):
            bundles.subscribe(s, "acme", "x")
        assert _events(s, "bundle.") == ["bundle.archived", "bundle.created", "bundle.updated"]
        # archived, the bundle no longer holds its plans
        assert catalogue.delete(s, "Plan", "crm")["deleted"] == 1


def test_cli_bundle_and_bundle_subscription(cli: Any, sqlite_url: str, tmp_path: Any) -> None:
    """The commands end to end on a SQLite store: create (flags and -f), list, show, subscribe,
    a part refused alone (exit 1), the bundle cancelled as one, archive with --yes."""
    from tests.conftest import counts

    docs = CATALOGUE.split("---\n")
    for kind, text in (("metric", docs[0]), ("plan", "---\n".join(docs[1:4]))):
        path = tmp_path / f"{kind}.yaml"
        path.write_text(text)
        assert cli("billing", kind, "create", "-f", path).exit_code == 0
    assert cli("tenant", "create", "acme").exit_code == 0
    made = cli.json(
        "bundle", "create", "suite", "--currency", "EUR", "--plan", "crm", "--plan", "helpdesk",
        "--percent-off", "10",
    )  # fmt: skip
    assert made == [{"code": "suite", "outcome": "created"}]
    both = cli("bundle", "create", "x", "--currency", "EUR", "--plan", "crm", "--price", "1",
               "--percent-off", "5")  # fmt: skip
    assert both.exit_code == 2 and "either price or percent_off" in both.stderr
    doc = tmp_path / "bundles.yaml"
    doc.write_text(
        "kind: Bundle\nmetadata: {name: duo}\n"
        "spec: {currency: EUR, price: '40.00', plans: [crm, helpdesk]}\n"
    )
    assert cli.json("bundle", "create", "-f", doc) == [{"code": "duo", "outcome": "created"}]
    assert [b["code"] for b in cli.json("billing", "bundle", "list")] == ["duo", "suite"]
    shown = cli.json("bundle", "show", "suite")
    assert (shown["pricing"], shown["percent_off"], shown["plans"]) == (
        "percent_off",
        "10",
        ["crm", "helpdesk"],
    )
    bs = cli.json("subscription", "create", "acme", "--bundle", "suite")
    assert [p["plan"] for p in bs["parts"]] == ["crm", "helpdesk"]
    neither = cli("subscription", "create", "acme", "crm", "--bundle", "suite")
    assert neither.exit_code == 2
    before = counts(sqlite_url)
    part = cli("subscription", "cancel", bs["parts"][0]["id"], "--yes")
    assert part.exit_code == 1 and "part of bundle subscription" in part.stderr
    other = cli("subscription", "change-plan", bs["parts"][0]["id"], "crm-plus")
    assert other.exit_code == 1
    assert counts(sqlite_url) == before
    assert cli.json("subscription", "show", bs["id"])["bundle"] == "suite"
    gone = cli.json("subscription", "cancel", bs["id"], "--yes")
    assert gone["status"] == "canceled"
    assert {p["status"] for p in gone["parts"]} == {"canceled"}
    refused = cli("bundle", "archive", "suite")
    assert refused.exit_code == 2 and "--yes" in refused.stderr
    assert cli.json("bundle", "archive", "suite", "--yes")["archived_at"] is not None
    assert [b["code"] for b in cli.json("bundle", "list")] == ["duo"]
    assert cli("bundle", "show", "nope").exit_code == 1
