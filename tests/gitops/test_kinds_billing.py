"""Billing catalogue kinds (Metric, Plan, Coupon, TaxRate): apply, diff, round trip."""

from __future__ import annotations

import pytest

pytest.importorskip("mno.billing.documents")

from mno.gitops import diff, documents, export  # noqa: E402
from mno.gitops.apply import apply_path  # noqa: E402
from tests.gitops.conftest import empty_store  # noqa: E402

CATALOGUE = """
kind: Metric
metadata: {name: api_calls}
spec: {aggregation: count}
---
kind: Plan
metadata: {name: pro}
spec:
  name: Pro
  currency: EUR
  trial_days: 14
  charges:
    - {kind: fixed, amount: "49.00"}
    - {kind: usage, metric: api_calls, model: per_unit, unit_price: "0.001"}
---
kind: Coupon
metadata: {name: launch}
spec: {kind: percentage, value: "20", duration: once}
---
kind: TaxRate
metadata: {name: fr-vat}
spec: {country: FR, rate: "20", inclusive: false}
"""


def _apply(session, path, **opts):
    with session() as s:
        return apply_path(s, path, **opts)


def test_billing_catalogue_round_trip_and_versioned_update(
    session, store_url, write, tmp_path
) -> None:
    write("billing.yaml", CATALOGUE)
    cs = _apply(session, write.root)
    assert [c.ref for c in cs.changes] == [
        "Metric/api_calls",
        "Plan/pro",
        "Coupon/launch",
        "TaxRate/fr-vat",
    ]
    with session(write=False) as s:
        assert not diff.compute(s, documents.load([write.root])).has_changes
        first = export.dumps(export.export(s))
    (tmp_path / "export.yaml").write_text(first)
    empty_store(store_url)
    _apply(session, tmp_path / "export.yaml")
    with session(write=False) as s:
        assert export.dumps(export.export(s)) == first
    # a price change makes a new plan version through the billing domain
    write("billing.yaml", CATALOGUE.replace('"49.00"', '"59.00"'))
    cs = _apply(session, write.root)
    assert [(c.ref, [f.field for f in c.fields]) for c in cs.changes] == [("Plan/pro", ["charges"])]
    import sqlalchemy as sa

    from mno.store.models.billing import Plan

    with session(write=False) as s:
        versions = s.execute(sa.select(Plan.version).where(Plan.code == "pro")).scalars().all()
        assert sorted(versions) == [1, 2]
        assert not diff.compute(s, documents.load([write.root])).has_changes


def _events(session, prefix: str) -> list[tuple[str, dict]]:
    import sqlalchemy as sa

    from mno.store.models.core import Event

    with session(write=False) as s:
        rows = s.execute(
            sa.select(Event.type, Event.payload)
            .where(Event.type.like(f"{prefix}%"))
            .order_by(Event.seq)
        )
        return [(t, p) for t, p in rows]


def test_prune_deletes_catalogue_objects_in_dependency_order(session, write) -> None:
    write("billing.yaml", CATALOGUE)
    write("keep.yaml", "kind: TaxRate\nmetadata: {name: de-vat}\nspec: {country: DE, rate: '19'}\n")
    _apply(session, write.root, source="billing")
    (write.root / "billing.yaml").unlink()
    cs = _apply(session, write.root, source="billing", prune=True)
    assert [(c.ref, c.action) for c in cs.changes] == [
        ("Metric/api_calls", "delete"),
        ("Plan/pro", "delete"),
        ("Coupon/launch", "delete"),
        ("TaxRate/fr-vat", "delete"),
    ]
    # executed in reverse dependency order: the plan goes before the metric it charges for
    assert [t for t, _ in _events(session, "")][-5:] == [
        "tax_rate.deleted",
        "coupon.deleted",
        "plan.deleted",
        "metric.deleted",
        "gitops.applied",
    ]
    import sqlalchemy as sa

    from mno.store.models.billing import BillingMetric, Coupon, Plan, TaxRate
    from mno.store.models.core import AuditEntry

    with session(write=False) as s:
        assert s.execute(sa.select(sa.func.count()).select_from(Plan)).scalar_one() == 0
        assert s.execute(sa.select(sa.func.count()).select_from(BillingMetric)).scalar_one() == 0
        assert s.execute(sa.select(sa.func.count()).select_from(Coupon)).scalar_one() == 0
        assert s.execute(sa.select(TaxRate.code)).scalars().all() == ["de-vat"]
        actions = s.execute(
            sa.select(AuditEntry.action).where(AuditEntry.action.like("%.delete"))
        ).scalars()
        assert sorted(actions) == [
            "coupon.delete",
            "metric.delete",
            "plan.delete",
            "tax_rate.delete",
        ]
        assert not diff.compute(s, documents.load([write.root]), source="billing").has_changes


def test_prune_refuses_a_plan_with_subscriptions_and_writes_nothing(
    session, store_url, write
) -> None:
    from datetime import UTC, datetime

    from mno.billing import subscriptions
    from mno.errors import Conflict
    from mno.tenancy import tenants
    from tests.gitops.conftest import row_counts

    write("billing.yaml", CATALOGUE)
    write("keep.yaml", "kind: TaxRate\nmetadata: {name: de-vat}\nspec: {country: DE, rate: '19'}\n")
    _apply(session, write.root, source="billing")
    with session() as s:
        for key in ("acme", "globex"):
            tenants.create(s, key)
            subscriptions.create(s, key, "pro", start=datetime(2026, 9, 1, tzinfo=UTC))
    before = row_counts(store_url)
    (write.root / "billing.yaml").unlink()
    with pytest.raises(Conflict) as err:
        _apply(session, write.root, source="billing", prune=True)
    assert err.value.message == "plan pro has subscriptions of 2 tenant(s): acme, globex"
    assert row_counts(store_url) == before  # the coupon and tax rate deletes rolled back too


def test_catalogue_delete_commands(cli, store_url, write) -> None:
    write("billing.yaml", CATALOGUE)
    assert cli("apply", "-f", write.root).exit_code == 0
    result = cli("metric", "delete", "api_calls", "--yes")
    assert result.exit_code == 1
    assert result.stderr.strip() == (
        "Error: metric api_calls is charged by plan(s) pro (change or remove those first)"
    )
    assert cli.json("billing", "plan", "delete", "pro", "--yes") == {
        "kind": "Plan",
        "code": "pro",
        "deleted": 1,
    }
    result = cli("metric", "delete", "api_calls", "--yes")
    assert (result.exit_code, result.stderr) == (0, "✓ metric api_calls deleted\n")
    assert cli("coupon", "delete", "launch", "--yes").exit_code == 0
    assert cli("tax-rate", "delete", "fr-vat", "--yes").exit_code == 0
    result = cli("tax-rate", "delete", "fr-vat", "--yes")
    assert result.exit_code == 1
    assert "tax rate fr-vat not found" in result.stderr
    assert cli.json("billing", "plan", "list") == []
